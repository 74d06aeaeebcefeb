"""The :class:`attrib.Model` adapter of the numpy backend.

One forward pass keeps every layer's cache; the backward pass walks the layers
in reverse with the requested rectifier rule and records the gradient at the
tapped layers. Layer gradients must be the *true* gradient: when the rule is
not vanilla and a rectifier lies between a tapped layer and the logits, a
second, vanilla backward pass runs down to the lowest tapped layer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

import attrib
from attrib._errors import argument_error, check_choice, did_you_mean, shown
from attrib._inputs import as_tuple, check_batch, each
from attrib._layout import batch_spelling
from attrib._targets import resolve_target_weights, weighted_score_gradient, weights_targets
from attrib.rules import rule_set
from attrib.targets import reference_scores

from ._layers import ConvNd, Dense
from ._network import Sequential
from ._relevance import multipliers, relevance

__all__ = ["NumpyModel"]


class NumpyModel(attrib.Model):
    """An :class:`attrib_numpy.Sequential` seen by attrib.

    Inputs channels first ((N, C, L), (N, C, H, W), (N, C, D, H, W)) or (N, D).
    """

    backend: ClassVar[str] = "numpy"
    #: a network whose first layer is a :class:`attrib_numpy.Concat` takes several inputs,
    #: ``net(x1, x2, ...)``: ``inputs`` is then a tuple, and so is the input gradient
    several_inputs: ClassVar[bool] = True

    def __init__(self, model: Sequential) -> None:
        if not isinstance(model, Sequential):
            raise argument_error("model", "an attrib_numpy.Sequential", shown(type(model).__name__),
                                 kind=attrib.AttribTypeError)
        self._net = model

    @property
    def layout(self) -> str:
        return "NCHW"

    @property
    def native(self) -> Sequential:
        return self._net

    def layer_names(self) -> Sequence[str]:
        return self._net.names

    def input_shape(self, inputs: Any) -> Any:
        """The batch's shape, or a tuple of shapes for a network of several inputs."""
        sizes = self._net.input_sizes
        if sizes is None and isinstance(inputs, tuple):
            if len(inputs) != 1:
                raise argument_error("inputs", "one array (this network takes one input)",
                                     shown(f"a tuple of {len(inputs)} arrays"))
            return (self._shape(inputs[0], self._net.input_spec()[1]),)
        if sizes is not None:
            if not isinstance(inputs, tuple) or len(inputs) != len(sizes):
                given = (f"a tuple of {len(inputs)} arrays" if isinstance(inputs, tuple)
                         else f"one {type(inputs).__name__}")
                raise argument_error("inputs", f"a tuple of {len(sizes)} arrays, one per input of "
                                     "this network", shown(given),
                                     "Call it as explain(model, (x1, x2, ...)).")
            return check_batch(tuple(self._shape(x, size) for x, size in zip(inputs, sizes,
                                                                              strict=True)))
        return self._shape(inputs, self._net.input_spec()[1])

    def _shape(self, inputs: Any, size: int | None) -> tuple[int, ...]:
        """The shape of one batch (one input) after checking it has ``size`` channels."""
        ndim = self._net.input_spec()[0]
        wanted = batch_spelling("NCHW", ndim - 2) if ndim >= 3 else "(N, D)"
        if not isinstance(inputs, np.ndarray) or not np.issubdtype(inputs.dtype, np.floating):
            given = (f"{type(inputs).__name__} of dtype {inputs.dtype}" if hasattr(inputs, "dtype")
                     else type(inputs).__name__)
            raise argument_error("inputs", f"a floating NumPy array {wanted}", shown(given),
                                 kind=attrib.AttribTypeError)
        if inputs.ndim != ndim or (size is not None and inputs.shape[1] != size) or not len(inputs):
            what = f"{size} channels" if ndim >= 3 else f"{size} features"
            raise argument_error("inputs", f"a batch {wanted} with {what}",
                                 shown(f"an array of shape {inputs.shape}"),
                                 "Add the batch axis with x[None]." if inputs.ndim == ndim - 1
                                 else None)
        return tuple(inputs.shape)

    def to_numpy(self, inputs: Any) -> Any:
        self.input_shape(inputs)
        return each(np.asarray, inputs)

    def _net_input(self, x: Any) -> Any:
        """What the network's first layer takes: the tuple for a :class:`Concat`, else the array
        (a 1-tuple ``(x,)`` is ``x``)."""
        return x if self._net.input_sizes is not None else as_tuple(x)[0]

    def forward(self, inputs: Any) -> np.ndarray:
        return self._net(*as_tuple(self._net_input(self.to_numpy(inputs))))

    def forward_scaled(self, inputs: Any, layer: str, scale: np.ndarray) -> np.ndarray:
        """Logits with ``layer``'s output multiplied by ``scale`` (Ablation-CAM's primitive).

        The one addition this backend needed for the CAM family: the other
        CAM methods run on :meth:`gradients` and :meth:`forward` as they are.
        """
        (index,) = self._check_layers([layer])
        return _forward_scaled(self._net, self._net_input(self.to_numpy(inputs)), index,
                               np.asarray(scale))

    def forward_substituted(self, inputs: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        """Logits of the layers after ``layer`` run on ``activation`` (the layers before are skipped).

        A sequential network's later layers see only ``activation``, so one
        input image or M give the same logits; the inputs are still checked.
        """
        (index,) = self._check_layers([layer])
        x = self.to_numpy(inputs)
        values = np.asarray(activation)
        n = len(as_tuple(x)[0])
        if values.ndim < 1 or n not in (1, len(values)):
            raise argument_error("inputs", f"1 image or one per activation row ({len(values)})",
                                 shown(f"{n} images for an activation of shape {values.shape}"))
        for _, later in self._net.layers[index + 1:]:
            values, _ = later.forward(values)
        return values

    def parameter_layers(self) -> Sequence[str]:
        """The convolutions and Dense layers, input first."""
        return [name for name, layer in self._net.layers if isinstance(layer, (ConvNd, Dense))]

    def randomized(self, layers: Sequence[str], seed: int = 0, batchnorm: str = "reset") -> NumpyModel:
        """A :class:`NumpyModel` over a deep copy of the network, ``layers`` re-drawn.

        The draw is :func:`attrib._randomize.redrawn` (Dense weights are
        ``(in, out)``, so they are drawn output-first and transposed). The
        network has no BatchNorm: ``batchnorm`` is checked and changes nothing.
        """
        from attrib._randomize import check_batchnorm, check_layers, redrawn

        names = set(check_layers(layers, list(self.parameter_layers()), self.backend))
        check_batchnorm(batchnorm)
        clone = copy.deepcopy(self._net)
        for name, layer in clone.layers:
            if name in names:
                assert isinstance(layer, (ConvNd, Dense))
                dense = isinstance(layer, Dense)
                layer.weight = redrawn(layer.weight, seed=seed, layer=name, name="weight",
                                       channels_last=dense)
                layer.bias = redrawn(layer.bias, seed=seed, layer=name, name="bias")
        return NumpyModel(clone)

    def _check_layers(self, layers: Sequence[str]) -> list[int]:
        names = self._net.names
        indices = []
        for name in layers:
            if name not in names:
                raise argument_error("layer", "a layer name of this attrib_numpy model", name,
                                     did_you_mean(str(name), names) or f"Layers: {names}")
            indices.append(names.index(name))
        return indices

    def gradients(self, request: attrib.GradientRequest) -> attrib.GradientResult:
        if request.attention:  # its layers hold no attention: declared, not silently ignored
            raise attrib.BackendError(
                "attention: the 'numpy' backend captures no attention (its networks have none; "
                "Model.captures_attention is False); use the torch or jax backend")
        if request.token_relevance:  # no transformer rules here: declared, not silently ignored
            raise attrib.BackendError(
                "token_relevance: the 'numpy' backend has no transformer rule sets (AttnLRP), "
                "which the token relevance comes from; use the torch or jax backend")
        x = self.to_numpy(request.inputs)
        rules = rule_set(request.rule)
        rule = rules.rectifier if rules.rectifier_only else "vanilla"
        indices = self._check_layers(request.layers)
        objective = check_choice("objective", request.objective, attrib.OBJECTIVES)

        # one forward pass, keeping each layer's output and cache
        outputs, caches = [], []
        h = net_input = self._net_input(x)
        for _, layer in self._net.layers:
            h, cache = layer.forward(h)
            outputs.append(h)
            caches.append(cache)
        logits = h
        scores = None
        if request.target is not None:  # its NumPy reference gradient seeds the backward pass
            scores, seed = reference_scores(request.target, logits, objective, self.layout)
            targets = request.target.labels(len(as_tuple(x)[0]))
        elif request.target_weights is not None:
            weights = resolve_target_weights(request.target_weights, logits)
            targets = weights_targets(weights)
            seed = weighted_score_gradient(logits, weights, objective)
        else:
            targets = attrib.resolve_targets(request.targets, logits)
            seed = _score_gradient(logits, targets, objective)

        layers = self._net.layers
        lowest = min(indices, default=len(layers))
        wanted = set(indices) if request.layer_gradients else set()
        rectifier_above = any(layers[i][1].rectifier for i in range(lowest + 1, len(layers)))

        def walk(rule: str, stop: int, record: bool) -> tuple[np.ndarray, dict[int, np.ndarray]]:
            grad, recorded = seed, {}
            for i in range(len(layers) - 1, stop - 1, -1):
                if record and i in wanted:
                    recorded[i] = grad
                grad = layers[i][1].backward(grad, caches[i], rule)
            return grad, recorded

        passes = 0
        input_gradient = None
        layer_grads: dict[int, np.ndarray] = {}
        if rules.nonlinearity == "rescale":  # DeepLIFT: multipliers against the reference
            if request.reference is None:
                raise argument_error("reference", "the reference inputs of rule set 'deeplift'",
                                     None)
            reference = self._net_input(self.to_numpy(request.reference))
            input_gradient = multipliers(layers, net_input, reference, seed)
            passes += 1
        elif request.input_gradient and not rules.rectifier_only:  # LRP: attrib's rule references
            inputs = [net_input] + outputs[:-1]
            input_gradient = relevance(layers, inputs, caches, seed, logits, rules)
            passes += 1
            if wanted:
                _, layer_grads = walk("vanilla", lowest, True)
                passes += 1
        elif request.input_gradient:
            exact_layers = rule == "vanilla" or not rectifier_above
            input_gradient, layer_grads = walk(rule, 0, exact_layers)
            passes += 1
            if wanted and not exact_layers:
                _, layer_grads = walk("vanilla", lowest, True)
                passes += 1
        elif wanted:
            _, layer_grads = walk("vanilla", lowest, True)   # stop at the layer: no input gradient
            passes += 1

        if isinstance(x, tuple) and not isinstance(input_gradient, tuple | None):
            input_gradient = (input_gradient,)  # (x,) of a network of one input
        names = self._net.names
        return attrib.GradientResult(
            inputs=x,
            logits=logits,
            targets=targets,
            input_gradient=input_gradient,
            activations={names[i]: outputs[i] for i in indices},
            layer_gradients={names[i]: layer_grads[i] for i in indices if i in layer_grads},
            stats={"backward_passes": passes,
                   "rectifiers": sum(1 for _, layer in layers if layer.rectifier)},
            scores=scores,
        )


def _forward_scaled(net: Sequential, x: np.ndarray, index: int, scale: np.ndarray) -> np.ndarray:
    """``net(x)`` with the output of layer ``index`` multiplied by ``scale``."""
    for i, (_, layer) in enumerate(net.layers):
        x, _ = layer.forward(x)
        if i == index:
            x = x * scale
    return x


def _score_gradient(logits: np.ndarray, targets: np.ndarray, objective: str) -> np.ndarray:
    """d(sum_i score_i)/d logits for the objective (logit, log_softmax or softmax)."""
    rows = np.arange(len(targets))
    onehot = np.zeros_like(logits)
    onehot[rows, targets] = 1
    if objective == "logit":
        return onehot
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax = exp / exp.sum(axis=1, keepdims=True)
    if objective == "log_softmax":
        return onehot - softmax
    return softmax[rows, targets][:, None] * (onehot - softmax)
