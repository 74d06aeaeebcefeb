"""Grad-CAM: class activation maps weighted by the spatial mean of the layer gradient."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import argument_error, shown
from .._model import GradientResult
from .._resize import resize_bilinear


def spatial_axes(layout: str) -> tuple[tuple[int, int], int]:
    """((h axis, w axis), channel axis) of a 4-D array in ``layout``."""
    return ((2, 3), 1) if layout == "NCHW" else ((1, 2), 3)


class GradCAM(Attributor):
    """Grad-CAM at a named layer.

    With ``A`` the layer's activation and ``G`` the gradient of the score at
    it, both (N, C, h, w) in NCHW (or (N, h, w, C) in NHWC)::

        weights[n, c] = mean over (h, w) of G[n, c]
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])        # (N, h, w)

    and ``cam`` is resized bilinearly (half-pixel centres) to the input's
    (H, W). Not normalised: the raw map is the result.

    Parameters
    ----------
    layer : str
        The layer, in the framework's own naming (``"layer4"``, ``"features.29"``).

    Notes
    -----
    Attributes of the result: ``attribution`` (N, H, W); ``layer_attribution``
    (N, h, w).

    References
    ----------
    Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra (2017). Grad-CAM: visual
    explanations from deep networks via gradient-based localization.
    """

    name = "gradcam"
    needs_layer = True

    def __init__(self, model: Any, *, layer: str, backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self._layer = self._check_layer(layer)

    def needs(self) -> GradientNeeds:
        return GradientNeeds(layers=(self._layer,), layer_gradients=True)

    def compute(self, result: GradientResult) -> MethodOutput:
        activation = result.activations[self._layer]
        gradient = result.layer_gradients[self._layer]
        layout = self.model.layout
        if activation.ndim != 4:
            raise argument_error(
                "layer",
                f"a layer with a 4-D output ({'N, C, h, w' if layout == 'NCHW' else 'N, h, w, C'}) "
                "for Grad-CAM",
                shown(f"{self._layer!r} with output shape {activation.shape}"),
                "Choose a convolutional layer or block.",
            )
        (h_axis, w_axis), c_axis = spatial_axes(layout)
        weights = gradient.mean(axis=(h_axis, w_axis), keepdims=True)
        cam = np.maximum((weights * activation).sum(axis=c_axis), 0)
        (in_h, in_w) = _input_hw(result.inputs.shape, layout)
        return MethodOutput(attribution=resize_bilinear(cam, (in_h, in_w)), layer_attribution=cam)


def _input_hw(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    if len(shape) != 4:
        raise argument_error(
            "inputs", f"images of shape {'(N, C, H, W)' if layout == 'NCHW' else '(N, H, W, C)'} "
            "for Grad-CAM", shown(f"shape {shape}"),
        )
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
