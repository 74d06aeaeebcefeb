"""Guided backpropagation: the input gradient with the guided rectifier rule."""

from __future__ import annotations

from ._input_gradient import InputGradientMethod


class GuidedBackprop(InputGradientMethod):
    """Input gradient where every rectifier passes back ``relu(grad_out) * [x > 0]``.

    References
    ----------
    Springenberg, Dosovitskiy, Brox, Riedmiller (2015). Striving for
    simplicity: the all convolutional net.
    """

    name = "guided_backprop"
    rule = "guided"
