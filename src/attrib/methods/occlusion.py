"""Occlusion: the drop of the score when a window of the image is covered."""

from __future__ import annotations

import itertools
import numbers
from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._errors import AttribTypeError, argument_error, shown
from .._layout import channel_axis
from ._batched import Explained, Forwarded, MultiPassMethod, check_count, chunks, padded, spatial_axes

__all__ = ["Occlusion", "window_starts"]


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Start of each window along an axis of ``size``: Captum's positions.

    ``ceil((size - window) / stride) + 1`` windows at ``k * stride``; the last
    one is cut at the border when ``stride`` does not divide ``size - window``.

    >>> window_starts(10, 4, 4).tolist()
    [0, 4, 8]
    """
    count = int(np.ceil((size - window) / stride)) + 1
    return np.arange(count) * stride


def _sizes(name: str, value: object) -> tuple[int, ...]:
    """``value`` as a tuple of sizes: an int gives ``(value, value)`` (images)."""
    values = (value, value) if isinstance(value, numbers.Integral) else value
    if (not isinstance(values, (tuple, list)) or not 1 <= len(values) <= 3 or isinstance(
            value, bool) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                    for v in values)):
        raise argument_error(name, "an int or a pair of ints (height, width); (length,) for "
                             "signals, (depth, height, width) for volumes", value,
                             kind=AttribTypeError)
    sizes = tuple(int(v) for v in values)
    if min(sizes) < 1:
        raise argument_error(name, "sizes >= 1", value)
    return sizes


def _per_axis(name: str, value: object, sizes: tuple[int, ...], k: int) -> tuple[int, ...]:
    """``sizes`` for inputs with ``k`` spatial axes (an int applies to every axis)."""
    if isinstance(value, numbers.Integral):
        return (int(value),) * k
    if len(sizes) != k:
        raise argument_error(name, f"{k} size{'s' if k > 1 else ''}, one per spatial axis of the "
                             "inputs", value, f"e.g. {name}={(sizes[0],) * k} or an int.")
    return sizes


class Occlusion(MultiPassMethod):
    """Occlusion with a sliding window over all channels.

    A ``window`` (h, w) slides over each image with ``stride``; each position
    gives an occluded copy of the image, equal to ``baseline`` inside the
    window (every channel) and to the image outside. With ``f`` the explained
    score, each pixel's value is the mean over the windows that cover it of::

        f(x) - f(x occluded by the window)

    the same map as Captum's ``Occlusion`` with ``sliding_window_shapes=(C, h, w)``
    and ``strides=(C, sh, sw)``: windows start at multiples of the stride and
    the last one is cut at the border (:func:`window_starts`). Forward passes
    only; occluded images go through the backend ``batch_size`` at a time. The
    map has the input's shape (equal over channels).

    Signals (N, C, L) and volumes (N, C, D, H, W) (channels last in a
    channels-last model) are occluded the same way with windows of one or
    three sizes (Captum's ``sliding_window_shapes=(C, l)`` / ``(C, d, h, w)``).

    Parameters
    ----------
    window : int or tuple of int
        Window height and width in pixels (default 8); ``(l,)`` for signals,
        ``(d, h, w)`` for volumes; an int is the size along every axis.
    stride : int or tuple of int
        Step between windows (default 4); at most the window, so that every
        pixel is covered.
    baseline : float
        Value of the occluded pixels (default 0).
    batch_size : int
        Occluded images per forward pass (default 64).

    References
    ----------
    Zeiler & Fergus (2014). Visualizing and understanding convolutional networks.
    """

    name = "occlusion"

    def __init__(self, model: Any, *, window: int | tuple[int, ...] = 8,
                 stride: int | tuple[int, ...] = 4, baseline: float = 0.0, batch_size: int = 64,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self.window: tuple[int, ...] = _sizes("window", window)
        self.stride: tuple[int, ...] = _sizes("stride", stride)
        self._given = (window, stride)
        if len(self.window) == len(self.stride) and any(
                s > w for s, w in zip(self.stride, self.window)):
            raise argument_error("stride", f"at most the window {self.window} on each axis",
                                 stride, "A larger stride leaves pixels no window covers.")
        if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not np.isfinite(
                baseline):
            raise argument_error("baseline", "a finite number (the occluded pixels' value)",
                                 baseline, kind=AttribTypeError)
        self.baseline: float = float(baseline)
        self.batch_size: int = check_count("batch_size", batch_size)

    def run(self, x: np.ndarray, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        assert logits is not None, "folds_forward() is False"
        n = len(x)
        axes = spatial_axes(self.model.layout, x.ndim)
        extent = tuple(x.shape[axis] for axis in axes)
        window = _per_axis("window", self._given[0], self.window, len(axes))
        stride = _per_axis("stride", self._given[1], self.stride, len(axes))
        if any(s > w for s, w in zip(stride, window)):
            raise argument_error("stride", f"at most the window {window} on each axis",
                                 self._given[1], "A larger stride leaves pixels no window covers.")
        if any(w > s for w, s in zip(window, extent)):
            what = "image" if len(extent) == 2 else "signal" if len(extent) == 1 else "volume"
            raise argument_error("window", f"at most the {what} size {extent}", shown(str(window)))
        windows = list(itertools.product(*(window_starts(s, w, st)
                                           for s, w, st in zip(extent, window, stride))))
        score = explained.scores(logits)
        total = np.zeros((n, *extent))
        count = np.zeros(extent)

        def cover(starts: tuple[int, ...]) -> tuple[slice, ...]:
            return tuple(slice(t, t + w) for t, w in zip(starts, window))

        for starts in windows:
            count[cover(starts)] += 1

        def region(*starts: int) -> tuple[Any, ...]:
            index: list[Any] = [slice(None)] * (x.ndim - 1)
            for axis, part in zip(axes, cover(starts)):
                index[axis - 1] = part
            return tuple(index)

        # rows are (window, image) pairs, window-major
        for start, stop, size in chunks(len(windows) * n, self.batch_size, self.model):
            rows = np.arange(start, stop)
            batch = x[rows % n].copy()
            for row, r in enumerate(rows):
                batch[row][region(*windows[r // n])] = self.baseline
            picked = padded(rows % n, size)
            chosen = explained.rows(picked)
            occluded = chosen.scores(chosen.forward(self.model, padded(batch, size)))
            drop = score[rows % n] - occluded[: stop - start]
            for row, r in enumerate(rows):
                index: tuple[Any, ...] = (int(r % n), *cover(windows[r // n]))
                total[index] += drop[row]
        mean = total / count
        shape = [n, *extent]
        shape.insert(channel_axis(self.model.layout, x.ndim), 1)
        dtype = logits.dtype if explained.target is None else x.dtype
        attribution = np.broadcast_to(mean.reshape(shape), x.shape).astype(dtype)
        return MethodOutput(attribution=attribution), {"windows": len(windows)}
