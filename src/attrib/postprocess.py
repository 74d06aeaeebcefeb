"""Post-processing of attribution maps for display, in NumPy.

Every method returns the raw, signed map; these functions turn it into
something to look at. They are shared by every backend and know the two
layouts: ``"NCHW"`` (torch) and ``"NHWC"`` (Flax).

Shapes
------
Input-space maps (saliency, guided backprop, ...) come as a batch
``(N, C, H, W)`` / ``(N, H, W, C)`` or as one sample ``(C, H, W)`` /
``(H, W, C)``; a 2-D array is one single-channel ``(H, W)`` map. An
:class:`attrib.Explanation` may be passed instead of an array: its
``attribution`` and ``layout`` are used and it is always a batch (a Grad-CAM
``(N, H, W)`` map counts as one channel). A function returns a batch for a
batch and a single sample for a single sample.

Numbers
-------
Results are float arrays (float32 for float16/float32 input, else float64),
computed in float64 after dividing each sample by its largest magnitude, so
that huge or tiny maps neither overflow nor underflow. Every function is
safe on all-zero, constant and single-signed maps: where a denominator would
be (relatively) zero the result is 0 (or 0.5 for :func:`deprocess`), never
NaN. Maps that contain NaN or infinity are refused with an
:class:`attrib.AttribError`.

References
----------
The displays are the seeds' and the papers': Simonyan, Vedaldi, Zisserman
(2014) for grayscale saliency; Springenberg et al. (2015) for the colour,
positive and negative guided-backprop images; Selvaraju et al. (2017) for
the Grad-CAM heat-map overlay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import AttribTypeError, argument_error, did_you_mean, shown
from ._kinds import is_explanation
from ._model import LAYOUTS, check_layout
from ._resize import resize_bilinear

__all__ = [
    "grayscale",
    "positive_saliency",
    "negative_saliency",
    "minmax",
    "diverging",
    "diverging_to_unit",
    "deprocess",
    "resize_map",
    "to_hwc",
    "overlay",
]

#: Relative size under which a denominator counts as zero (after each sample
#: is divided by its largest magnitude, so values lie in [-1, 1]).
_TINY = 1e-12

Axis = int | Sequence[int] | str | None


# --------------------------------------------------------------------------- checks


def _out_dtype(dtype: np.dtype) -> type[np.floating[Any]]:
    if dtype in (np.float16, np.float32):
        return np.float32
    return np.float64


def _array(value: object, name: str) -> np.ndarray:
    """``value`` as a finite numeric ndarray, else a clear error."""
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise argument_error(name, "an array of numbers", shown(type(value).__name__),
                             kind=AttribTypeError) from error
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise argument_error(name, "an array of real numbers",
                             shown(f"an array of dtype {array.dtype}"), kind=AttribTypeError)
    if array.size and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise argument_error(name, "finite values", shown(f"{bad} NaN or infinite value(s)"),
                             "Check the model's output; a map with NaN cannot be displayed.")
    if array.size == 0:
        raise argument_error(name, "a non-empty array", shown(f"shape {array.shape}"))
    return array


def _unpack(attribution: object, layout: object) -> tuple[np.ndarray, str | None, bool | None]:
    """(array, layout or None, batched or None-if-decided-by-ndim) of an array or Explanation."""
    if is_explanation(attribution):
        chosen = check_layout(layout) if layout is not None else attribution.layout
        return _array(attribution.attribution, "attribution"), chosen, True
    return _array(attribution, "attribution"), (None if layout is None else check_layout(layout)), None


def _as_nchw(attribution: object, layout: object, name: str = "attribution"
             ) -> tuple[np.ndarray, bool, np.dtype]:
    """A 4-D float64 (N, C, H, W) copy, whether the input was a batch, and its dtype."""
    array, chosen, batched = _unpack(attribution, layout)
    dtype = array.dtype
    if batched and array.ndim == 3:  # an Explanation's Grad-CAM (N, H, W)
        return array[:, None].astype(np.float64), True, dtype
    if array.ndim == 2:
        return array[None, None].astype(np.float64), False, dtype
    if array.ndim not in (3, 4):
        raise argument_error(
            name, "a map of shape (N, C, H, W) / (N, H, W, C), one sample (C, H, W) / "
            "(H, W, C) or an (H, W) map", shown(f"shape {array.shape}"))
    if chosen is None:
        raise argument_error("layout", f"one of {list(LAYOUTS)} for a {array.ndim}-D map", None,
                             "Pass layout='NCHW' (torch) or layout='NHWC' (Flax), or an "
                             "Explanation, which knows its layout.")
    batched = array.ndim == 4
    if not batched:
        array = array[None]
    if chosen == "NHWC":
        array = np.moveaxis(array, -1, 1)
    return array.astype(np.float64), batched, dtype


def _sample_axes(ndim: int) -> tuple[int, ...]:
    return tuple(range(1, ndim))


def _prescale(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``x`` divided by its largest magnitude over ``axes`` (zero maps stay zero)."""
    if not axes:
        peak = np.abs(x)
    else:
        peak = np.abs(x).max(axis=axes, keepdims=True)
    return x / np.where(peak > 0, peak, 1.0)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0,
                 tiny: float = _TINY) -> np.ndarray:
    """``numerator / denominator`` with ``fill`` where the denominator is at most ``tiny``."""
    ok = denominator > tiny
    return np.where(ok, numerator / np.where(ok, denominator, 1.0), fill)


def _axes_of(axis: Axis, ndim: int) -> tuple[int, ...]:
    if isinstance(axis, str):
        if axis != "sample":
            raise argument_error("axis", "'sample', None, an int or a tuple of ints", axis)
        return _sample_axes(ndim)
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    try:
        return tuple(sorted({int(a) % ndim if -ndim <= int(a) < ndim else _bad_axis(a, ndim)
                             for a in axes}))
    except (TypeError, ValueError) as error:
        raise argument_error("axis", "'sample', None, an int or a tuple of ints", axis) from error


def _bad_axis(axis: object, ndim: int) -> int:
    raise argument_error("axis", f"axes of a {ndim}-D array", axis)


def _percentile(percentile: object) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.number)) \
            or not 0 < float(percentile) <= 100:
        raise argument_error("percentile", "a number in (0, 100]", percentile)
    return float(percentile)


# --------------------------------------------------------------------------- input-space maps


def grayscale(attribution: Any, layout: str | None = None, percentile: float = 99) -> np.ndarray:
    """Grayscale saliency: the sum of |attribution| over channels, clipped and scaled to [0, 1].

    Per sample, with ``s = sum_c |a_c|``::

        out = clip((s - min(s)) / (percentile(s, p) - min(s)), 0, 1)

    as the PyTorch seed and PAIR saliency do. When the percentile equals the
    minimum (a sparse map) the maximum is used instead; a constant map gives 0.

    Parameters
    ----------
    attribution : ndarray, shape (N, C, H, W), (N, H, W, C), (C, H, W), (H, W, C) or (H, W)
        Or an :class:`attrib.Explanation`.
    layout : {"NCHW", "NHWC"}
        Needed for 3-D and 4-D arrays; taken from an Explanation.
    percentile : float in (0, 100]
        The value that maps to 1; larger values are clipped.

    Returns
    -------
    ndarray, shape (N, H, W) (or (H, W) for one sample), values in [0, 1]

    >>> g = np.array([[[1.0, -2.0], [0.0, 4.0]]])  # (C=1, H=2, W=2)
    >>> grayscale(g, "NCHW", percentile=100)
    array([[0.25, 0.5 ],
           [0.  , 1.  ]])
    """
    p = _percentile(percentile)
    x, batched, dtype = _as_nchw(attribution, layout)
    x = _prescale(x, (1, 2, 3))
    s = np.abs(x).sum(axis=1)  # (N, H, W)
    flat = s.reshape(len(s), -1)
    low = flat.min(axis=1)
    high = np.percentile(flat, p, axis=1)
    span = high - low
    span = np.where(span > _TINY * np.maximum(flat.max(axis=1), _TINY), span,
                    flat.max(axis=1) - low)
    out = np.clip(_safe_divide(s - low[:, None, None], span[:, None, None]), 0.0, 1.0)
    out = out.astype(_out_dtype(dtype))
    return out if batched else out[0]


def _per_sample(attribution: Any, layout: str | None) -> tuple[np.ndarray, tuple[int, ...], np.dtype]:
    """The map as float64 in its own shape, and the axes of one sample."""
    array, chosen, batched = _unpack(attribution, layout)
    if array.ndim not in (2, 3, 4):
        raise argument_error(
            "attribution", "a map of shape (N, C, H, W) / (N, H, W, C), one sample (C, H, W) / "
            "(H, W, C) or an (H, W) map", shown(f"shape {array.shape}"))
    is_batch = batched if batched is not None else array.ndim == 4
    axes = _sample_axes(array.ndim) if is_batch else tuple(range(array.ndim))
    return array.astype(np.float64), axes, array.dtype


def positive_saliency(attribution: Any, layout: str | None = None) -> np.ndarray:
    """Positive part of the map over its maximum, per sample: ``max(0, a) / max(a)``.

    Channels are kept (show the result as a colour image). A sample with no
    positive value gives zeros. As the PyTorch seed's positive saliency
    (Springenberg et al. 2015 show guided backprop this way).

    Parameters
    ----------
    attribution : ndarray, shape (N, C, H, W), (N, H, W, C), (C, H, W), (H, W, C) or (H, W)
        Or an :class:`attrib.Explanation`. A 4-D array is a batch, anything
        smaller one sample.
    layout : {"NCHW", "NHWC"}, optional
        Only checked: the result has the input's shape and layout.

    Returns
    -------
    ndarray, the input's shape, values in [0, 1]

    >>> positive_saliency(np.array([[-2.0, 1.0], [0.0, 4.0]]))
    array([[0.  , 0.25],
           [0.  , 1.  ]])
    """
    x, axes, dtype = _per_sample(attribution, layout)
    positive = np.maximum(x, 0.0)
    # each value is at most the peak: the quotient is in [0, 1] for any peak > 0
    peak = positive.max(axis=axes, keepdims=True)
    return _safe_divide(positive, peak, tiny=0.0).astype(_out_dtype(dtype))


def negative_saliency(attribution: Any, layout: str | None = None) -> np.ndarray:
    """Negative part of the map over its minimum, per sample: ``max(0, -a) / -min(a)``.

    The mirror of :func:`positive_saliency`; a sample with no negative value
    gives zeros. Values in [0, 1], the input's shape.

    >>> negative_saliency(np.array([[-2.0, 1.0], [-1.0, 4.0]]))
    array([[1. , 0. ],
           [0.5, 0. ]])
    """
    x, axes, dtype = _per_sample(attribution, layout)
    negative = np.maximum(-x, 0.0)
    trough = negative.max(axis=axes, keepdims=True)
    return _safe_divide(negative, trough, tiny=0.0).astype(_out_dtype(dtype))


# --------------------------------------------------------------------------- scalings


def minmax(x: Any, axis: Axis = "sample") -> np.ndarray:
    """Scale to [0, 1]: ``(x - min) / (max - min)`` over ``axis``.

    Parameters
    ----------
    x : ndarray or Explanation
        Any shape; an Explanation's attribution.
    axis : "sample", None, int or tuple of ints
        ``"sample"`` (default): every axis but the first, so each sample of a
        batch is scaled on its own (Grad-CAM maps (N, H, W), images
        (N, C, H, W)). ``None``: the whole array together.

    Returns
    -------
    ndarray, ``x``'s shape, values in [0, 1]; 0 where ``x`` is constant.

    >>> minmax(np.array([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0]]))
    array([[0. , 1. , 0.5],
           [0. , 0. , 0. ]])
    """
    array, _, _ = _unpack(x, None)
    axes = _axes_of(axis, array.ndim)
    values = _prescale(array.astype(np.float64), axes)
    low = values.min(axis=axes, keepdims=True) if axes else values
    high = values.max(axis=axes, keepdims=True) if axes else values
    out = np.clip(_safe_divide(values - low, high - low), 0.0, 1.0)
    return out.astype(_out_dtype(array.dtype))


def diverging(x: Any, axis: Axis = "sample") -> np.ndarray:
    """Scale to [-1, 1] keeping 0 at 0: ``x / max|x|`` over ``axis``.

    Signed maps (gradient × input) keep their sign and their zero; show them
    with a diverging colormap centred on 0 (see :func:`diverging_to_unit`).
    ``axis`` as in :func:`minmax`. An all-zero sample stays zero.

    >>> diverging(np.array([[-2.0, 1.0, 0.0]]))
    array([[-1. ,  0.5,  0. ]])
    """
    array, _, _ = _unpack(x, None)
    axes = _axes_of(axis, array.ndim)
    out = _prescale(array.astype(np.float64), axes)
    return np.clip(out, -1.0, 1.0).astype(_out_dtype(array.dtype))


def diverging_to_unit(diverged: Any) -> np.ndarray:
    """Map [-1, 1] to [0, 1] with 0 -> 0.5, for a colormap: ``(d + 1) / 2``.

    Values outside [-1, 1] are clipped first. Apply to :func:`diverging`'s
    result; ``matplotlib.colormaps["RdBu_r"](diverging_to_unit(d))`` then
    shows 0 as the colormap's centre colour.

    >>> diverging_to_unit(np.array([-1.0, 0.0, 0.5]))
    array([0.  , 0.5 , 0.75])
    """
    array, _, _ = _unpack(diverged, None)
    out = np.clip(array.astype(np.float64), -1.0, 1.0) * 0.5 + 0.5
    return out.astype(_out_dtype(array.dtype))


def deprocess(image_or_gradient: Any, layout: str | None = None) -> np.ndarray:
    """An image or a gradient as an RGB picture, in HWC, values in [0, 1].

    The Keras/PyTorch seeds' ``deprocess_image``, per sample::

        out = clip((x - mean(x)) / std(x) * 0.1 + 0.5, 0, 1)

    so 0.5 (gray) is the mean and one standard deviation is 0.1 away. A
    constant sample is uniformly 0.5. One-channel maps are repeated to three.

    Parameters
    ----------
    image_or_gradient : ndarray, shape (N, C, H, W), (N, H, W, C), (C, H, W), (H, W, C) or (H, W)
        C is 1 or 3; or an :class:`attrib.Explanation` of an input-space method.
    layout : {"NCHW", "NHWC"}
        Of the input; the output is always HWC.

    Returns
    -------
    ndarray, shape (N, H, W, 3) (or (H, W, 3) for one sample)

    >>> deprocess(np.array([[-1.0, 1.0]]))[0, :, 0]
    array([0.4, 0.6])
    """
    x, batched, dtype = _as_nchw(image_or_gradient, layout, "image_or_gradient")
    channels = x.shape[1]
    if channels not in (1, 3):
        raise argument_error("image_or_gradient", "1 or 3 channels to show as RGB",
                             shown(f"{channels} channels (shape {x.shape}, layout "
                                   f"{layout or 'NCHW'})"),
                             "Check the layout argument.")
    x = _prescale(x, (1, 2, 3))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    z = _safe_divide(x - mean, std)
    out = np.clip(z * 0.1 + 0.5, 0.0, 1.0)
    if channels == 1:
        out = np.repeat(out, 3, axis=1)
    out = np.moveaxis(out, 1, -1).astype(_out_dtype(dtype))
    return out if batched else out[0]


# --------------------------------------------------------------------------- geometry


def _size(size: object) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair: tuple[object, ...] = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        pair = tuple(size)
    else:
        raise argument_error("size", "an int or a (height, width) pair", size)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in pair):
        raise argument_error("size", "positive integers (height, width)", size)
    return int(pair[0]), int(pair[1])  # type: ignore[call-overload]


def resize_map(maps: Any, size: int | tuple[int, int]) -> np.ndarray:
    """Resize Grad-CAM maps to ``size = (height, width)``, bilinearly.

    Half-pixel centres, as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (this is :func:`attrib.resize_bilinear`). Note the
    order: (height, width), NumPy's, not OpenCV's (width, height).

    Parameters
    ----------
    maps : ndarray, shape (N, h, w) or (h, w)
        Or an Explanation of a layer method (its attribution).
    size : int or (int, int)
        Target (H, W); an int means a square.

    Returns
    -------
    ndarray, shape (N, H, W) (or (H, W)), float

    >>> resize_map(np.array([[0.0, 1.0]]), (1, 4))
    array([[0.  , 0.25, 0.75, 1.  ]])
    """
    array, _, _ = _unpack(maps, None)
    height, width = _size(size)
    if array.ndim not in (2, 3):
        raise argument_error("maps", "maps of shape (N, h, w) or (h, w)",
                             shown(f"shape {array.shape}"),
                             "Input-space maps need no resizing; for a layer activation "
                             "reduce the channels first.")
    batched = array.ndim == 3
    values = array if batched else array[None]
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    out = resize_bilinear(values, (height, width))
    return out if batched else out[0]


def to_hwc(images: Any, layout: str) -> np.ndarray:
    """Images (or maps) in channels-last order, for display.

    ``(N, C, H, W)`` -> ``(N, H, W, C)`` and ``(C, H, W)`` -> ``(H, W, C)``
    for ``layout="NCHW"``; NHWC input is returned as a copy. The dtype is kept.

    >>> to_hwc(np.zeros((2, 3, 4, 5)), "NCHW").shape
    (2, 4, 5, 3)
    """
    array, _, _ = _unpack(images, None)
    chosen = check_layout(layout)
    if array.ndim not in (3, 4):
        raise argument_error("images", "shape (N, C, H, W) / (N, H, W, C) or one image",
                             shown(f"shape {array.shape}"))
    if chosen == "NHWC":
        return array.copy()
    return np.ascontiguousarray(np.moveaxis(array, -3, -1))


# --------------------------------------------------------------------------- overlay


def _colormap(colormap: object) -> Any:
    import matplotlib  # lazily: keeps `import attrib` light

    if isinstance(colormap, str):
        try:
            return matplotlib.colormaps[colormap]
        except KeyError:
            raise argument_error("colormap", "a matplotlib colormap name", colormap,
                                 did_you_mean(colormap, matplotlib.colormaps)) from None
    if callable(colormap):
        return colormap
    raise argument_error("colormap", "a matplotlib colormap or its name", colormap,
                         kind=AttribTypeError)


def _unit_image(image: Any, name: str) -> np.ndarray:
    """An HWC image (single or batched) as float64 RGB in [0, 1]."""
    array = _array(image, name)
    if array.dtype == np.uint8:
        array = array / 255.0
    else:
        array = array.astype(np.float64)
        if array.min() < -1e-6 or array.max() > 1 + 1e-6:
            raise argument_error(
                name, "an RGB image with values in [0, 1] (or uint8)",
                shown(f"values in [{array.min():.3g}, {array.max():.3g}]"),
                "Use attrib.preprocess.denormalize or attrib.postprocess.minmax first.")
        array = np.clip(array, 0.0, 1.0)
    if array.ndim >= 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.ndim in (2,) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        array = np.repeat(array[..., None], 3, axis=-1)  # (H, W) or (N, H, W) gray
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise argument_error(name, "an RGB image (H, W, 3) or a batch (N, H, W, 3)",
                             shown(f"shape {array.shape}"))
    return array


def overlay(image: Any, heatmap: Any, colormap: Any = "jet", alpha: float = 0.5) -> np.ndarray:
    """Colour a heat-map with a matplotlib colormap and blend it over an image, in RGB.

    ``out = (1 - alpha) * image + alpha * colormap(heatmap)[..., :3]`` — RGB
    order (matplotlib's), not OpenCV's BGR. A heat-map of another size is
    resized bilinearly to the image's (H, W) first.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3) or (N, H, W, 3)
        Floats in [0, 1] or uint8; gray (H, W[, 1]) images are repeated to RGB.
    heatmap : ndarray, shape (H, W) or (N, H, W), values in [0, 1]
        E.g. ``minmax(gradcam_map)``.
    colormap : str or matplotlib colormap
        ``"jet"`` as the Grad-CAM paper and both seeds.
    alpha : float in [0, 1]
        Weight of the heat-map colour.

    Returns
    -------
    ndarray, shape (H, W, 3) or (N, H, W, 3), float64 in [0, 1]

    References
    ----------
    Selvaraju et al. (2017), Grad-CAM, figure 1.

    >>> overlay(np.zeros((1, 1, 3)), np.ones((1, 1)), alpha=1.0)[0, 0]  # jet's top: dark red
    array([0.5, 0. , 0. ])
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) \
            or not 0 <= float(alpha) <= 1:
        raise argument_error("alpha", "a number in [0, 1]", alpha)
    cmap = _colormap(colormap)
    heat = _array(heatmap, "heatmap").astype(np.float64)
    if heat.ndim not in (2, 3):
        raise argument_error("heatmap", "a map of shape (H, W) or (N, H, W)",
                             shown(f"shape {heat.shape}"))
    if heat.min() < -1e-6 or heat.max() > 1 + 1e-6:
        raise argument_error("heatmap", "values in [0, 1]",
                             shown(f"values in [{heat.min():.3g}, {heat.max():.3g}]"),
                             "Scale it with attrib.postprocess.minmax first.")
    heat = np.clip(heat, 0.0, 1.0)
    picture = _unit_image(image, "image")
    if picture.ndim == 3 and heat.ndim == 3:
        picture = np.broadcast_to(picture, (len(heat), *picture.shape))
    if picture.ndim == 4 and heat.ndim == 2:
        heat = np.broadcast_to(heat, (len(picture), *heat.shape))
    if picture.ndim == 4 and len(picture) != len(heat):
        raise argument_error("heatmap", f"{len(picture)} maps, one per image",
                             shown(f"{len(heat)} maps"))
    if heat.shape[-2:] != picture.shape[-3:-1]:
        heat = resize_map(heat, picture.shape[-3:-1])
    colour = np.asarray(cmap(heat), dtype=np.float64)[..., :3]
    out = (1.0 - float(alpha)) * picture + float(alpha) * colour
    return np.clip(out, 0.0, 1.0)
