"""Attention capture, the contract's third kind of capture: what it means and its NumPy reference.

A :class:`attrib.GradientRequest` may name attention layers (``attention=``)
or ask for ``"all"``; the backend then returns, for each attention operation
the forward pass ran inside those layers, its **attention probabilities**

    A = softmax(q k^T * scale + mask)          # (N, heads, T, S)

(the matrix the values are averaged with, ``out = A v``) and, when
``attention_gradients`` is set, the true gradient of the score at ``A``. The
model is not edited: torch intercepts ``F.scaled_dot_product_attention`` and
``nn.MultiheadAttention`` in a function mode and computes ``A`` explicitly only
in that call; jax finds the attention in the traced program (see the backends).
A layer is named by the module that runs the attention operation
(``"blocks.0.attn"`` in timm, ``"encoder.layers.encoder_layer_0.self_attention"``
in torchvision).

:func:`attention_probabilities` is the reference every backend is checked
against (the conformance case ``attention``); :func:`token_layout` maps the
T tokens of an attention to the prefix tokens and the patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._errors import AttribTypeError, argument_error, shown

__all__ = ["ALL", "check_attention", "attention_probabilities", "TokenLayout", "token_layout",
           "check_prefix_tokens", "merge_attention"]

#: ``GradientRequest.attention`` value that captures every attention operation
ALL = "all"


def check_attention(attention: object) -> tuple[str, ...] | str:
    """``attention`` as the request holds it: ``()``, ``"all"`` or a tuple of distinct names."""
    if attention is None or attention == ():
        return ()
    if attention == ALL:
        return ALL
    if isinstance(attention, str):
        return (attention,)
    if isinstance(attention, Sequence) and attention \
            and all(isinstance(n, str) and n for n in attention):
        names = tuple(attention)
        if len(set(names)) == len(names):
            return names
    raise argument_error("attention", "'all', an attention layer name or a list of distinct names",
                         attention, kind=AttribTypeError)


def merge_attention(a: tuple[str, ...] | str, b: tuple[str, ...] | str) -> tuple[str, ...] | str:
    """The attention capture serving both ``a`` and ``b``."""
    if a == ALL or b == ALL:
        return ALL
    return tuple(a) + tuple(n for n in b if n not in a)


def attention_probabilities(q: np.ndarray, k: np.ndarray, scale: float | None = None,
                            mask: np.ndarray | None = None) -> np.ndarray:
    """``softmax(q k^T * scale + mask)`` over the last axis, in float64.

    Parameters
    ----------
    q : ndarray, shape (N, heads, T, d)
    k : ndarray, shape (N, heads, S, d)
    scale : float, optional
        ``1 / sqrt(d)`` by default (Vaswani et al. 2017).
    mask : ndarray, optional
        Boolean (True: attend) or additive, broadcasting to (N, heads, T, S).

    Returns
    -------
    ndarray, shape (N, heads, T, S)
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    logits = np.einsum("nhtd,nhsd->nhts", q, k) * scale
    if mask is not None:
        mask = np.asarray(mask)
        logits = np.where(mask, logits, -np.inf) if mask.dtype == bool else logits + mask
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class TokenLayout:
    """How T tokens of a vision transformer lay out: ``prefix`` leading tokens, then an h × w grid.

    Attributes
    ----------
    prefix : int
        Class, distillation and register tokens before the patches.
    h, w : int
        The patch grid, row-major.
    """

    prefix: int
    h: int
    w: int

    @property
    def tokens(self) -> int:
        return self.prefix + self.h * self.w


def check_prefix_tokens(prefix_tokens: object) -> int | None:
    """``prefix_tokens`` if it is None or a non-negative int, else a clear error."""
    if prefix_tokens is None:
        return None
    if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, (int, np.integer)) \
            or prefix_tokens < 0:
        raise argument_error("prefix_tokens", "None (read from the model) or an int >= 0 (class, "
                             "distillation and register tokens)", prefix_tokens,
                             kind=AttribTypeError)
    return int(prefix_tokens)


def token_layout(tokens: int, input_hw: tuple[int, int], prefix: int | None,
                 reshape: tuple[int, int] | None, method: str) -> TokenLayout:
    """The :class:`TokenLayout` of ``tokens`` tokens for an (H, W) input.

    ``reshape`` (h, w) fixes the grid (the prefix is then ``tokens - h * w``);
    else ``prefix`` (read from the model or given) fixes the prefix and the
    grid is the factorisation of ``tokens - prefix`` with the input's aspect
    ratio; with neither, the one prefix among 0 and 1 that leaves such a grid.
    A clear :class:`attrib.AttribError` where none fits.
    """
    from .methods._grid import _token_grid

    if reshape is not None:
        h, w = reshape
        extra = tokens - h * w
        if extra < 0 or (prefix is not None and extra != prefix):
            raise argument_error(
                "reshape", f"a grid (h, w) with h * w + prefix tokens == {tokens} tokens",
                shown(f"{reshape}" + (f" with prefix_tokens={prefix}" if prefix is not None else "")),
                f"The attention has {tokens} tokens for a {input_hw[0]}x{input_hw[1]} input.")
        return TokenLayout(extra, h, w)
    if prefix is not None:
        grid = _token_grid(tokens - prefix, input_hw) if tokens > prefix else None
        if grid is None:
            raise argument_error(
                "prefix_tokens", f"a prefix leaving a patch grid of the input's aspect ratio "
                f"({input_hw[0]}x{input_hw[1]}) among the attention's {tokens} tokens",
                prefix, "Pass reshape=(h, w) with the grid, or the right prefix_tokens= "
                "(class + distillation + register tokens).")
        return TokenLayout(prefix, *grid)
    found = [(extra, grid) for extra in (0, 1)
             if (grid := _token_grid(tokens - extra, input_hw)) is not None]
    if len(found) != 1:
        raise argument_error(
            "prefix_tokens", f"the number of tokens before the patch grid for {method!r}",
            shown(f"nothing the model says, and {tokens} tokens fit "
                  f"{'no grid' if not found else 'several layouts'} of a "
                  f"{input_hw[0]}x{input_hw[1]} input"),
            "Pass prefix_tokens= (class + distillation + register tokens) or reshape=(h, w).")
    extra, grid = found[0]
    return TokenLayout(extra, *grid)
