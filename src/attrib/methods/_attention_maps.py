"""The attention methods' shared base: captured attention (N, heads, T, T) → token relevance → map.

An :class:`AttentionMethod` asks the backend for the attention probabilities
of every attention layer (or the named ones) and, if it uses them, their true
gradients (see :mod:`attrib._attention`); it turns them into a token-to-token
relevance matrix R (N, T, T) (:meth:`AttentionMethod.relevance`), and reads
the row of the class token (the mean of all rows when the model has no prefix
token). The base does the rest once: checking that the attentions form one
global token graph (a windowed-attention model such as Swin does not), the
token layout (prefix tokens and patch grid, read from the model or given),
and bilinear upsampling to the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .._attention import ALL, TokenLayout, check_attention, check_prefix_tokens, token_layout
from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import AttribTypeError, BackendError, argument_error, shown
from .._model import GradientResult
from .._resize import resize_bilinear
from ._cam import input_hw

__all__ = ["AttentionMethod", "check_reshape", "image_size", "grid_maps"]


def check_reshape(reshape: object) -> tuple[int, int] | None:
    """``reshape`` as the patch grid ``(h, w)`` of positive ints, or ``None``; else a clear error."""
    if reshape is not None and not (
            isinstance(reshape, (tuple, list)) and len(reshape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in reshape)):
        raise argument_error("reshape", "None or the patch grid (h, w) as positive ints",
                             reshape, kind=AttribTypeError)
    return None if reshape is None else (int(reshape[0]), int(reshape[1]))


def image_size(result: GradientResult, layout: str, method: str) -> tuple[int, int]:
    """The (H, W) of the images of ``result`` (a patch grid is two-dimensional)."""
    spatial = input_hw(tuple(result.inputs.shape), layout, method)
    if len(spatial) != 2:
        raise argument_error("inputs", f"images (N, C, H, W) or (N, H, W, C) for {method!r}",
                             shown(f"shape {tuple(result.inputs.shape)}"))
    return int(spatial[0]), int(spatial[1])


def grid_maps(row: np.ndarray, layout: TokenLayout, size: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The patch tokens of ``row`` (N, T) on their grid (N, h, w), and that grid upsampled
    bilinearly (half-pixel centres) to ``size`` (N, H, W)."""
    grid = row[:, layout.prefix:].reshape(row.shape[0], layout.h, layout.w)
    return grid, resize_bilinear(grid, size)


class AttentionMethod(Attributor):
    """Base of the methods computed from captured attention (rollout, generic attention).

    Parameters
    ----------
    model : a framework model or an :class:`attrib.Model`
        A backend that captures attention (torch, jax).
    attention : "all", str or sequence of str
        The attention layers, in forward order (default: every attention
        operation of the forward pass).
    prefix_tokens : int, optional
        Tokens before the patch grid (class, distillation, registers); read
        from the model when ``None``.
    reshape : (h, w), optional
        The patch grid; found from the token count and the input's aspect
        ratio when ``None``.
    backend, objective
        As every method.

    Notes
    -----
    ``attribution`` (N, H, W): the token map upsampled bilinearly (half-pixel
    centres) to the input; ``layer_attribution`` (N, h, w): the map on the
    patch grid; ``parts["tokens"]`` (N, T): the relevance row of every token,
    prefix tokens included. Never normalised.
    """

    #: whether the method needs the gradient at the attention
    uses_gradients: ClassVar[bool] = False

    def __init__(self, model: Any, *, attention: str | Sequence[str] = ALL,
                 prefix_tokens: int | None = None, reshape: tuple[int, int] | None = None,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self._attention = check_attention(attention)
        if not self._attention:
            raise argument_error("attention", "'all' or attention layer names", attention)
        self._prefix = check_prefix_tokens(prefix_tokens)
        self._reshape = check_reshape(reshape)
        if not self.model.captures_attention:
            raise BackendError(
                f"backend: {self.model.backend!r} does not capture attention "
                f"(Model.captures_attention is False), which {self.name!r} needs; use the torch "
                "or jax backend, or implement GradientRequest.attention (see "
                "docs/how-to/write-a-backend.md)")

    def needs(self) -> GradientNeeds:
        return GradientNeeds(attention=self._attention, attention_gradients=self.uses_gradients)

    def relevance(self, attentions: list[np.ndarray], gradients: list[np.ndarray] | None,
                  layout: TokenLayout) -> np.ndarray:
        """Token-to-token relevance (N, T, T) from the attentions (N, heads, T, T), input side first."""
        raise NotImplementedError

    def compute(self, result: GradientResult) -> MethodOutput:
        size = image_size(result, self.model.layout, self.name)
        if not result.attention:
            raise BackendError(f"backend: {self.model.backend!r} returned no attention for a "
                               f"request that asked for it ({self.name!r})")
        names = list(result.attention)
        attentions = [np.asarray(result.attention[n]) for n in names]
        gradients = [np.asarray(result.attention_gradients[n]) for n in names] \
            if self.uses_gradients else None
        n = result.inputs.shape[0]
        self._check_global(names, attentions, n)
        tokens = attentions[0].shape[-1]
        prefix = self._prefix if self._prefix is not None else self.model.prefix_tokens()
        layout = token_layout(tokens, size, prefix, self._reshape, self.name)
        relevance = self.relevance(attentions, gradients, layout)
        row = relevance[:, 0, :] if layout.prefix else relevance.mean(axis=1)
        grid, upsampled = grid_maps(row, layout, size)
        return MethodOutput(
            attribution=upsampled, layer_attribution=grid,
            parts={"tokens": row},
            stats={"attention_layers": tuple(names), "prefix_tokens": layout.prefix,
                   "grid": (layout.h, layout.w)})

    def _check_global(self, names: list[str], attentions: list[np.ndarray], n: int) -> None:
        """One global token graph: every attention (N, heads, T, T) with the same T."""
        first = attentions[0].shape
        for name, a in zip(names, attentions):
            if a.ndim != 4 or a.shape[0] != n or a.shape[-1] != a.shape[-2] \
                    or a.shape[-1] != first[-1]:
                raise argument_error(
                    "model", f"a transformer whose attention layers all relate the same T tokens "
                    f"of each image, (N={n}, heads, T, T), for {self.name!r}",
                    shown(f"attention {name!r} of shape {tuple(a.shape)}"
                          + (f" after {tuple(first)}" if a.shape != first else "")),
                    "Windowed attention (Swin) or token merging has no global token graph, so "
                    "rollout through the layers is not defined; use a CAM method on a stage's "
                    "output (e.g. 'gradcam') instead, or name attention layers of one resolution.")

    @property
    def layers(self) -> tuple[str, ...]:
        return () if self._attention == ALL else tuple(self._attention)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.model.backend!r}, "
                f"attention={self._attention!r}, objective={self.objective!r})")
