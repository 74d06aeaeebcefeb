"""Generic attention explainability (Chefer, Gur, Wolf, ICCV 2021): gradient-weighted rollout."""

from __future__ import annotations

import numpy as np

from .._attention import TokenLayout
from ._attention_maps import AttentionMethod


def generic_relevance(attentions: list[np.ndarray], gradients: list[np.ndarray]) -> np.ndarray:
    """Chefer et al.'s self-attention relevance (N, T, T), layers input side first.

    ``R = I``; per layer ``Ā = mean_h (∇A ⊙ A)⁺`` and ``R ← R + Ā R``
    (their equations 5–6 for self-attention).
    """
    n, _, t, _ = attentions[0].shape
    relevance = np.broadcast_to(np.eye(t), (n, t, t)).copy()
    for a, g in zip(attentions, gradients):
        cam = np.maximum(np.asarray(g, np.float64) * np.asarray(a, np.float64), 0).mean(axis=1)
        relevance = relevance + cam @ relevance
    return relevance


class GenericAttention(AttentionMethod):
    """Class-specific relevance of each patch: the rollout of gradient-weighted attention.

    With ``A_l`` the attention of layer ``l`` (N, heads, T, T) and ``∇A_l`` the
    gradient of the target's score at it::

        Ā_l = mean over heads of (∇A_l ⊙ A_l)⁺
        R   = I;  R ← R + Ā_l R   for l = 1 … L          # (N, T, T)
        map = R[:, class token, patch tokens]             # (N, h, w), upsampled

    One forward and one backward pass (the gradient stops at the first
    attention). A model without a class token uses the mean of every token's row.

    Parameters
    ----------
    model, attention, prefix_tokens, reshape, backend, objective
        See :class:`attrib.methods._attention_maps.AttentionMethod`.

    References
    ----------
    Chefer, Gur, Wolf (2021). Generic attention-model explainability for
    interpreting bi-modal and encoder-decoder transformers. ICCV.
    """

    name = "generic_attention"
    uses_gradients = True

    def relevance(self, attentions: list[np.ndarray], gradients: list[np.ndarray] | None,
                  layout: TokenLayout) -> np.ndarray:
        assert gradients is not None
        return generic_relevance(attentions, gradients)
