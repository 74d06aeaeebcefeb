"""Figures of attribution maps with matplotlib, saved as PNG.

- :func:`seed_figure` — original | Grad-CAM overlay | vanilla gradient |
  guided backprop | guided Grad-CAM, one row per sample (the JAX seed's
  layout, after Selvaraju et al. 2017, figure 1);
- :func:`saliency_figure` — gray | colour | positive | negative (the
  PyTorch seed's guided-backprop pictures, after Springenberg et al. 2015);
- :func:`grid_figure` — methods × images;
- :func:`plot_explanation` — one Explanation (what ``Explanation.plot`` calls);
- :func:`save_figure` — write a PNG and close the figure.

matplotlib is imported by the functions, not by ``import attrib``; with no
display (no ``DISPLAY`` / ``WAYLAND_DISPLAY`` on Linux, no ``MPLBACKEND``)
the Agg backend is selected before pyplot is first imported. The maps are
turned into pictures by :mod:`attrib.postprocess`; colours are RGB.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import postprocess as pp
from ._errors import AttribTypeError, argument_error, check_choice, did_you_mean, shown
from ._kinds import is_explanation
from ._plot_base import _DIVERGING_CMAP, METHOD_LABELS, _pyplot
from ._signal_plots import signal_figure, volume_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._explanation import Explanation

__all__ = [
    "STYLES",
    "METHOD_LABELS",
    "SEED_COLUMNS",
    "seed_figure",
    "saliency_figure",
    "grid_figure",
    "plot_explanation",
    "segmentation_figure",
    "detection_figure",
    "render",
    "save_figure",
    "signal_figure",
    "volume_figure",
]

#: The seed figure's first columns, in order (Selvaraju et al. 2017, figure 1).
SEED_COLUMNS: tuple[str, ...] = ("gradcam", "saliency", "guided_backprop", "guided_gradcam")

#: How a map can be drawn (see :func:`render`).
STYLES: tuple[str, ...] = ("auto", "heatmap", "gray", "rgb", "diverging", "color",
                           "positive", "negative")

# --------------------------------------------------------------------------- maps


@dataclass(frozen=True)
class _Map:
    """A batch of maps to draw: the array, its layout, and the method that made it."""

    array: np.ndarray
    layout: str
    method: str
    targets: np.ndarray | None = None

    @property
    def is_cam(self) -> bool:
        return self.array.ndim == 3

    def __len__(self) -> int:
        return int(self.array.shape[0])


def _from_explanation(explanation: Explanation) -> _Map:
    return _Map(np.asarray(explanation.attribution), explanation.layout, explanation.method,
                np.asarray(explanation.targets))


def _check_explanation(value: object, name: str) -> Explanation:
    if not is_explanation(value):
        raise argument_error(name, "an attrib.Explanation (what attrib.explain returns)",
                             shown(type(value).__name__), kind=AttribTypeError)
    if value.attribution.ndim not in (3, 4):
        raise argument_error(name, "an Explanation of images: attribution (N, H, W) or 4-D",
                             shown(f"attribution of shape {value.attribution.shape}"))
    return value


def _check_style(style: object) -> str:
    return check_choice("style", style, STYLES)


def _auto_style(m: _Map) -> str:
    if m.is_cam:
        return "heatmap"
    return "diverging" if m.method == "gradient_x_input" else "gray"


def render(explanation: Explanation | _Map, index: int = 0, image: np.ndarray | None = None, *,
           style: str = "auto", colormap: Any = "jet", alpha: float = 0.5,
           percentile: float = 99) -> tuple[np.ndarray, dict[str, Any]]:
    """One sample of a map as a picture: the array and the ``imshow`` keywords to show it.

    Styles: ``"heatmap"`` (a Grad-CAM map, min-max scaled and coloured with
    ``colormap``, over ``image`` when given), ``"gray"``
    (:func:`~attrib.postprocess.grayscale`), ``"rgb"``
    (:func:`~attrib.postprocess.deprocess`), ``"diverging"`` (the map summed
    over channels, :func:`~attrib.postprocess.diverging`, blue < 0 < red),
    ``"color"`` (min-max scaled channels), ``"positive"`` / ``"negative"``
    (:func:`~attrib.postprocess.positive_saliency` / ``negative_saliency``);
    ``"auto"``: heatmap for Grad-CAM-shaped (N, H, W) maps, diverging for
    gradient × input, gray otherwise.

    Parameters
    ----------
    explanation : Explanation
    index : int
        The sample.
    image : ndarray, shape (H, W, 3), floats in [0, 1], optional
        The picture under a heat-map.

    Returns
    -------
    picture : ndarray, (H, W) or (H, W, 3)
    imshow_kwargs : dict
    """
    m = explanation if isinstance(explanation, _Map) else _from_explanation(
        _check_explanation(explanation, "explanation"))
    style = _check_style(style)
    if style == "auto":
        style = _auto_style(m)
    if not 0 <= index < len(m):
        raise argument_error("index", f"a sample index in [0, {len(m)})", index)
    sample = m.array[index:index + 1]
    if style == "heatmap":
        cam = sample if m.is_cam else pp.grayscale(sample, m.layout, percentile)
        heat = pp.minmax(cam)[0]
        if image is not None:
            return pp.overlay(image, heat, colormap, alpha), {}
        return np.asarray(pp._colormap(colormap)(heat))[..., :3], {}
    if m.is_cam:
        if style in ("gray", "color", "positive"):
            return pp.minmax(sample)[0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
        if style == "negative":
            return pp.negative_saliency(sample[0]), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
        if style == "diverging":
            return pp.diverging(sample)[0], {"cmap": _DIVERGING_CMAP, "vmin": -1.0, "vmax": 1.0}
        return pp.deprocess(sample[0]), {}
    if style == "gray":
        return pp.grayscale(sample, m.layout, percentile)[0], \
            {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    if style == "rgb":
        return pp.deprocess(sample, m.layout)[0].astype(np.float64), {}
    if style == "diverging":
        channel_axis = 1 if m.layout == "NCHW" else -1
        summed = sample.astype(np.float64).sum(axis=channel_axis)
        return pp.diverging(summed)[0], {"cmap": _DIVERGING_CMAP, "vmin": -1.0, "vmax": 1.0}
    scaled = {"color": lambda x: pp.minmax(x),
              "positive": lambda x: pp.positive_saliency(x, m.layout),
              "negative": lambda x: pp.negative_saliency(x, m.layout)}[style](sample)
    picture = pp.to_hwc(scaled, m.layout)[0].astype(np.float64)
    if picture.shape[-1] == 3:
        return picture, {}
    return picture.mean(axis=-1), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}


# --------------------------------------------------------------------------- images


def _display_images(image: Any, n: int, explanations: Sequence[Explanation]) -> np.ndarray | None:
    """(n, H, W, 3) floats in [0, 1] to show, or None.

    ``image`` as given (one image is used for every sample), else the
    explained inputs, min-max scaled per sample (normalisation unknown).
    """
    if image is None:
        for explanation in explanations:
            inputs = explanation.inputs
            if inputs is None or inputs.ndim != 4:
                continue
            hwc = pp.to_hwc(inputs, explanation.layout)
            if hwc.shape[-1] not in (1, 3) or len(hwc) != n:
                continue
            return pp._unit_image(pp.minmax(hwc), "image")
        return None
    if isinstance(image, (list, tuple)):
        image = np.stack([np.asarray(i) for i in image])
    pictures = pp._unit_image(image, "image")
    if pictures.ndim == 3:
        pictures = np.broadcast_to(pictures, (n, *pictures.shape))
    if len(pictures) != n:
        raise argument_error("image", f"{n} display image(s), one per explained sample (or one)",
                             shown(f"{len(pictures)} images"))
    return pictures


def _class_text(targets: np.ndarray | None, index: int, class_names: Any,
                logits: np.ndarray | None = None) -> str:
    """The class name of sample ``index``; with ``logits``, followed by its softmax probability.

    A name listing synonyms after commas (ImageNet's ``"lampshade, lamp shade"``)
    shows its first one, so the title fits over its panel.
    """
    if targets is None or index >= len(targets):
        return ""
    target = int(targets[index])
    text = f"class {target}"
    if class_names is not None:
        try:
            text = str(class_names[target]).split(", ")[0]
        except (IndexError, KeyError, TypeError):
            pass
    if logits is not None and index < len(logits):
        row = np.asarray(logits[index], dtype=np.float64)
        probs = np.exp(row - row.max())
        text += f" {probs[target] / probs.sum():.2f}"
    return text


def _figure(rows: int, cols: int, panel_size: float) -> tuple[Figure, np.ndarray]:
    plt = _pyplot()
    if isinstance(panel_size, bool) or not isinstance(panel_size, (int, float)) \
            or panel_size <= 0:
        raise argument_error("panel_size", "a positive size in inches", panel_size)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_size, rows * panel_size + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _title(fig: Figure, title: str) -> None:
    """A figure title wrapped to the figure's width (about ten characters per inch at 12 pt)."""
    fig.suptitle(textwrap.fill(title, width=max(16, int(fig.get_figwidth() * 10))))


def _show(ax: Axes, picture: np.ndarray, kwargs: Mapping[str, Any], title: str) -> None:
    ax.imshow(picture, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _batch_size(explanations: Mapping[str, Explanation]) -> int:
    sizes = {name: len(e) for name, e in explanations.items()}
    if len(set(sizes.values())) != 1:
        raise argument_error("explanations", "explanations of the same samples (one batch size)",
                             shown(f"batch sizes {sizes}"))
    return next(iter(sizes.values()))


def _check_mapping(explanations: object, name: str) -> dict[str, Explanation]:
    if is_explanation(explanations):
        explanations = {explanations.method: explanations}
    if not isinstance(explanations, Mapping) or not explanations:
        raise argument_error(name, "a non-empty dict {method name: Explanation}",
                             shown(type(explanations).__name__), kind=AttribTypeError)
    return {str(k): _check_explanation(v, f"{name}[{k!r}]") for k, v in explanations.items()}


# --------------------------------------------------------------------------- figures


def seed_figure(image: Any, explanations: Mapping[str, Explanation], *,
                columns: Sequence[str] | None = None,
                gradient_style: str = "rgb", colormap: Any = "jet", alpha: float = 0.5,
                percentile: float = 99, class_names: Any = None,
                panel_size: float = 2.4, title: str | None = None,
                probabilities: bool = False) -> Figure:
    """Original | Grad-CAM overlay | vanilla gradient | guided backprop | guided Grad-CAM.

    One row per sample, a title on every panel. Panels of methods not given
    are skipped; a guided Grad-CAM explanation also supplies the Grad-CAM
    and guided-backprop panels from its ``parts`` when those methods are not
    given themselves. Every other method given follows as an extra column,
    unless ``columns`` picks them.

    Parameters
    ----------
    image : ndarray, shape (N, H, W, 3) or (H, W, 3), floats in [0, 1] or uint8; or None
        The pictures the samples show (e.g. ``attrib.preprocess.denormalize``
        of the inputs). ``None``: the explanations' inputs, min-max scaled.
    explanations : dict of str to Explanation
        Keyed by method name (``"gradcam"``, ``"saliency"``,
        ``"guided_backprop"``, ``"guided_gradcam"``, ...), of the same samples.
    columns : sequence of str, optional
        The methods to show after the original, in order (each given, or a
        part of the guided Grad-CAM given). Default: :data:`SEED_COLUMNS`
        that are available, then the other methods given, in their order.
    gradient_style : str
        How input-space maps are drawn (see :func:`render`): ``"rgb"``
        (the seeds' ``deprocess``), ``"gray"``, ``"diverging"``, ...
    colormap, alpha : the Grad-CAM overlay's colormap (RGB) and weight.
    percentile : float
        Clip for grayscale maps.
    class_names : sequence or mapping, optional
        Names of the classes for the row labels.
    panel_size : float
        Inches per panel.
    title : str, optional
        Figure title.
    probabilities : bool
        Follow each class name with its softmax probability (from the logits).

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Selvaraju et al. (2017), Grad-CAM, figure 1.
    """
    given = _check_mapping(explanations, "explanations")
    n = _batch_size(given)
    pictures = _display_images(image, n, list(given.values()))
    first = next(iter(given.values()))
    targets = np.asarray(first.targets)
    composite = given.get("guided_gradcam")

    def part(name: str) -> _Map | None:
        if name in given:
            return _from_explanation(given[name])
        if composite is not None and name in composite.parts:
            return _Map(np.asarray(composite.parts[name]), composite.layout, name, targets)
        return None

    available = [name for name in SEED_COLUMNS if part(name) is not None]
    available += [name for name in given if name not in SEED_COLUMNS]
    if columns is None:
        columns = available
    elif isinstance(columns, str) or not isinstance(columns, Sequence) \
            or not all(isinstance(name, str) for name in columns):
        raise argument_error("columns", "a sequence of method names", columns,
                             kind=AttribTypeError)
    for name in columns:
        if name not in available:
            raise argument_error("columns", f"methods of {available}", name,
                                 did_you_mean(name, available))
    if not columns:
        raise argument_error("columns", f"at least one of {available}", columns)
    panels: list[tuple[str, _Map, str]] = []
    for name in columns:
        m = part(name)
        assert m is not None
        panels.append((METHOD_LABELS.get(name, name), m, "heatmap" if m.is_cam else gradient_style))

    cols = len(panels) + (pictures is not None)
    fig, axes = _figure(n, cols, panel_size)
    for row in range(n):
        picture = None if pictures is None else pictures[row]
        col = 0
        label = _class_text(targets, row, class_names, first.logits if probabilities else None)
        if picture is not None:
            _show(axes[row, 0], picture, {}, f"Original ({label})" if label else "Original")
            col = 1
        for text, m, style in panels:
            shown_picture, kwargs = render(m, row, picture, style=style, colormap=colormap,
                                           alpha=alpha, percentile=percentile)
            _show(axes[row, col], shown_picture, kwargs,
                  text if picture is not None or not label else f"{text} ({label})")
            col += 1
    if title:
        _title(fig, title)
    return fig


def saliency_figure(explanation: Explanation, image: Any = None, *, percentile: float = 99,
                    class_names: Any = None, panel_size: float = 2.4,
                    title: str | None = None, probabilities: bool = False) -> Figure:
    """Gray | colour | positive | negative saliency of an input-space map, one row per sample.

    The PyTorch seed's four pictures of a guided-backprop gradient:
    :func:`~attrib.postprocess.grayscale`, the gradient min-max scaled as
    colour, :func:`~attrib.postprocess.positive_saliency` and
    :func:`~attrib.postprocess.negative_saliency`. With ``image``, the
    original comes first.

    Parameters
    ----------
    explanation : Explanation
        Of an input-space method (saliency, guided backprop, deconvnet, ...).
    image : ndarray, (N, H, W, 3) or (H, W, 3), optional
        The original pictures, floats in [0, 1] or uint8.
    probabilities : bool
        Follow each class name with its softmax probability (from the logits).

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Springenberg, Dosovitskiy, Brox, Riedmiller (2015). Striving for
    simplicity: the all convolutional net.
    """
    explanation = _check_explanation(explanation, "explanation")
    m = _from_explanation(explanation)
    if m.is_cam:
        raise argument_error("explanation", "an input-space map (N, C, H, W) / (N, H, W, C)",
                             shown(f"a {explanation.method} map of shape {m.array.shape}"),
                             "Use seed_figure or Explanation.plot for Grad-CAM.")
    n = len(m)
    pictures = None if image is None else _display_images(image, n, [explanation])
    panels = [("Gray", "gray"), ("Color", "color"), ("Positive", "positive"),
              ("Negative", "negative")]
    cols = len(panels) + (pictures is not None)
    fig, axes = _figure(n, cols, panel_size)
    label = METHOD_LABELS.get(m.method, m.method)
    for row in range(n):
        col = 0
        cls = _class_text(m.targets, row, class_names,
                          explanation.logits if probabilities else None)
        if pictures is not None:
            _show(axes[row, 0], pictures[row], {}, f"Original ({cls})" if cls else "Original")
            col = 1
        for text, style in panels:
            picture, kwargs = render(m, row, style=style, percentile=percentile)
            _show(axes[row, col], picture, kwargs, text)
            col += 1
    _title(fig, title if title is not None else label)
    return fig


def grid_figure(explanations_by_method: Mapping[str, Explanation], images: Any = None, *,
                style: str = "auto", colormap: Any = "jet", alpha: float = 0.5,
                percentile: float = 99, class_names: Any = None, panel_size: float = 2.0,
                title: str | None = None, probabilities: bool = False) -> Figure:
    """Methods × images: one row per method (after a row of the images), one column per sample.

    Parameters
    ----------
    explanations_by_method : dict of str to Explanation
        Explanations of the same samples, keyed by method name; rows follow
        the dict's order.
    images : ndarray, (N, H, W, 3) or (H, W, 3), optional
        Display images (floats in [0, 1] or uint8); ``None``: the
        explanations' inputs, min-max scaled.
    style : str
        How maps are drawn, see :func:`render` (``"auto"``: heat-map
        overlays for Grad-CAM, diverging for gradient × input, gray otherwise).
    probabilities : bool
        Follow each class name with its softmax probability (from the logits).

    Returns
    -------
    matplotlib.figure.Figure
    """
    given = _check_mapping(explanations_by_method, "explanations_by_method")
    style = _check_style(style)
    n = _batch_size(given)
    pictures = _display_images(images, n, list(given.values()))
    targets = np.asarray(next(iter(given.values())).targets)
    logits = next(iter(given.values())).logits if probabilities else None
    rows = len(given) + (pictures is not None)
    fig, axes = _figure(rows, n, panel_size)
    for col in range(n):
        picture = None if pictures is None else pictures[col]
        row = 0
        label = _class_text(targets, col, class_names, logits)
        if picture is not None:
            _show(axes[0, col], picture, {}, f"Image ({label})" if label else "Image")
            row = 1
        for name, explanation in given.items():
            shown_picture, kwargs = render(_from_explanation(explanation), col, picture,
                                           style=style, colormap=colormap, alpha=alpha,
                                           percentile=percentile)
            _show(axes[row, col], shown_picture, kwargs, METHOD_LABELS.get(name, name))
            row += 1
    if title:
        _title(fig, title)
    return fig


def plot_explanation(explanation: Explanation, image: Any = None, ax: Axes | None = None, *,
                     index: int | None = None, style: str = "auto", colormap: Any = "jet",
                     alpha: float = 0.5, percentile: float = 99, class_names: Any = None,
                     panel_size: float = 2.4) -> Figure:
    """Draw an Explanation: a heat-map overlay for Grad-CAM, grayscale or diverging otherwise.

    Parameters
    ----------
    explanation : Explanation
    image : ndarray, (N, H, W, 3) or (H, W, 3), optional
        Under Grad-CAM heat-maps; ``None``: the inputs, min-max scaled.
    ax : matplotlib Axes, optional
        Draw sample ``index`` (default 0) there; otherwise a new figure with
        one panel per sample (or only ``index``).
    style : str
        See :func:`render`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    An Explanation of signals (N, C, L) or volumes (N, C, D, H, W) (channels
    last in a Flax model) is drawn by :func:`signal_figure` (one row per channel,
    the map as a colour band) or :func:`volume_figure` (three slices through the
    map's maximum), for sample ``index`` (default 0); ``image`` is then the data
    drawn (default: the explained inputs), ``alpha`` the volume overlay's opacity.
    """
    dims = _data_dims(explanation)
    if dims != 2:
        return _signal_or_volume(explanation, dims, image, ax, index, alpha)
    explanation = _check_explanation(explanation, "explanation")
    style = _check_style(style)
    m = _from_explanation(explanation)
    n = len(m)
    if index is not None and (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                              or not 0 <= index < n):
        raise argument_error("index", f"a sample index in [0, {n})", index)
    pictures = _display_images(image, n, [explanation])
    wanted = [int(index)] if index is not None else ([0] if ax is not None else list(range(n)))
    fig: Any
    if ax is not None:
        fig = ax.figure
        axes_list = [ax]
    else:
        cols = min(len(wanted), 8)
        rows = -(-len(wanted) // cols)
        fig, grid = _figure(rows, cols, panel_size)
        axes_list = list(grid.flat)
    label = METHOD_LABELS.get(m.method, m.method)
    drawn_style = _auto_style(m) if style == "auto" else style
    for ax_i, sample in zip(axes_list, wanted):
        picture = None if pictures is None else pictures[sample]
        shown_picture, kwargs = render(m, sample, picture if drawn_style == "heatmap" else None,
                                       style=drawn_style, colormap=colormap, alpha=alpha,
                                       percentile=percentile)
        cls = _class_text(m.targets, sample, class_names)
        _show(ax_i, shown_picture, kwargs, f"{label} ({cls})" if cls else label)
    return fig


def _data_dims(explanation: object) -> int:
    """Spatial axes of the explained data: 1 (signals (N, C, L)), 3 (volumes), else 2 (images)."""
    inputs = getattr(explanation, "inputs", None) if is_explanation(explanation) else None
    if inputs is None or isinstance(inputs, tuple):
        return 2
    return {3: 1, 5: 3}.get(int(np.ndim(inputs)), 2)


def _signal_or_volume(explanation: Explanation, dims: int, data: Any, ax: Any, index: Any,
                      alpha: float) -> Figure:
    """:func:`plot_explanation` of signals and volumes: their own figures of one sample."""
    if ax is not None:
        kind = "signals" if dims == 1 else "volumes"
        raise argument_error("ax", f"None for an Explanation of {kind} (its figure has one "
                             f"panel per {'channel' if dims == 1 else 'slice'})", shown("an Axes"),
                             f"Draw it with attrib.plotting.{'signal' if dims == 1 else 'volume'}"
                             "_figure, which makes its own figure.")
    index = 0 if index is None else index
    if isinstance(index, np.integer):
        index = int(index)
    if dims == 1:
        return signal_figure(explanation, data, index=index)
    return volume_figure(explanation, data, index=index, alpha=alpha)


def _map_of(value: Any, index: int) -> np.ndarray:
    """One (H, W) map from an Explanation (its sample ``index``) or an array."""
    array = value.attribution if is_explanation(value) else np.asarray(value)
    array = np.asarray(array[index] if array.ndim == 3 else array, dtype=np.float64)
    if array.ndim != 2:
        raise argument_error("explanation", "a CAM-style map (N, H, W) or (H, W)",
                             shown(f"shape {np.shape(array)}"),
                             "Reduce an input-space map first, e.g. attrib.grayscale(...).")
    return array


def segmentation_figure(image: Any, explanation: Any, mask: Any, *, index: int = 0,
                        title: str = "", panel_size: float = 3.0) -> Figure:
    """The image with the explained mask outlined, and the map over it with the same outline.

    Parameters
    ----------
    image : ndarray (H, W, 3) in [0, 1] or uint8
    explanation : Explanation or ndarray (N, H, W) / (H, W)
        E.g. Grad-CAM with ``target=attrib.targets.Mask(category, mask)``.
    mask : ndarray (H, W) (or (N, H, W)), the region the score was summed over
    """
    from .postprocess import minmax, overlay

    heat = _map_of(explanation, index)
    region = np.asarray(mask, dtype=np.float64)
    region = region[index] if region.ndim == 3 else region
    picture = np.asarray(image)
    fig, axes = _figure(1, 2, panel_size)
    for ax, shown_picture, name in ((axes[0, 0], picture, "image and mask"),
                                    (axes[0, 1], overlay(picture, minmax(heat)),
                                     title or "map over the mask")):
        _show(ax, shown_picture, {}, name)
        ax.contour(region, levels=[0.5], colors="white", linewidths=1.5)
    return fig


def detection_figure(image: Any, boxes: Any, maps: Sequence[Any], *,
                     labels: Sequence[str] | None = None, index: int = 0,
                     panel_size: float = 3.0) -> Figure:
    """One panel per box: its map (e.g. Grad-CAM with ``Boxes([box], [label])``) and the box.

    Parameters
    ----------
    image : ndarray (H, W, 3) in [0, 1] or uint8
    boxes : array (K, 4), (x1, y1, x2, y2) in pixels
    maps : sequence of K Explanations or (H, W) arrays, one per box
    labels : sequence of K str, optional
        Panel titles (e.g. class names and scores).
    """
    from .postprocess import minmax, overlay

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(maps) != len(boxes):
        raise argument_error("maps", f"one map per box ({len(boxes)})", shown(f"{len(maps)} maps"))
    picture = np.asarray(image)
    fig, axes = _figure(1, len(boxes), panel_size)
    plt = _pyplot()
    for k, (box, value) in enumerate(zip(boxes, maps)):
        ax = axes[0, k]
        _show(ax, overlay(picture, minmax(_map_of(value, index))), {},
              labels[k] if labels is not None else f"box {k}")
        x1, y1, x2, y2 = box
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                   linewidth=2))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created) and close it.

    A path without a suffix gets ``.png``; another suffix matplotlib knows
    (``.pdf``, ``.svg``) writes that format.

    Returns
    -------
    pathlib.Path
        Where the file is.
    """
    from matplotlib.figure import Figure as _Figure

    if not isinstance(fig, _Figure):
        raise argument_error("fig", "a matplotlib Figure", shown(type(fig).__name__),
                             kind=AttribTypeError)
    if not isinstance(path, (str, os.PathLike)):
        raise argument_error("path", "a file path", shown(type(path).__name__),
                             kind=AttribTypeError)
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(".png")
    fmt = target.suffix[1:].lower()
    if fmt not in fig.canvas.get_supported_filetypes():
        raise argument_error("path", "a .png file (or another format matplotlib writes)",
                             str(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(target, dpi=dpi, format=fmt)
    finally:
        _pyplot().close(fig)
    return target
