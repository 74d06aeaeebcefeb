"""Attention rollout (Abnar & Zuidema 2020): attention multiplied through the layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._attention import ALL, TokenLayout
from .._errors import AttribTypeError, argument_error, check_choice
from ._attention_maps import AttentionMethod

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")


def rollout(attentions: list[np.ndarray], head_fusion: str = "mean",
            discard_ratio: float = 0.0) -> np.ndarray:
    """Token-to-token rollout (N, T, T) of attentions (N, heads, T, T), input side first.

    Per layer, as ``vit-explain`` defines it: the heads fused (mean, max or
    min over heads); the ``int(T * T * discard_ratio)`` smallest entries of
    each sample's fused matrix set to 0, except entry (0, 0) (the class
    token's attention to itself); the residual connection added as the
    identity, ``(A + I) / 2``; each row renormalised to sum 1; and
    ``R = A_l @ ... @ A_1``. (vit-explain divides by the row sums broadcast
    along the last axis, which renormalises columns; with mean fusion and no
    discard the rows already sum to 1 and both agree.)
    """
    n, _, t, _ = attentions[0].shape
    result = np.broadcast_to(np.eye(t), (n, t, t)).copy()
    eye = np.eye(t)
    for attention in attentions:
        a = np.asarray(attention, dtype=np.float64)
        fused = a.mean(axis=1) if head_fusion == "mean" else \
            a.max(axis=1) if head_fusion == "max" else a.min(axis=1)
        drop = int(t * t * discard_ratio)
        if drop:
            flat = fused.reshape(n, t * t)
            lowest = np.argsort(flat, axis=-1, kind="stable")[:, :drop]
            for i in range(n):
                index = lowest[i][lowest[i] != 0]
                flat[i, index] = 0.0
        step = (fused + eye) / 2
        step = step / step.sum(axis=-1, keepdims=True)
        result = step @ result
    return result


class AttentionRollout(AttentionMethod):
    """Attention rollout: how much each patch flows into the class token through all layers.

    With ``A_l`` the attention of layer ``l`` (N, heads, T, T), heads fused and
    the smallest entries discarded as in ``vit-explain``, and the residual
    connection as the identity::

        Â_l = rownorm((fuse_heads(A_l) + I) / 2)
        R   = Â_L @ ... @ Â_1                             # (N, T, T)
        map = R[:, class token, patch tokens]             # (N, h, w), upsampled

    Class-agnostic (no gradient; ``target`` only fills ``targets``). A model
    without a class token uses the mean of every token's row.

    Parameters
    ----------
    model, attention, prefix_tokens, reshape, backend, objective
        See :class:`attrib.methods._attention_maps.AttentionMethod`.
    head_fusion : {"mean", "max", "min"}
    discard_ratio : float in [0, 1)
        Share of the smallest fused attention entries set to 0 in each layer.

    References
    ----------
    Abnar & Zuidema (2020). Quantifying attention flow in transformers.
    Gildenblat, ``vit-explain`` (2020).
    """

    name = "attention_rollout"

    def __init__(self, model: Any, *, head_fusion: str = "mean", discard_ratio: float = 0.0,
                 attention: str | Sequence[str] = ALL, prefix_tokens: int | None = None,
                 reshape: tuple[int, int] | None = None, backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        self.head_fusion = check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) \
                or not 0.0 <= discard_ratio < 1.0:
            raise argument_error("discard_ratio", "a float in [0, 1)", discard_ratio,
                                 kind=AttribTypeError)
        self.discard_ratio = float(discard_ratio)
        super().__init__(model, attention=attention, prefix_tokens=prefix_tokens,
                         reshape=reshape, backend=backend, objective=objective, registry=registry)

    def relevance(self, attentions: list[np.ndarray], gradients: list[np.ndarray] | None,
                  layout: TokenLayout) -> np.ndarray:
        return rollout(attentions, self.head_fusion, self.discard_ratio)
