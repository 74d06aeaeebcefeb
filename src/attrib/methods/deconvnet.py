"""Deconvnet: the input gradient with the deconvnet rectifier rule."""

from __future__ import annotations

from ._input_gradient import InputGradientMethod


class Deconvnet(InputGradientMethod):
    """Input gradient where every rectifier passes back ``relu(grad_out)``.

    References
    ----------
    Zeiler & Fergus (2014). Visualizing and understanding convolutional networks.
    """

    name = "deconvnet"
    rule = "deconvnet"
