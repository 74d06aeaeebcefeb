"""Small uint8 RGB pictures of a batch's inputs, for the gallery."""

from __future__ import annotations

import numpy as np

__all__ = ["thumbnails", "display_range"]


def display_range(images: np.ndarray) -> np.ndarray:
    """HWC images as floats in [0, 1], per image.

    Values already in [0, 1] are kept, values in [0, 255] are divided by 255,
    anything else (e.g. ImageNet-normalised inputs) is min-max scaled per
    channel, which undoes a per-channel normalisation exactly up to the
    image's own range.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, C)

    Returns
    -------
    ndarray of float32, shape (N, H, W, C)
    """
    flat = images.reshape(len(images), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    unit = (low >= 0) & (high <= 1)
    if unit.all():  # the common case, e.g. pictures in [0, 1]: nothing to do per image
        return images.astype(np.float32)
    out = np.empty(images.shape, dtype=np.float32)
    for i, image in enumerate(images.astype(np.float64)):
        if unit[i]:
            out[i] = image
        elif low[i] >= 0.0 and high[i] <= 255.0:
            out[i] = image / 255.0
        else:
            lo = image.min(axis=(0, 1), keepdims=True)
            span = image.max(axis=(0, 1), keepdims=True) - lo
            out[i] = np.where(span > 0, (image - lo) / np.where(span > 0, span, 1.0), 0.5)
    return out


def thumbnails(inputs: np.ndarray, layout: str, side: int) -> np.ndarray:
    """Inputs as uint8 RGB thumbnails whose longest side is at most ``side``.

    Parameters
    ----------
    inputs : ndarray, shape (N, C, H, W) or (N, H, W, C)
        C is 1 or 3 (other channel counts give mid-gray pictures).
    layout : {"NCHW", "NHWC"}
    side : int
        Longest side of the thumbnail; smaller inputs keep their size.

    Returns
    -------
    ndarray of uint8, shape (N, h, w, 3)

    >>> thumbnails(np.ones((1, 3, 4, 8)), "NCHW", 4).shape
    (1, 2, 4, 3)
    """
    from PIL import Image

    array = np.asarray(inputs)
    if array.ndim != 4:
        return np.full((len(array), 1, 1, 3), 128, dtype=np.uint8)
    hwc = np.moveaxis(array, 1, -1) if layout == "NCHW" else array
    n, height, width, channels = hwc.shape
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (w, h)
    if channels not in (1, 3):
        return np.full((n, size[1], size[0], 3), 128, dtype=np.uint8)
    pictures = _unit_pictures(array, layout)
    if pictures is None:
        pictures = np.round(display_range(hwc) * 255.0).astype(np.uint8)
    if channels == 1:
        pictures = np.repeat(pictures, 3, axis=-1)
    if scale == 1.0:
        return pictures
    out = np.empty((n, size[1], size[0], 3), dtype=np.uint8)
    for i, picture in enumerate(pictures):
        out[i] = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR))
    return out


def _unit_pictures(array: np.ndarray, layout: str) -> np.ndarray | None:
    """``round(255 * array)`` as contiguous (N, H, W, C) uint8 if the whole batch is in [0, 1], else None.

    The common case, done cheaply: the arithmetic runs on the batch in its own
    memory order and only the uint8 result (a quarter of the bytes) is moved
    to HWC. Equal to ``np.round(display_range(hwc) * 255.0).astype(np.uint8)``.
    """
    if array.size == 0 or not (array.min() >= 0 and array.max() <= 1):
        return None
    scaled = np.multiply(array, np.float32(255.0), dtype=np.float32)
    np.rint(scaled, out=scaled)
    if layout != "NCHW":
        return scaled.astype(np.uint8)
    pictures = np.empty((array.shape[0], *array.shape[2:], array.shape[1]), dtype=np.uint8)
    for channel in range(array.shape[1]):  # one strided copy per channel: far quicker than a transpose
        pictures[..., channel] = scaled[:, channel]
    return pictures
