"""Layouts with any number of spatial axes: channels first or channels last.

A layout names where the channels are; the spatial axes are the others after
the batch axis, as many as the data has:

- ``"NCHW"`` — **channels first**: (N, C, L), (N, C, H, W), (N, C, D, H, W) (torch);
- ``"NHWC"`` — **channels last**: (N, L, C), (N, H, W, C), (N, D, H, W, C) (Flax).

The two names are kept from the 2-D case (every :class:`attrib.Explanation`
records one); they mean "channels first" and "channels last" whatever the
number of spatial axes.
"""

from __future__ import annotations

__all__ = ["channel_axis", "spatial_axes", "spatial_shape", "batch_spelling"]

_SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def channel_axis(layout: str, ndim: int) -> int:
    """The channel axis of an ``ndim``-D batch in ``layout`` (non-negative).

    >>> channel_axis("NCHW", 5), channel_axis("NHWC", 3)
    (1, 2)
    """
    return 1 if layout == "NCHW" else ndim - 1


def spatial_axes(layout: str, ndim: int) -> tuple[int, ...]:
    """The spatial axes of an ``ndim``-D batch (N, C, ...) or (N, ..., C) in ``layout``.

    >>> spatial_axes("NCHW", 3), spatial_axes("NHWC", 5)
    ((2,), (1, 2, 3))
    """
    return tuple(range(2, ndim)) if layout == "NCHW" else tuple(range(1, ndim - 1))


def spatial_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The sizes of the spatial axes of a batch of ``shape`` in ``layout``.

    >>> spatial_shape((2, 3, 32, 32), "NCHW"), spatial_shape((2, 100, 4), "NHWC")
    ((32, 32), (100,))
    """
    return tuple(shape[axis] for axis in spatial_axes(layout, len(shape)))


def batch_spelling(layout: str, spatial: int) -> str:
    """How a batch with ``spatial`` spatial axes is written: ``"(N, C, H, W)"``, ``"(N, L, C)"``.

    >>> batch_spelling("NCHW", 1), batch_spelling("NHWC", 3)
    ('(N, C, L)', '(N, D, H, W, C)')
    """
    names = _SPATIAL_NAMES.get(spatial, tuple(f"S{i}" for i in range(1, spatial + 1)))
    axes = ("C", *names) if layout == "NCHW" else (*names, "C")
    return f"({', '.join(('N', *axes))})"
