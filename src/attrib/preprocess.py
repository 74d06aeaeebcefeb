"""Preparing photographs for an ImageNet classifier, and back for display.

What both seeds do by hand before and after the model: load an image as RGB,
resize its shorter side and crop the centre (torchvision's ``Resize(256)`` +
``CenterCrop(224)``), scale to [0, 1] and normalise with the ImageNet mean
and standard deviation, in the model's layout (``"NCHW"`` for torch,
``"NHWC"`` for Flax). :func:`denormalize` is the inverse, for display.

Photographs are HWC (height, width, RGB) throughout; only :func:`normalize`
and :func:`prepare` produce the model's layout. PIL is imported when an
image is loaded or resized, not with this module.

>>> batch = prepare([np.zeros((40, 60, 3), np.uint8)], "NCHW", size=32)
>>> batch.shape, batch.dtype
((1, 3, 32, 32), dtype('float32'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import AttribTypeError, argument_error, check_choice, shown
from ._model import check_layout

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_image",
    "resize_and_center_crop",
    "normalize",
    "denormalize",
    "prepare",
]


def _constant(values: Sequence[float]) -> np.ndarray:
    array = np.array(values, dtype=np.float32)
    array.setflags(write=False)
    return array


#: ImageNet per-channel mean of RGB values in [0, 1] (torchvision's).
IMAGENET_MEAN: np.ndarray = _constant((0.485, 0.456, 0.406))
#: ImageNet per-channel standard deviation of RGB values in [0, 1].
IMAGENET_STD: np.ndarray = _constant((0.229, 0.224, 0.225))


def _array_to_rgb8(array: np.ndarray, name: str) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as uint8 RGB."""
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise argument_error(name, "an image array of numbers",
                             shown(f"an array of dtype {array.dtype}"), kind=AttribTypeError)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise argument_error(name, "an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
                             shown(f"shape {array.shape}"))
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise argument_error(name, "finite pixel values", shown("NaN or infinite values"))
        if np.issubdtype(array.dtype, np.floating):
            if values.min() < 0 or values.max() > 1:
                raise argument_error(
                    name, "float pixels in [0, 1] or uint8 pixels in [0, 255]",
                    shown(f"floats in [{values.min():.3g}, {values.max():.3g}]"))
            values = values * 255.0
        elif values.min() < 0 or values.max() > 255:
            raise argument_error(name, "integer pixels in [0, 255]",
                                 shown(f"integers in [{values.min():.0f}, {values.max():.0f}]"))
        array = np.rint(values).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = array[..., :3]  # as PIL's convert("RGB"): the alpha channel is dropped
    return np.array(array, dtype=np.uint8, order="C", copy=True)  # never the caller's array


def load_image(path_or_array: Any) -> np.ndarray:
    """Load an image as RGB uint8, shape (H, W, 3).

    Parameters
    ----------
    path_or_array : str, os.PathLike, PIL.Image.Image or ndarray
        A file PIL can read, an image, or an array (H, W), (H, W, 1),
        (H, W, 3) or (H, W, 4) of uint8 in [0, 255] or floats in [0, 1].
        Grayscale is repeated to RGB; alpha is dropped; palette and CMYK
        images are converted by PIL.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    >>> load_image(np.zeros((4, 5), np.uint8)).shape
    (4, 5, 3)
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        path = os.fspath(path_or_array)
        if not os.path.isfile(path):
            raise argument_error("image", "an existing image file", path,
                                 "Check the path." if not os.path.exists(path) else
                                 "It is a directory, not a file.")
        try:
            with Image.open(path) as opened:
                return np.asarray(opened.convert("RGB"), dtype=np.uint8).copy()
        except (UnidentifiedImageError, OSError) as error:
            raise argument_error("image", "an image file PIL can read (PNG, JPEG, ...)", path,
                                 str(error)) from error
    if type(path_or_array).__module__.startswith("PIL."):
        return np.asarray(path_or_array.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(path_or_array, np.ndarray) or isinstance(path_or_array, (list, tuple)):
        try:
            array = np.asarray(path_or_array)
        except ValueError as error:
            raise argument_error("image", "an image array", shown("a ragged sequence"),
                                 kind=AttribTypeError) from error
        return _array_to_rgb8(array, "image")
    raise argument_error("image", "a path, a PIL image or an array",
                         shown(type(path_or_array).__name__), kind=AttribTypeError)


def _hw(size: object, name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair: tuple[Any, ...] = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        pair = tuple(size)
    else:
        raise argument_error(name, "an int or a (height, width) pair", size)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in pair):
        raise argument_error(name, "positive integers", size)
    return int(pair[0]), int(pair[1])


#: ``resample=`` of :func:`resize_and_center_crop`: PIL's filters by name
RESAMPLING: tuple[str, ...] = ("bilinear", "bicubic")


def resize_and_center_crop(image: Any, size: int | tuple[int, int] = 224,
                           resize: int | None = 256, resample: str = "bilinear") -> np.ndarray:
    """Resize the shorter side to ``resize`` (keeping the aspect), then crop the centre.

    torchvision's ``Resize(resize)`` then ``CenterCrop(size)`` on a PIL
    image: bilinear resampling, the crop's top-left corner at
    ``round((H - h) / 2), round((W - w) / 2)``.

    Parameters
    ----------
    image : path, PIL image or ndarray
        Anything :func:`load_image` accepts.
    size : int or (int, int)
        The crop's (height, width); an int means a square.
    resize : int or None
        Length of the shorter side after resizing; ``None``: no resizing.
    resample : {"bilinear", "bicubic"}
        PIL's filter (torchvision's default is bilinear; TensorFlow's
        EfficientNet evaluation resizes bicubically).

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)

    >>> resize_and_center_crop(np.zeros((100, 200, 3), np.uint8), 32, 40).shape
    (32, 32, 3)
    """
    resample = check_choice("resample", resample, RESAMPLING)
    rgb = load_image(image)
    height, width = _hw(size, "size")
    if resize is not None:
        if isinstance(resize, bool) or not isinstance(resize, (int, np.integer)) or resize <= 0:
            raise argument_error("resize", "a positive int (the shorter side) or None", resize)
        short = int(resize)
        h, w = rgb.shape[:2]
        if h <= w:
            new_h, new_w = short, max(1, int(short * w / h))
        else:
            new_h, new_w = max(1, int(short * h / w)), short
        if (new_h, new_w) != (h, w):
            from PIL import Image

            pil = Image.fromarray(rgb).resize((new_w, new_h),
                                              Image.Resampling[resample.upper()])
            rgb = np.asarray(pil, dtype=np.uint8)
    h, w = rgb.shape[:2]
    if height > h or width > w:
        raise argument_error("size", f"a crop no larger than the (resized) image ({h}, {w})",
                             (height, width), "Use a larger resize or a smaller size.")
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def _stats(values: object, name: str, channels: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, channels)
    if array.size != channels or not np.isfinite(array).all():
        raise argument_error(name, f"{channels} finite per-channel values", values)
    if name == "std" and (array <= 0).any():
        raise argument_error(name, "positive standard deviations", values)
    return array


def _hwc_batch(images: Any, name: str) -> np.ndarray:
    """Images as a float64 (N, H, W, C) batch in [0, 1]."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise argument_error(name, "at least one image", images)
        arrays = [np.asarray(image) for image in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise argument_error(name, "images of one size",
                                 shown(f"shapes {sorted(shapes)}"),
                                 "Use resize_and_center_crop or prepare first.")
        array = np.stack(arrays)
    else:
        array = np.asarray(images)
        if array.ndim in (2, 3):
            array = array[None]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise argument_error(name, "HWC images (H, W, C), (N, H, W, C) or a list of them",
                             shown(f"shape {array.shape}, dtype {array.dtype}"))
    if array.dtype == np.uint8:
        return array / 255.0
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise argument_error(name, "finite pixel values", shown("NaN or infinite values"))
    return values


def normalize(images: Any, layout: str = "NCHW", mean: Any = IMAGENET_MEAN,
              std: Any = IMAGENET_STD) -> np.ndarray:
    """``(image - mean) / std`` per channel, as a float32 batch in ``layout``.

    Parameters
    ----------
    images : ndarray or list of ndarray
        HWC images: (H, W, C), (N, H, W, C) or a list of (H, W, C) of one
        size. uint8 is divided by 255; floats are taken as already in [0, 1].
    layout : {"NCHW", "NHWC"}
        Of the result (the model's).
    mean, std : sequence of C floats
        Default: ImageNet's (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).

    Returns
    -------
    ndarray of float32, shape (N, C, H, W) or (N, H, W, C)
    """
    chosen = check_layout(layout)
    batch = _hwc_batch(images, "images")
    channels = batch.shape[-1]
    out = (batch - _stats(mean, "mean", channels)) / _stats(std, "std", channels)
    if chosen == "NCHW":
        out = np.moveaxis(out, -1, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def denormalize(images: Any, layout: str = "NCHW", mean: Any = IMAGENET_MEAN,
                std: Any = IMAGENET_STD) -> np.ndarray:
    """The inverse of :func:`normalize`, for display: HWC floats in [0, 1].

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) / (N, H, W, C), or one image (C, H, W) / (H, W, C)
        Normalised model inputs in ``layout`` (an Explanation's ``inputs``).
    layout : {"NCHW", "NHWC"}
    mean, std : sequence of C floats
        Those used to normalise.

    Returns
    -------
    ndarray of float32, shape (N, H, W, C) (or (H, W, C)), clipped to [0, 1]

    >>> x = normalize(np.full((2, 2, 3), 0.25), "NHWC")
    >>> float(abs(denormalize(x, "NHWC") - 0.25).max()) < 1e-6
    True
    """
    chosen = check_layout(layout)
    array = np.asarray(images)
    if array.ndim not in (3, 4) or array.dtype == np.bool_ \
            or not np.issubdtype(array.dtype, np.number):
        raise argument_error("images", "normalised images (N, C, H, W) / (N, H, W, C) or one "
                             "image", shown(f"shape {array.shape}, dtype {array.dtype}"))
    batched = array.ndim == 4
    values = array.astype(np.float64) if batched else array[None].astype(np.float64)
    if chosen == "NCHW":
        values = np.moveaxis(values, 1, -1)
    channels = values.shape[-1]
    out = values * _stats(std, "std", channels) + _stats(mean, "mean", channels)
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out if batched else out[0]


def prepare(images: Any, layout: str = "NCHW", size: int | tuple[int, int] = 224,
            resize: int | None = None, mean: Any = IMAGENET_MEAN,
            std: Any = IMAGENET_STD) -> np.ndarray:
    """Photographs to a normalised model input, in one call.

    :func:`load_image` -> :func:`resize_and_center_crop` -> :func:`normalize`
    for each photo. For display, ``denormalize(batch, layout)`` gives the
    cropped photos back as HWC floats in [0, 1].

    Parameters
    ----------
    images : path, PIL image, ndarray, or a list of them
        One photo (a path, a PIL image or an (H, W[, C]) array), a list of
        photos of any sizes, or an (N, H, W, C) array.
    layout : {"NCHW", "NHWC"}
        The model's.
    size : int or (int, int)
        Side of the centre crop (224 for ImageNet models).
    resize : int or None
        Shorter side before the crop; default ``round(size * 256 / 224)``
        (256 for 224, as torchvision's ImageNet evaluation).
    mean, std : sequence of 3 floats
        Default ImageNet's.

    Returns
    -------
    ndarray of float32, shape (N, 3, size, size) or (N, size, size, 3)
    """
    chosen = check_layout(layout)
    height, width = _hw(size, "size")
    if resize is None:
        resize = int(round(min(height, width) * 256 / 224))
    if isinstance(images, np.ndarray) and images.ndim == 4:
        photos: list[Any] = list(images)
    elif isinstance(images, (list, tuple)) and not (
            images and isinstance(images[0], (int, float, np.number))):
        photos = list(images)
    else:
        photos = [images]
    if not photos:
        raise argument_error("images", "at least one photo", images)
    crops = [resize_and_center_crop(photo, (height, width), resize) for photo in photos]
    return normalize(crops, chosen, mean=mean, std=std)
