"""Rule sets beyond rectifiers (LRP) for the numpy backend, from attrib's NumPy rule references.

A third-party backend implements the rule-set contract by applying each
layer's rule (:mod:`attrib.rules`) in its own backward walk: here every
convolution and dense layer is wrapped as an :class:`attrib.rules.LinearOp`
built from the layer's own forward and backward, so the rule's reference
*is* the implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attrib.rules import LinearOp, RuleSet, rescale

from ._layers import ConvNd, Dense, GlobalAvgPool, Layer

__all__ = ["relevance", "multipliers"]


def _conv_op(layer: ConvNd, x_shape: tuple[int, ...]) -> LinearOp:
    def with_weights(weight: Any, bias: Any) -> ConvNd:
        b = np.zeros(weight.shape[0]) if bias is None else bias
        return type(layer)(weight, b, stride=layer.stride, padding=layer.padding)

    return LinearOp(lambda x, w, b: with_weights(w, b).forward(x)[0],
                    lambda g, w: with_weights(w, None).backward(g, x_shape, "vanilla"))


_DENSE = LinearOp(lambda x, w, b: x @ w + (0.0 if b is None else b), lambda g, w: g @ w.T)


def relevance(layers: list[tuple[str, Layer]], inputs: list[np.ndarray], caches: list[Any],
              seed: np.ndarray, logits: np.ndarray, rules: RuleSet) -> np.ndarray:
    """The backward walk under ``rules``; ``inputs[i]`` is layer ``i``'s input."""
    grad = seed * logits if rules.seed == "relevance" else seed
    first = next((i for i, (_, layer) in enumerate(layers) if isinstance(layer, (ConvNd, Dense))),
                 None)
    for i in range(len(layers) - 1, -1, -1):
        name, layer = layers[i]
        x = inputs[i]
        if isinstance(layer, (ConvNd, Dense)):
            kind = "convolution" if isinstance(layer, ConvNd) else "dense"
            rule = rules.linear_rule(kind, name, first=i == first)
            op = _conv_op(layer, x.shape) if isinstance(layer, ConvNd) else _DENSE
            grad = (op.transpose(grad, layer.weight) if rule is None
                    else rule.reference(x, layer.weight, layer.bias, grad, op))
        elif layer.rectifier:
            if rules.rectifier != "pass":
                grad = layer.backward(grad, caches[i], rules.rectifier)
        elif isinstance(layer, GlobalAvgPool) and rules.pooling is not None:
            op = LinearOp(lambda v, _w, _b: v.mean(axis=tuple(range(2, v.ndim))),
                          lambda g, _w, c=caches[i], lay=layer: lay.backward(g, c, "vanilla"))
            grad = rules.pooling.reference(x, None, None, grad, op)
        else:  # Flatten, or pooling without a rule: the true derivative
            grad = layer.backward(grad, caches[i], "vanilla")
    return grad


def multipliers(layers: list[tuple[str, Layer]], x: np.ndarray, reference: np.ndarray,
                seed: np.ndarray) -> np.ndarray:
    """DeepLIFT's multipliers at the input (:data:`attrib.rules.DEEPLIFT`) against ``reference``.

    One forward pass each for the inputs and the reference; rectifiers take the
    rescale rule (:func:`attrib.rules.rescale`), every other layer its true derivative.
    """
    ins, ins0, caches = [], [], []
    h, h0 = x, reference
    for _, layer in layers:
        ins.append(h)
        ins0.append(h0)
        h, cache = layer.forward(h)
        caches.append(cache)
        h0, _ = layer.forward(h0)
    grad = seed
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i][1]
        if layer.rectifier:
            z, z0 = ins[i], ins0[i]
            dy = layer.forward(z)[0] - layer.forward(z0)[0]
            grad = grad * rescale(z - z0, dy, layer.forward(z0)[1].astype(np.float64))
        else:
            grad = layer.backward(grad, caches[i], "vanilla")
    return grad
