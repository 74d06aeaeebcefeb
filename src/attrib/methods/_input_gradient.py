"""The shared shape of methods whose map is the input gradient under a rectifier rule."""

from __future__ import annotations

from typing import ClassVar

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._model import GradientResult


class InputGradientMethod(Attributor):
    """A map that is the gradient of the score at the input, under :attr:`rule`."""

    #: rectifier rule of the backward pass: ``"vanilla"``, ``"guided"``, ``"deconvnet"``
    rule: ClassVar[str] = "vanilla"
    several_inputs = True  # one gradient per input of model(x1, x2, ...)

    def needs(self) -> GradientNeeds:
        return GradientNeeds(rule=self.rule, input_gradient=True)

    def compute(self, result: GradientResult) -> MethodOutput:
        assert result.input_gradient is not None, "the backend returned no input gradient"
        return MethodOutput(attribution=result.input_gradient)
