"""Linear resizing of maps (N, *spatial) with half-pixel centres, in NumPy: 1-D, 2-D, 3-D."""

from __future__ import annotations

import numpy as np

__all__ = ["resize_bilinear", "resize_linear"]


def _axis_weights(size_in: int, size_out: int,
                  align_corners: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and the weight of ``hi`` for each output position."""
    if align_corners:  # the corner pixels' centres coincide: i * (in - 1) / (out - 1)
        step = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        source = np.arange(size_out, dtype=np.float64) * step
    else:
        scale = size_in / size_out
        source = (np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5
        source = np.clip(source, 0.0, None)  # as torch: no extrapolation before the first centre
    lo = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    return lo, hi, source - lo


def resize_bilinear(maps: np.ndarray, size: tuple[int, int], *,
                    align_corners: bool = False) -> np.ndarray:
    """Resize maps of shape (N, h, w) to (N, H, W) bilinearly.

    Half-pixel centres, as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (no anti-aliasing), which is what Grad-CAM
    implementations use to bring a layer map to the input's size. With
    ``align_corners=True`` the corner pixels' centres are aligned instead, as
    ``torch.nn.UpsamplingBilinear2d`` does (pytorch-grad-cam's Score-CAM masks).

    >>> resize_bilinear(np.array([[[0.0, 1.0]]]), (1, 4))
    array([[[0.  , 0.25, 0.75, 1.  ]]])
    >>> resize_bilinear(np.array([[[0.0, 1.0]]]), (1, 4), align_corners=True).round(3)
    array([[[0.   , 0.333, 0.667, 1.   ]]])
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps: expected shape (N, h, w), got {maps.shape}")
    height, width = int(size[0]), int(size[1])
    _, h, w = maps.shape
    if (h, w) == (height, width):
        return maps.copy()
    dtype = maps.dtype if np.issubdtype(maps.dtype, np.floating) else np.float64
    y0, y1, wy = _axis_weights(h, height, align_corners)
    x0, x1, wx = _axis_weights(w, width, align_corners)
    wy = wy.astype(dtype)[None, :, None]
    wx = wx.astype(dtype)
    rows = (maps[:, y0, :] * (1 - wy) + maps[:, y1, :] * wy).reshape(-1, w)
    # take() along the last axis of the 2-D rows gives C-ordered results (fancy
    # indexing ``rows[:, :, x0]`` would lay the batch axis fastest in memory, and
    # every later copy of the maps, e.g. into a Zarr store, would pay for it)
    out = rows.take(x0, axis=1)
    out *= 1 - wx
    right = rows.take(x1, axis=1)
    right *= wx
    out += right
    return out.reshape(len(maps), height, width).astype(dtype, copy=False)


def resize_linear(maps: np.ndarray, size: tuple[int, ...], *,
                  align_corners: bool = False) -> np.ndarray:
    """Resize maps (N, *spatial) to (N, *size) by (multi)linear interpolation, any number of axes.

    One spatial axis: linear, as ``F.interpolate(mode="linear")``; two: exactly
    :func:`resize_bilinear`; three: trilinear, as ``F.interpolate(mode="trilinear")``
    (half-pixel centres, or ``align_corners=True``). The interpolation is
    separable: one axis after the other, the last axis first (the order of
    torch's kernels), so the values agree with torch to rounding.

    >>> resize_linear(np.array([[0.0, 1.0]]), (4,))
    array([[0.  , 0.25, 0.75, 1.  ]])
    >>> resize_linear(np.ones((1, 2, 2, 2)), (3, 3, 3)).shape
    (1, 3, 3, 3)
    """
    maps = np.asarray(maps)
    size = tuple(int(s) for s in size)
    if maps.ndim != len(size) + 1 or not size:
        raise ValueError(f"maps: expected shape (N, *spatial) with {len(size)} spatial axes, "
                         f"got {maps.shape}")
    if len(size) == 2:
        return resize_bilinear(maps, (size[0], size[1]), align_corners=align_corners)
    if tuple(maps.shape[1:]) == size:
        return maps.copy()
    dtype = maps.dtype if np.issubdtype(maps.dtype, np.floating) else np.float64
    out = maps.astype(dtype, copy=False)
    for axis in range(maps.ndim - 1, 0, -1):
        if out.shape[axis] == size[axis - 1]:
            continue
        lo, hi, weight = _axis_weights(out.shape[axis], size[axis - 1], align_corners)
        shape = [1] * out.ndim
        shape[axis] = -1
        w = weight.astype(dtype).reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return np.ascontiguousarray(out, dtype=dtype)
