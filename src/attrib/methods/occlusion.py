"""Occlusion: the drop of the score when a window of the image is covered."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._errors import AttribTypeError, argument_error, shown
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


def _pair(name: str, value: object) -> tuple[int, int]:
    values = (value, value) if isinstance(value, numbers.Integral) else value
    if (not isinstance(values, (tuple, list)) or len(values) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)):
        raise argument_error(name, "an int or a pair of ints (height, width)", value,
                             kind=AttribTypeError)
    h, w = int(values[0]), int(values[1])
    if h < 1 or w < 1:
        raise argument_error(name, "sizes >= 1", value)
    return h, w


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

    Parameters
    ----------
    window : int or (int, int)
        Window height and width in pixels (default 8).
    stride : int or (int, int)
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

    def __init__(self, model: Any, *, window: int | tuple[int, int] = 8,
                 stride: int | tuple[int, int] = 4, baseline: float = 0.0, batch_size: int = 64,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self.window: tuple[int, int] = _pair("window", window)
        self.stride: tuple[int, int] = _pair("stride", stride)
        if any(s > w for s, w in zip(self.stride, self.window)):
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
        h_axis, w_axis = spatial_axes(self.model.layout, x.ndim)
        height, width = x.shape[h_axis], x.shape[w_axis]
        if self.window[0] > height or self.window[1] > width:
            raise argument_error("window", f"at most the image size ({height}, {width})",
                                 shown(str(self.window)))
        tops = window_starts(height, self.window[0], self.stride[0])
        lefts = window_starts(width, self.window[1], self.stride[1])
        windows = [(t, left) for t in tops for left in lefts]
        score = explained.scores(logits)
        total = np.zeros((n, height, width))
        count = np.zeros((height, width))
        for top, left in windows:
            count[top:top + self.window[0], left:left + self.window[1]] += 1

        def region(t: int, left: int) -> tuple[Any, ...]:
            index: list[Any] = [slice(None)] * (x.ndim - 1)
            index[h_axis - 1] = slice(t, t + self.window[0])
            index[w_axis - 1] = slice(left, left + self.window[1])
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
                t, left = windows[r // n]
                total[r % n, t:t + self.window[0], left:left + self.window[1]] += drop[row]
        mean = total / count
        shape = [n, height, width]
        channel_axis = 1 if self.model.layout == "NCHW" else 3
        shape.insert(channel_axis, 1)
        dtype = logits.dtype if explained.target is None else x.dtype
        attribution = np.broadcast_to(mean.reshape(shape), x.shape).astype(dtype)
        return MethodOutput(attribution=attribution), {"windows": len(windows)}
