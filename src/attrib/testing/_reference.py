"""The NumPy reference: forward and backward passes of a :class:`NetSpec` in float64.

The backward pass applies each rectifier rule through its core reference,
:meth:`attrib.GuidedActivation.reference`, so what a backend returns is
checked against the rule as attrib defines it. :class:`ReferenceModel` wraps
the reference as an :class:`attrib.Model`, so any method (built-in or a third
party's) runs on it with no framework installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from .._errors import AttribTypeError, argument_error, check_choice, did_you_mean, shown
from .._model import LAYOUTS, GradientRequest, GradientResult, Model
from .._targets import (
    check_objective,
    resolve_target_weights,
    resolve_targets,
    weighted_score_gradient,
    weights_targets,
)
from ..rules import LinearOp, RuleSet, get_rule, rescale, rule_set
from ._specs import (
    Conv,
    Dense,
    GlobalAvgPool,
    NetSpec,
    ReLU,
    ReLU6,
    Trace,
    _spatial_letters,
    conv_forward,
    forward,
)

__all__ = ["Trace", "forward", "backward", "score_gradient", "ReferenceModel", "deeplift_backward"]


def _conv_backward(grad: np.ndarray, x: np.ndarray, layer: Conv) -> np.ndarray:
    """Gradient at the convolution's input, given the gradient at its output (any number of axes)."""
    p, s = layer.padding, layer.stride
    kernel = layer.weight.shape[2:]
    out_sizes = grad.shape[2:]
    gp = np.zeros(x.shape[:2] + tuple(size + 2 * p for size in x.shape[2:]))
    axes = _spatial_letters(len(kernel))
    for offset in itertools.product(*(range(k) for k in kernel)):
        gp[(slice(None), slice(None)) + tuple(
            slice(i, i + s * o, s) for i, o in zip(offset, out_sizes, strict=True))] += np.einsum(
            f"no{axes},oc->nc{axes}", grad, layer.weight[(slice(None), slice(None)) + offset])
    return gp[(slice(None), slice(None)) + tuple(slice(p, p + size) for size in x.shape[2:])]


def score_gradient(logits: np.ndarray, targets: np.ndarray, objective: str) -> np.ndarray:
    """d(sum of per-sample scores)/d logits, shape (N, classes), for ``objective``."""
    logits = np.asarray(logits, dtype=np.float64)
    onehot = np.zeros_like(logits)
    onehot[np.arange(len(targets)), targets] = 1.0
    if objective == "logit":
        return onehot
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if objective == "log_softmax":
        return onehot - probs
    p_target = probs[np.arange(len(targets)), targets][:, None]
    return p_target * (onehot - probs)


def conv_op(layer: Conv, x_shape: tuple[int, ...]) -> LinearOp:
    """``layer``'s convolution as a :class:`attrib.rules.LinearOp` (weights given per call)."""
    def fwd(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
        assert weight is not None
        b = np.zeros(weight.shape[0]) if bias is None else bias
        return conv_forward(x, replace(layer, weight=weight, bias=b))

    def transpose(g: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
        assert weight is not None
        return _conv_backward(g, np.zeros(x_shape), replace(layer, weight=weight))

    return LinearOp(fwd, transpose)


def _dense_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
    assert weight is not None
    return x @ weight + (0.0 if bias is None else bias)


def _dense_transpose(g: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    assert weight is not None
    return g @ weight.T


#: ``y = x @ weight + bias`` as a :class:`attrib.rules.LinearOp`
DENSE_OP = LinearOp(_dense_forward, _dense_transpose)


def _pool_backward(grad: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """The global average pool's transpose: (N, C) -> (N, C, *spatial)."""
    spatial = x_shape[2:]
    expanded = grad.reshape(grad.shape + (1,) * len(spatial)) / float(np.prod(spatial))
    return np.broadcast_to(expanded, x_shape).copy()


def pool_op(x_shape: tuple[int, ...]) -> LinearOp:
    """The global average pool (N, C, *spatial) -> (N, C) as a parameter-free :class:`LinearOp`."""
    axes = tuple(range(2, len(x_shape)))
    return LinearOp(lambda x, _w, _b: x.mean(axis=axes),
                    lambda g, _w: _pool_backward(g, x_shape))


def backward(
    spec: NetSpec, trace: Trace, grad_logits: np.ndarray, rule: str | RuleSet = "vanilla"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Propagate ``grad_logits`` back to the input under ``rule``.

    Returns the input gradient and the gradient at each layer's output (both
    under ``rule``; with ``"vanilla"`` they are the true gradients). Under a
    rule set beyond rectifiers (:mod:`attrib.rules`), each layer applies the
    reference of its rule (:meth:`attrib.rules.LinearRule.reference`); with
    ``seed="relevance"`` the pass starts from ``grad_logits * logits``.
    """
    rules = rule_set(rule)
    if rules.nonlinearity == "rescale":
        raise argument_error("rule", "a rule set without a reference input here",
                             shown(rules.name), "Use deeplift_backward(spec, trace, reference, ...)")
    if not rules.rectifier_only:
        return _relevance_backward(spec, trace, grad_logits, rules)
    rectifier_rule = get_rule(rules)
    grad = np.asarray(grad_logits, dtype=np.float64)
    layer_gradients: dict[str, np.ndarray] = {}
    for layer in reversed(spec.layers):
        layer_gradients[layer.name] = grad
        x = trace.layer_inputs[layer.name]
        if isinstance(layer, Conv):
            grad = _conv_backward(grad, x, layer)
        elif isinstance(layer, Dense):
            grad = grad @ layer.weight.T
        elif isinstance(layer, ReLU):
            grad = rectifier_rule.reference(x, grad)
        elif isinstance(layer, ReLU6):
            grad = rectifier_rule.reference(x, grad, upper=6.0)
        elif isinstance(layer, GlobalAvgPool):
            grad = _pool_backward(grad, x.shape)
    return grad, layer_gradients


def _relevance_backward(spec: NetSpec, trace: Trace, grad_logits: np.ndarray,
                        rules: RuleSet) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The backward pass under a rule set with linear-layer rules (LRP), layer by layer."""
    grad = np.asarray(grad_logits, dtype=np.float64)
    if rules.seed == "relevance":
        grad = grad * trace.logits
    first = next((layer.name for layer in spec.layers if isinstance(layer, (Conv, Dense))), None)
    layer_gradients: dict[str, np.ndarray] = {}
    for layer in reversed(spec.layers):
        layer_gradients[layer.name] = grad
        x = trace.layer_inputs[layer.name]
        if isinstance(layer, (Conv, Dense)):
            kind = "convolution" if isinstance(layer, Conv) else "dense"
            linear = rules.linear_rule(kind, layer.name, first=layer.name == first)
            op = conv_op(layer, x.shape) if isinstance(layer, Conv) else DENSE_OP
            if linear is None:
                grad = op.transpose(grad, layer.weight)
            else:
                grad = linear.reference(x, layer.weight, layer.bias, grad, op)
        elif isinstance(layer, (ReLU, ReLU6)):
            if rules.rectifier != "pass":
                grad = get_rule(rules.rectifier).reference(
                    x, grad, upper=6.0 if isinstance(layer, ReLU6) else None)
        elif isinstance(layer, GlobalAvgPool):
            op = pool_op(x.shape)
            grad = (op.transpose(grad, None) if rules.pooling is None
                    else rules.pooling.reference(x, None, None, grad, op))
    return grad, layer_gradients


def deeplift_backward(spec: NetSpec, trace: Trace, reference: Trace,
                      grad_logits: np.ndarray) -> np.ndarray:
    """DeepLIFT's multipliers at the input (:data:`attrib.rules.DEEPLIFT`), layer by layer.

    Rectifiers take the rescale rule (:func:`attrib.rules.rescale`, the
    derivative at the reference where the input did not change); convolutions,
    dense layers and the average pool their transpose. ``reference`` is the
    forward pass of the reference inputs.
    """
    grad = np.asarray(grad_logits, dtype=np.float64)
    for layer in reversed(spec.layers):
        x = trace.layer_inputs[layer.name]
        if isinstance(layer, Conv):
            grad = _conv_backward(grad, x, layer)
        elif isinstance(layer, Dense):
            grad = grad @ layer.weight.T
        elif isinstance(layer, (ReLU, ReLU6)):
            upper = 6.0 if isinstance(layer, ReLU6) else np.inf
            x0 = reference.layer_inputs[layer.name]
            dy = trace.activations[layer.name] - reference.activations[layer.name]
            grad = grad * rescale(x - x0, dy, ((x0 > 0) & (x0 < upper)).astype(np.float64))
        elif isinstance(layer, GlobalAvgPool):
            grad = _pool_backward(grad, x.shape)
    return grad


def _to_layout(array: np.ndarray, layout: str, ndim: int = 4) -> np.ndarray:
    """A channels-first array (N, C, *spatial) of ``ndim`` axes in ``layout``.

    ``ndim`` is the spec's input rank (4 for images, 3 for signals, 5 for
    volumes); arrays of another rank (maps, logits) are unchanged.
    """
    if layout == "NHWC" and array.ndim == ndim and ndim >= 3:
        return np.moveaxis(array, 1, -1)
    return array


def _from_layout(array: np.ndarray, layout: str, ndim: int = 4) -> np.ndarray:
    if layout == "NHWC" and array.ndim == ndim and ndim >= 3:
        return np.moveaxis(array, -1, 1)
    return array


class ReferenceModel(Model):
    """The NumPy reference of a :class:`NetSpec` as an :class:`attrib.Model` (float64).

    Any method runs on it without a framework, which is how the suite gets the
    expected value of a method it has no formula for, and how a method author
    tests a new method (see ``docs/how-to/write-a-method.md``).

    Parameters
    ----------
    spec : NetSpec
    layout : str
        ``"NCHW"`` or ``"NHWC"``: the layout of inputs, input gradients and
        spatial activations (channels first or last, any number of spatial
        axes), as the backend under test uses it.

    >>> from attrib.testing import ReferenceModel, small_cnn
    >>> spec = small_cnn()
    >>> model = ReferenceModel(spec)
    >>> model.forward(spec.inputs).shape
    (3, 4)
    """

    backend: ClassVar[str] = "reference"

    def __init__(self, spec: NetSpec, layout: str = "NCHW") -> None:
        self.spec = spec
        self._layout = check_choice("layout", layout, LAYOUTS)
        self._ndim = spec.inputs.ndim

    @property
    def layout(self) -> str:
        return self._layout

    @property
    def native(self) -> Any:
        return self.spec

    def layer_names(self) -> Sequence[str]:
        return list(self.spec.layer_names)

    def input_shape(self, inputs: Any) -> tuple[int, ...]:
        expected = _to_layout(self.spec.inputs, self._layout, self._ndim).shape[1:]
        if not isinstance(inputs, np.ndarray) or not np.issubdtype(inputs.dtype, np.floating):
            raise argument_error(
                "inputs", f"a floating NumPy batch of shape (N, {', '.join(map(str, expected))})",
                shown(_describe(inputs)), kind=AttribTypeError,
            )
        if inputs.shape[1:] != expected or inputs.shape[0] < 1:
            raise argument_error(
                "inputs", f"a batch of shape (N, {', '.join(map(str, expected))}) "
                f"({self._layout})", shown(_describe(inputs)),
            )
        return tuple(inputs.shape)

    def to_numpy(self, inputs: Any) -> np.ndarray:
        self.input_shape(inputs)
        return np.asarray(inputs)

    def forward(self, inputs: Any) -> np.ndarray:
        x = _from_layout(self.to_numpy(inputs), self._layout, self._ndim)
        return forward(self.spec, x).logits

    def forward_scaled(self, inputs: Any, layer: str, scale: np.ndarray) -> np.ndarray:
        if layer not in self.spec.layer_names:
            raise argument_error("layer", "a layer name of this model", layer)
        x = _from_layout(self.to_numpy(inputs), self._layout, self._ndim)
        scale = _from_layout(np.asarray(scale), self._layout, self._ndim)
        return forward(self.spec, x, {layer: scale}).logits

    def forward_substituted(self, inputs: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        if layer not in self.spec.layer_names:
            raise argument_error("layer", "a layer name of this model", layer)
        x = _from_layout(self.to_numpy(inputs), self._layout, self._ndim)
        values = _from_layout(np.asarray(activation), self._layout, self._ndim)
        return forward(self.spec, x, substitutes={layer: values}).logits

    def gradients(self, request: GradientRequest) -> GradientResult:
        x_layout = self.to_numpy(request.inputs)
        rule = rule_set(request.rule)
        objective = check_objective(request.objective)
        for name in request.layers:
            if name not in self.spec.layer_names:
                raise argument_error("layer", "a layer name of this model", name,
                                     did_you_mean(str(name), self.spec.layer_names))
        trace = forward(self.spec, _from_layout(x_layout, self._layout, self._ndim))
        if request.target_weights is not None:
            weights = resolve_target_weights(request.target_weights, trace.logits)
            targets = weights_targets(weights)
            seed = weighted_score_gradient(trace.logits, weights, objective)
        else:
            targets = resolve_targets(request.targets, trace.logits)
            seed = score_gradient(trace.logits, targets, objective)
        passes = 0
        input_gradient = None
        layer_grads: dict[str, np.ndarray] = {}
        if rule.nonlinearity == "rescale":  # DeepLIFT: multipliers against the reference
            if request.reference is None:
                raise argument_error("reference", f"the reference inputs of rule set "
                                     f"{rule.name!r}", None)
            reference = forward(self.spec, _from_layout(self.to_numpy(request.reference),
                                                        self._layout, self._ndim))
            return GradientResult(
                inputs=x_layout, logits=trace.logits, targets=targets,
                input_gradient=_to_layout(deeplift_backward(self.spec, trace, reference, seed),
                                          self._layout, self._ndim),
                stats={"backward_passes": 1, "reference_logits": reference.logits})
        if request.input_gradient:
            grad, layer_grads = backward(self.spec, trace, seed, rule)
            input_gradient = _to_layout(grad, self._layout, self._ndim)
            passes += 1
        if request.layers and request.layer_gradients and (rule.name != "vanilla" or not passes):
            _, layer_grads = backward(self.spec, trace, seed, "vanilla")
            passes += 1
        return GradientResult(
            inputs=x_layout,
            logits=trace.logits,
            targets=targets,
            input_gradient=input_gradient,
            activations={n: _to_layout(trace.activations[n], self._layout, self._ndim)
                         for n in request.layers},
            layer_gradients=(
                {n: _to_layout(layer_grads[n], self._layout, self._ndim) for n in request.layers}
                if request.layer_gradients else {}
            ),
            stats={"backward_passes": passes},
        )


def _describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value) if len(repr(value)) < 80 else type(value).__name__
