"""A layer's output read as a grid of channel vectors, (N, C, h, w), whatever its layout.

CAM methods work on a grid of positions, each with C channels. Layers lay it
out in one of three ways:

- ``"NCHW"``: a channels-first convolution, (N, C, h, w) (torch);
- ``"NHWC"``: channels last, (N, h, w, C) (Flax; Swin's stages in torch);
- ``"tokens"``: a transformer's tokens, (N, T, C), where the last ``h * w``
  tokens are the grid in row-major order and the first ``T - h * w`` are
  extra tokens (ViT's class token) that the map leaves out.

A 4-D output is read in the model's own layout unless only the other layout
gives a grid with the input's aspect ratio (so Swin's (N, 7, 7, 768) in a
torch model is read channels-last). Tokens are mapped to a grid when exactly
one of "no extra token" and "one class token" leaves a token count that
factors into a grid of the input's aspect ratio; otherwise ``reshape=`` says
how: ``(h, w)``, or a callable from the layer's output (NumPy) to (N, C, h, w).
Signals and volumes: for inputs with one or three spatial axes (N, C, L),
(N, C, D, H, W) (or channels last), a layer is a grid when its output has as
many spatial axes, read in the model's layout (``Grid.dims``); "NCHW" then
means channels first and "NHWC" channels last, and the grid is read as
(N, C, *dims).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import AttribTypeError, argument_error, shown
from .._layout import batch_spelling, spatial_shape

__all__ = ["Grid", "find_grid", "check_reshape", "input_hw"]

Reshape = Callable[[np.ndarray], np.ndarray] | tuple[int, int] | None


@dataclass(frozen=True)
class Grid:
    """How one layer's output maps to (N, C, h, w).

    Attributes
    ----------
    kind : {"NCHW", "NHWC", "tokens", "callable"}
    h, w : int
        The grid's size (0 for a callable, known only once it ran).
    extra : int
        Leading tokens left out (``"tokens"`` only).
    reshape : callable or None
        The user's callable (``"callable"`` only).
    dims : tuple of int
        The grid's size when it has one or three spatial axes (signals,
        volumes; ``h`` and ``w`` are then 0), else ``()``.
    """

    kind: str
    h: int
    w: int
    extra: int = 0
    reshape: Callable[[np.ndarray], np.ndarray] | None = None
    dims: tuple[int, ...] = ()

    @property
    def cells(self) -> int:
        """The number of grid positions (``h * w``, or the product of ``dims``)."""
        return int(np.prod(self.dims)) if self.dims else self.h * self.w

    def to_nchw(self, array: np.ndarray) -> np.ndarray:
        """The layer's output (or its gradient) as (N, C, h, w), or (N, C, *dims)."""
        if self.kind == "NCHW":
            return array
        if self.kind == "NHWC":
            return array.transpose(0, 3, 1, 2) if array.ndim == 4 else np.moveaxis(array, -1, 1)
        if self.kind == "tokens":
            grid = array[:, self.extra:, :].reshape(array.shape[0], self.h, self.w, array.shape[2])
            return grid.transpose(0, 3, 1, 2)
        assert self.reshape is not None
        out = np.asarray(self.reshape(array))
        if out.ndim < 3 or out.shape[0] != array.shape[0]:
            raise argument_error("reshape", "a callable returning (N, C, h, w)",
                                 shown(f"an array of shape {out.shape} from an input of shape "
                                       f"{array.shape}"))
        return out

    def channel_axis(self, ndim: int) -> int:
        """The axis of the channels in the layer's own output."""
        if self.kind == "NCHW":
            return 1
        if self.kind in ("NHWC", "tokens"):
            return ndim - 1
        raise argument_error(
            "reshape", "(h, w) for Ablation-CAM, which zeroes channels of the layer's own output",
            "a callable", "Pass reshape=(h, w) (tokens or a channels-last grid).")

    def channel_scale(self, masks: np.ndarray, ndim: int) -> np.ndarray:
        """``masks`` (B, C) shaped to broadcast against the layer's output (B, ...)."""
        shape = [masks.shape[0]] + [1] * (ndim - 1)
        shape[self.channel_axis(ndim)] = masks.shape[1]
        return masks.reshape(shape)


def input_hw(shape: tuple[int, ...], layout: str, method: str) -> tuple[int, ...]:
    """The spatial size of a batch in ``layout``: (H, W) of images, (L,) or (D, H, W).

    A clear error for a batch with no spatial axis (N, C) or more than three.
    """
    if not 3 <= len(shape) <= 5:
        raise argument_error(
            "inputs", f"images {batch_spelling(layout, 2)}, signals {batch_spelling(layout, 1)} "
            f"or volumes {batch_spelling(layout, 3)} for {method!r}", shown(f"shape {shape}"),
        )
    return spatial_shape(shape, layout)


def check_reshape(reshape: object) -> Reshape:
    """``reshape`` if it is None, ``(h, w)`` or a callable, else a clear error."""
    if reshape is None or callable(reshape):
        return reshape  # type: ignore[return-value]
    if (isinstance(reshape, (tuple, list)) and len(reshape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in reshape)):
        return (int(reshape[0]), int(reshape[1]))
    raise argument_error("reshape", "None, (h, w) with positive ints, or a callable returning "
                         "(N, C, h, w)", reshape, kind=AttribTypeError)


def _aspect_matches(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    """Whether an (h, w) grid covers an (H, W) input with about the same stride on both axes."""
    big_h, big_w = input_hw
    if h < 1 or w < 1:
        return False
    sh, sw = big_h / h, big_w / w
    return abs(sh - sw) <= 0.5 * max(min(sh, sw), 1.0) or (h == 1 and w == 1)


def _token_grid(tokens: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) with h * w == tokens and the input's aspect ratio, if one exists (of several
    near it, the one whose strides on the two axes are closest: 30 tokens of a 48x40 input
    are 6x5, not 5x6)."""
    if tokens < 1:
        return None
    big_h, big_w = input_hw
    h = max(1, round(math.sqrt(tokens * big_h / big_w)))
    fits = [(cand, tokens // cand) for cand in (h, h - 1, h + 1)
            if cand >= 1 and tokens % cand == 0 and _aspect_matches(cand, tokens // cand, input_hw)]
    if not fits:
        return None
    return min(fits, key=lambda hw: abs(math.log(big_h * hw[1] / (big_w * hw[0]))))


def find_grid(shape: tuple[int, ...], layout: str, input_hw: tuple[int, ...], reshape: Reshape,
              layer: str, method: str) -> Grid:
    """The :class:`Grid` of a layer output of ``shape``; a clear error when there is none.

    ``input_hw`` is the input's spatial size: (H, W) for images, (L,) or (D, H, W)
    for signals and volumes (:func:`_signal_grid`).
    """
    if callable(reshape):
        return Grid("callable", 0, 0, reshape=reshape)
    if len(input_hw) != 2:
        return _signal_grid(shape, layout, tuple(input_hw), reshape, layer, method)
    if len(shape) == 4:
        native = "NCHW" if layout == "NCHW" else "NHWC"
        other = "NHWC" if native == "NCHW" else "NCHW"

        def hw(kind: str) -> tuple[int, int]:
            return (shape[2], shape[3]) if kind == "NCHW" else (shape[1], shape[2])

        if reshape is not None:
            for kind in (native, other):
                if hw(kind) == reshape:
                    return Grid(kind, *reshape)
            raise _no_grid(shape, layer, method, f"reshape={reshape} fits no grid of this output")
        if not _aspect_matches(*hw(native), input_hw) and _aspect_matches(*hw(other), input_hw):
            return Grid(other, *hw(other))
        return Grid(native, *hw(native))
    if len(shape) == 3:
        tokens = shape[1]
        if reshape is not None:
            h, w = reshape
            if h * w > tokens:
                raise _no_grid(shape, layer, method, f"reshape={reshape} needs {h * w} tokens, "
                               f"the layer has {tokens}")
            return Grid("tokens", h, w, extra=tokens - h * w)
        found = [(extra, grid) for extra in (0, 1)
                 if (grid := _token_grid(tokens - extra, input_hw)) is not None]
        if len(found) == 1:
            extra, (h, w) = found[0]
            return Grid("tokens", h, w, extra=extra)
        raise _no_grid(shape, layer, method, f"{tokens} tokens do not map to one grid of the "
                       f"input's aspect ratio {input_hw[0]}x{input_hw[1]} (with or without a "
                       "class token)")
    raise _no_grid(shape, layer, method, None)


def _signal_grid(shape: tuple[int, ...], layout: str, size: tuple[int, ...], reshape: Reshape,
                 layer: str, method: str) -> Grid:
    """The grid of a layer of a network on signals (one spatial axis) or volumes (three).

    The layer's output must have as many spatial axes as the input, in the
    model's layout: (N, C, l) for (N, C, L) inputs, (N, C, d, h, w) for
    (N, C, D, H, W) (channels last in a channels-last model).
    """
    k = len(size)
    if reshape is not None:
        raise argument_error(
            "reshape", f"None for inputs with {k} spatial axes (reshape=(h, w) reads 2-D grids)",
            reshape, "Pass a callable mapping the layer's output to (N, C, ...) instead.")
    if len(shape) != k + 2:
        raise argument_error(
            "layer", f"a layer with a {k + 2}-D output {batch_spelling(layout, k).lower()} for "
            f"{method!r} on inputs with {k} spatial ax{'e' if k > 1 else 'i'}s",
            shown(f"{layer!r} with output shape {tuple(shape)}"),
            "Choose a convolutional layer of the inputs' dimension (Conv1d for signals, "
            "Conv3d for volumes).")
    dims = tuple(shape[2:]) if layout == "NCHW" else tuple(shape[1:-1])
    return Grid(layout, 0, 0, dims=dims)


def _no_grid(shape: tuple[int, ...], layer: str, method: str, why: str | None) -> Any:
    hint = "Pass reshape=(h, w) (the grid; leading extra tokens are left out) or a callable " \
           "mapping the layer's output to (N, C, h, w)"
    if why is None:
        hint = "Choose a convolutional layer or block, or a transformer block's token output"
    return argument_error(
        "layer",
        f"a layer with a 4-D output (N, C, h, w) / (N, h, w, C) or tokens (N, T, C) for {method!r}",
        shown(f"{layer!r} with output shape {tuple(shape)}" + (f": {why}" if why else "")),
        hint + ".",
    )
