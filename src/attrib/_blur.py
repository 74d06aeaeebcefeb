"""Separable Gaussian blur of image batches (N, C, H, W) / (N, H, W, C), signals and volumes, in NumPy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ._layout import spatial_axes

__all__ = ["gaussian_blur"]


def gaussian_blur(images: np.ndarray, sigma: float, layout: str, radius: int | Sequence[int], *,
                  mode: Literal["symmetric", "reflect"] = "symmetric") -> np.ndarray:
    """``images`` blurred along H, then W, by a Gaussian of ``sigma`` pixels, per channel.

    Signals (N, C, L) and volumes (N, C, D, H, W) (or channels last) are
    blurred along each spatial axis in turn, the same way.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) or (N, H, W, C), or (N, C, *spatial) / (N, *spatial, C)
    sigma : float
        Standard deviation in pixels, the same along both axes.
    layout : ``"NCHW"`` or ``"NHWC"``
        The layout of ``images``.
    radius : int or sequence of int
        Half-width of the kernel along every axis, or along each (H, W): ``2 * radius + 1``
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
    axes = spatial_axes(layout, np.ndim(images))
    radii = (radius,) * len(axes) if isinstance(radius, int) else tuple(radius)
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
