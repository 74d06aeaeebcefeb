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

from attrib.rules import LinearOp, RuleSet

from ._layers import Conv2d, Dense, GlobalAvgPool, Layer

__all__ = ["relevance"]


def _conv_op(layer: Conv2d, x_shape: tuple[int, ...]) -> LinearOp:
    def with_weights(weight: Any, bias: Any) -> Conv2d:
        b = np.zeros(weight.shape[0]) if bias is None else bias
        return Conv2d(weight, b, stride=layer.stride, padding=layer.padding)

    return LinearOp(lambda x, w, b: with_weights(w, b).forward(x)[0],
                    lambda g, w: with_weights(w, None).backward(g, x_shape, "vanilla"))


_DENSE = LinearOp(lambda x, w, b: x @ w + (0.0 if b is None else b), lambda g, w: g @ w.T)


def relevance(layers: list[tuple[str, Layer]], inputs: list[np.ndarray], caches: list[Any],
              seed: np.ndarray, logits: np.ndarray, rules: RuleSet) -> np.ndarray:
    """The backward walk under ``rules``; ``inputs[i]`` is layer ``i``'s input."""
    grad = seed * logits if rules.seed == "relevance" else seed
    first = next((i for i, (_, layer) in enumerate(layers) if isinstance(layer, (Conv2d, Dense))),
                 None)
    for i in range(len(layers) - 1, -1, -1):
        name, layer = layers[i]
        x = inputs[i]
        if isinstance(layer, (Conv2d, Dense)):
            kind = "convolution" if isinstance(layer, Conv2d) else "dense"
            rule = rules.linear_rule(kind, name, first=i == first)
            op = _conv_op(layer, x.shape) if isinstance(layer, Conv2d) else _DENSE
            grad = (op.transpose(grad, layer.weight) if rule is None
                    else rule.reference(x, layer.weight, layer.bias, grad, op))
        elif layer.rectifier:
            if rules.rectifier != "pass":
                grad = layer.backward(grad, caches[i], rules.rectifier)
        elif isinstance(layer, GlobalAvgPool) and rules.pooling is not None:
            op = LinearOp(lambda v, _w, _b: v.mean(axis=(2, 3)),
                          lambda g, _w, c=caches[i], lay=layer: lay.backward(g, c, "vanilla"))
            grad = rules.pooling.reference(x, None, None, grad, op)
        else:  # Flatten, or pooling without a rule: the true derivative
            grad = layer.backward(grad, caches[i], "vanilla")
    return grad
