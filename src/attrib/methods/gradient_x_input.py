"""Gradient × input."""

from __future__ import annotations

from .._attributor import MethodOutput
from .._inputs import as_tuple, like
from .._model import GradientResult
from ._input_gradient import InputGradientMethod


class GradientXInput(InputGradientMethod):
    """The vanilla input gradient multiplied elementwise by the input.

    References
    ----------
    Shrikumar, Greenside, Shcherbina, Kundaje (2016). Not just a black box:
    learning important features through propagating activation differences.
    """

    name = "gradient_x_input"
    rule = "vanilla"

    def compute(self, result: GradientResult) -> MethodOutput:
        gradients = super().compute(result).attribution
        products = tuple(g * x.astype(g.dtype)
                         for g, x in zip(as_tuple(gradients), as_tuple(result.inputs)))
        return MethodOutput(attribution=like(products, gradients))
