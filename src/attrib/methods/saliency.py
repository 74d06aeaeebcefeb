"""Vanilla gradient (saliency): the gradient of the class score at the input."""

from __future__ import annotations

from ._input_gradient import InputGradientMethod


class Saliency(InputGradientMethod):
    """Vanilla gradient ``d score / d x``, raw and signed, with the input's shape.

    The paper's saliency map is the maximum of ``|grad|`` over channels; that
    is display post-processing, kept out of the method (see
    :func:`attrib.grayscale`).

    References
    ----------
    Simonyan, Vedaldi, Zisserman (2014). Deep inside convolutional networks:
    visualising image classification models and saliency maps.
    """

    name = "saliency"
    rule = "vanilla"
