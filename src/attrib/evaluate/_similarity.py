"""Similarity of two batches of maps, per sample, in NumPy: Spearman, Pearson, SSIM.

Used by the randomisation checks (Adebayo et al., 2018). A correlation with
a constant map is undefined; it is reported as 0 (no agreement), never NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ranks", "spearman", "pearson", "ssim", "unit_scaled"]


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties given their average rank (1-based, as scipy's ``rankdata``).

    Every row at once: one sort (any order within a run of equal values gives
    the same average ranks, so an unstable sort is exact), then each element's
    run found by running maxima / minima of the runs' first and last indices.

    >>> ranks(np.array([[3.0, 1.0, 3.0, 2.0]]))
    array([[3.5, 1. , 3.5, 2. ]])
    """
    x = np.asarray(x)
    flat = x.reshape(-1, x.shape[-1])
    order = np.argsort(flat, axis=1)  # in the maps' own dtype: the same order as in float64
    sorted_rows = np.take_along_axis(flat, order, axis=1).astype(np.float64)
    size = flat.shape[1]
    index = np.arange(size)
    changes = np.diff(sorted_rows, axis=1) != 0  # a new run starts after each change
    starts = np.maximum.accumulate(
        np.where(np.pad(changes, ((0, 0), (1, 0)), constant_values=True), index, 0), axis=1)
    ends = np.minimum.accumulate(  # one past each run's last index
        np.where(np.pad(changes, ((0, 0), (0, 1)), constant_values=True), index + 1, size)
        [:, ::-1], axis=1)[:, ::-1]
    out = np.empty(flat.shape, dtype=np.float64)
    np.put_along_axis(out, order, (starts + ends + 1) / 2.0, axis=1)  # mean of starts+1 … ends
    return out.reshape(x.shape)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each sample's flattened maps.

    Parameters
    ----------
    a, b : ndarray, shape (N, ...)

    Returns
    -------
    ndarray of float64, shape (N,)
        0 where either map is constant.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    dot = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each sample's flattened maps (ties: average ranks).

    Returns
    -------
    ndarray of float64, shape (N,)
        0 where either map is constant.
    """
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    return pearson(ranks(a), ranks(b))


def _uniform_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size``×``size`` windows of (N, H, W), edges mirrored (scipy's ``reflect``)."""
    half = size // 2
    padded = np.pad(x, ((0, 0), (half, size - 1 - half), (half, size - 1 - half)), mode="symmetric")
    c = np.cumsum(np.cumsum(padded, axis=1), axis=2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
    h, w = x.shape[1:]
    total = c[:, size:size + h, size:size + w] - c[:, :h, size:size + w] \
        - c[:, size:size + h, :w] + c[:, :h, :w]
    return np.asarray(total / (size * size))


def ssim(a: np.ndarray, b: np.ndarray, *, win_size: int = 7, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity (Wang et al., 2004) of each sample's 2-D maps.

    The formula and defaults of ``skimage.metrics.structural_similarity``:
    a uniform ``win_size``×``win_size`` window, sample covariances,
    ``K1 = 0.01``, ``K2 = 0.03``, the mean over the pixels at least
    ``win_size // 2`` from the border.

    Parameters
    ----------
    a, b : ndarray, shape (N, H, W)
        Maps on the scale given by ``data_range`` (callers scale them to [0, 1]).

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    smallest = min(a.shape[1:])
    if smallest < win_size:  # the largest odd window that fits
        win_size = max(1, smallest if smallest % 2 else smallest - 1)
    n = win_size * win_size
    cov_norm = n / (n - 1) if n > 1 else 1.0
    ux, uy = _uniform_filter(a, win_size), _uniform_filter(b, win_size)
    uxx, uyy = _uniform_filter(a * a, win_size), _uniform_filter(b * b, win_size)
    uxy = _uniform_filter(a * b, win_size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    h, w = a.shape[1:]
    return np.asarray(s[:, pad:h - pad, pad:w - pad].mean(axis=(1, 2)))


def unit_scaled(maps: np.ndarray) -> np.ndarray:
    """Each sample's map min-max scaled to [0, 1] (a constant map becomes 0)."""
    maps = np.asarray(maps, dtype=np.float64)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
