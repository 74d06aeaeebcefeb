"""Separable Gaussian blur of (N, C, H, W) or (N, H, W, C) image batches, in NumPy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["gaussian_blur"]


def gaussian_blur(images: np.ndarray, sigma: float, layout: str, radius: int | Sequence[int], *,
                  mode: Literal["symmetric", "reflect"] = "symmetric") -> np.ndarray:
    """``images`` blurred along H, then W, by a Gaussian of ``sigma`` pixels, per channel.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) or (N, H, W, C)
    sigma : float
        Standard deviation in pixels, the same along both axes.
    layout : ``"NCHW"`` or ``"NHWC"``
        The layout of ``images``.
    radius : int or (int, int)
        Half-width of the kernel along both axes, or along (H, W): ``2 * radius + 1``
        taps ``exp(-k**2 / (2 sigma**2))``, normalised to sum 1.
    mode : ``"symmetric"`` or ``"reflect"``
        How the edges are padded (:func:`numpy.pad`): ``"symmetric"`` repeats
        the edge pixel (scipy.ndimage's ``"reflect"``), ``"reflect"`` does not.

    Returns
    -------
    ndarray, float64, shape of ``images``

    >>> x = np.zeros((1, 1, 5, 5)); x[0, 0, 2, 2] = 1.0
    >>> out = gaussian_blur(x, 1.0, "NCHW", 2)
    >>> out.shape, round(float(out.sum()), 12), bool(out[0, 0, 2, 2] == out.max())
    ((1, 1, 5, 5), 1.0, True)
    """
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    radii = (radius, radius) if isinstance(radius, int) else tuple(radius)
    out = np.asarray(images, dtype=np.float64)
    for axis, r in zip(axes, radii):
        offsets = np.arange(-r, r + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode=mode)
        size = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + size), axis=axis)
                  for i, w in enumerate(kernel))
    return out
