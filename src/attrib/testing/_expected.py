"""Each method's expected value on a :class:`NetSpec`, from the NumPy reference.

The six built-in methods are computed here from their formulas, on the
reference's gradients (saliency, gradient × input, deconvnet, guided backprop,
Grad-CAM, guided Grad-CAM). Any other method is run on
:class:`ReferenceModel`, so a third party's method is checked with the core's
own math on exact gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._resize import resize_linear
from .._targets import (
    complete_target_weights,
    resolve_targets,
    split_target,
    weighted_score_gradient,
    weights_targets,
)
from ._reference import ReferenceModel, _to_layout, backward, forward, score_gradient
from ._specs import NetSpec

__all__ = ["Expected", "expected", "BUILTIN_METHODS"]

BUILTIN_METHODS: tuple[str, ...] = (
    "saliency", "gradient_x_input", "deconvnet", "guided_backprop", "gradcam", "guided_gradcam",
)
_RULES = {"saliency": "vanilla", "gradient_x_input": "vanilla", "deconvnet": "deconvnet",
          "guided_backprop": "guided"}


@dataclass(frozen=True)
class Expected:
    """What an :class:`attrib.Explanation` must hold (arrays in the backend's layout)."""

    attribution: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    layer_attribution: np.ndarray | None = None
    parts: dict[str, np.ndarray] = field(default_factory=dict)


def _gradcam(spec: NetSpec, trace: Any, seed: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (N, *S) and at layer resolution (N, *s) from the true layer gradient.

    Upsampled by :func:`attrib.resize_linear` (bilinear for images, linear for
    signals, trilinear for volumes).
    """
    _, layer_grads = backward(spec, trace, seed, "vanilla")
    activation, gradient = trace.activations[layer], layer_grads[layer]   # channels first
    weights = gradient.mean(axis=tuple(range(2, gradient.ndim)), keepdims=True)
    cam = np.maximum((weights * activation).sum(axis=1), 0.0)
    return resize_linear(cam, trace.inputs.shape[2:]), cam


def expected(
    spec: NetSpec,
    method: str,
    *,
    target: Any = None,
    objective: str = "logit",
    layer: str | None = None,
    layout: str = "NCHW",
    registry: Any = None,
) -> Expected:
    """The expected explanation of ``spec.inputs`` by ``method`` (float64, in ``layout``)."""
    trace = forward(spec, spec.inputs)
    indices, weights = split_target(target, len(spec.inputs))
    if weights is not None:  # target weights: the weighted score (see attrib._targets)
        weights = complete_target_weights(weights, len(spec.inputs), trace.logits.shape[1])
        targets = weights_targets(weights)
        seed = weighted_score_gradient(trace.logits, weights, objective)
    else:
        targets = resolve_targets(indices, trace.logits)
        seed = score_gradient(trace.logits, targets, objective)
    x = spec.inputs
    ndim = x.ndim
    if method in _RULES:
        grad, _ = backward(spec, trace, seed, _RULES[method])
        attribution = grad * x if method == "gradient_x_input" else grad
        return Expected(_to_layout(attribution, layout, ndim), targets, trace.logits)
    if method == "gradcam":
        assert layer is not None
        cam, cam_small = _gradcam(spec, trace, seed, layer)
        return Expected(cam, targets, trace.logits, layer_attribution=cam_small,
                        parts={})
    if method == "guided_gradcam":
        assert layer is not None
        cam, cam_small = _gradcam(spec, trace, seed, layer)
        guided, _ = backward(spec, trace, seed, "guided")
        return Expected(
            _to_layout(guided * cam[:, None], layout, ndim), targets, trace.logits,
            layer_attribution=cam_small,
            parts={"gradcam": cam, "guided_backprop": _to_layout(guided, layout, ndim)},
        )
    # a method without a formula here: the core's math on the exact reference gradients
    from .._registry import default_registry

    registry = registry if registry is not None else default_registry()
    cls = registry.method(method)
    model = ReferenceModel(spec, layout=layout)
    kwargs: dict[str, Any] = {"objective": objective, "registry": registry}
    if cls.needs_layer:
        kwargs["layer"] = layer
    explanation = cls(model, **kwargs).attribute(_to_layout(x, layout, ndim), target)
    return Expected(np.asarray(explanation.attribution), targets, trace.logits,
                    layer_attribution=explanation.layer_attribution,
                    parts=dict(explanation.parts))
