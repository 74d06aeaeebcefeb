"""A framework-free model for testing the core's method math on hand-made arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import attrib
from attrib import GradientRequest, GradientResult, Model


class ArrayModel(Model):
    """A 'model' whose gradient pass returns arrays given in advance.

    It records every request, so tests can check what a method asked for.
    """

    backend = "arrays"

    def __init__(self, result: GradientResult, layout: str = "NCHW", layers: Sequence[str] = ("conv",)):
        self._result = result
        self._layout = layout
        self._layers = list(layers)
        self.requests: list[GradientRequest] = []

    @property
    def layout(self) -> str:
        return self._layout

    @property
    def native(self) -> Any:
        return self

    def layer_names(self) -> Sequence[str]:
        return self._layers

    def input_shape(self, inputs: Any) -> tuple[int, ...]:
        return tuple(np.shape(inputs))

    def to_numpy(self, inputs: Any) -> np.ndarray:
        return np.asarray(inputs)

    def forward(self, inputs: Any) -> np.ndarray:
        return self._result.logits

    def gradients(self, request: GradientRequest) -> GradientResult:
        self.requests.append(request)
        targets = attrib.resolve_targets(request.targets, self._result.logits)
        return GradientResult(
            inputs=np.asarray(request.inputs),
            logits=self._result.logits,
            targets=targets,
            input_gradient=self._result.input_gradient if request.input_gradient else None,
            activations={k: v for k, v in self._result.activations.items() if k in request.layers},
            layer_gradients={k: v for k, v in self._result.layer_gradients.items()
                             if k in request.layers and request.layer_gradients},
        )
