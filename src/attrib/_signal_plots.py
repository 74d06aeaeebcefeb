"""Pictures of maps on signals (N, C, L) and volumes (N, C, D, H, W), re-exported by :mod:`attrib.plotting`.

- :func:`signal_figure`: one row per channel, the signal as a line over its
  attribution drawn as a coloured band (diverging: red positive, blue negative,
  0 white; a CAM map (N, L) is the same band on every row);
- :func:`volume_figure`: three orthogonal slices (axial, coronal, sagittal)
  through the voxel where the map is largest, the map over the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import AttribTypeError, argument_error, shown
from ._kinds import is_explanation
from ._plot_base import _DIVERGING_CMAP, METHOD_LABELS, _pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._explanation import Explanation

__all__ = ["signal_figure", "volume_figure"]


def _parts(explanation: object, data: Any, index: int, k: int,
           name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(data (C, *spatial) channels first, map (C or 1, *spatial), method) of sample ``index``."""
    if not is_explanation(explanation):
        raise argument_error("explanation", "an attrib.Explanation", shown(type(explanation).__name__),
                             kind=AttribTypeError)
    attribution = explanation.attribution
    if isinstance(attribution, tuple):
        raise argument_error("explanation", "the map of one input", shown("a tuple of maps"),
                             "Several inputs: draw one of them, e.g. the Explanation's map [0].")
    values = explanation.inputs if data is None else np.asarray(data)
    if values is None:
        raise argument_error(name, "the explained inputs", None, "Pass them as data=.")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == k + 1:
        values = values[None]
    if values.ndim != k + 2:
        spelling = "(N, C, L)" if k == 1 else "(N, C, D, H, W)"
        raise argument_error(name, f"a batch {spelling} (or channels last)", shown(
            f"shape {values.shape}"))
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(values):
        raise argument_error("index", f"a sample index in [0, {len(values)})", index)
    sample = values[index]
    maps = np.asarray(attribution, dtype=np.float64)[index]
    if explanation.layout == "NHWC":
        sample = np.moveaxis(sample, -1, 0)
        if maps.ndim == k + 1:
            maps = np.moveaxis(maps, -1, 0)
    if maps.ndim == k:  # a CAM: one map for every channel
        maps = maps[None]
    if maps.shape[1:] != sample.shape[1:]:
        raise argument_error("explanation", f"a map of the data's size {sample.shape[1:]}",
                             shown(f"a map of shape {maps.shape[1:]}"))
    return sample, maps, explanation.method


def signal_figure(explanation: Explanation, data: Any = None, *, index: int = 0,
                  channel_names: Sequence[str] | None = None, row_height: float = 1.2,
                  width: float = 8.0) -> Figure:
    """The signal of sample ``index``, one row per channel, over its attribution as a colour band.

    Parameters
    ----------
    explanation : Explanation
        Of signals (N, C, L) (channels last (N, L, C) in a Flax model): an
        input-space map (N, C, L) gives each channel its own band, a CAM
        (N, L) the same band on every channel.
    data : array, optional
        The signals to draw (default: the explained inputs).
    index : int
        The sample.
    channel_names : sequence of str, optional
        Row labels (default ``"channel 0"``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        Colours are symmetric about 0 (red positive, blue negative), scaled by
        the largest ``|map|`` of the sample.
    """

    signal, maps, method = _parts(explanation, data, index, 1, "data")
    channels, length = signal.shape
    names = list(channel_names) if channel_names is not None else [
        f"channel {c}" for c in range(channels)]
    if len(names) != channels:
        raise argument_error("channel_names", f"{channels} names", names)
    limit = float(np.abs(maps).max()) or 1.0
    plt = _pyplot()
    fig, axes = plt.subplots(channels, 1, figsize=(width, row_height * channels + 0.6),
                             squeeze=False, sharex=True, layout="constrained")
    image = None
    for c, ax in enumerate(axes[:, 0]):
        band = maps[c if len(maps) > 1 else 0]
        low, high = float(signal[c].min()), float(signal[c].max())
        pad = 0.1 * (high - low) or 1.0
        image = ax.imshow(band[None, :], aspect="auto", cmap=_DIVERGING_CMAP, vmin=-limit,
                          vmax=limit, extent=(-0.5, length - 0.5, low - pad, high + pad),
                          interpolation="nearest")
        ax.plot(np.arange(length), signal[c], color="black", linewidth=1.0)
        ax.set_ylabel(names[c], fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("position", fontsize=8)
    label = METHOD_LABELS.get(method, method)
    fig.suptitle(f"{label}, sample {index} (class {int(explanation.targets[index])})", fontsize=9)
    assert image is not None
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="attribution")
    return fig


def volume_figure(explanation: Explanation, data: Any = None, *, index: int = 0,
                  panel_size: float = 3.0, alpha: float = 0.5) -> Figure:
    """Three orthogonal slices through the voxel where the map of sample ``index`` is largest.

    Parameters
    ----------
    explanation : Explanation
        Of volumes (N, C, D, H, W) (channels last in a Flax model): a CAM
        (N, D, H, W), or an input-space map whose ``|map|`` is summed over
        channels.
    data : array, optional
        The volumes to draw (default: the explained inputs); the mean over channels is shown.
    alpha : float
        Opacity of the map over the volume.

    Returns
    -------
    matplotlib.figure.Figure
        Axial (a slice at depth d: H x W), coronal (at row h: D x W) and
        sagittal (at column w: D x H) panels, each with the map (``inferno``,
        scaled to the map's largest value) over the volume (gray) and a cross
        at the maximum.
    """

    volume, maps, method = _parts(explanation, data, index, 3, "data")
    grey = volume.mean(axis=0)
    heat = np.abs(maps).sum(axis=0) if len(maps) > 1 else maps[0]
    d, h, w = (int(i) for i in np.unravel_index(int(np.argmax(heat)), heat.shape))
    top = float(heat.max()) or 1.0
    panels = [(f"axial (depth {d})", grey[d], heat[d], (w, h), ("W", "H")),
              (f"coronal (row {h})", grey[:, h], heat[:, h], (w, d), ("W", "D")),
              (f"sagittal (column {w})", grey[:, :, w], heat[:, :, w], (h, d), ("H", "D"))]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_size, panel_size + 0.6), squeeze=False,
                             layout="constrained")
    image = None
    for ax, (title, background, overlay, (cx, cy), (xlabel, ylabel)) in zip(axes[0], panels):
        ax.imshow(background, cmap="gray", interpolation="nearest")
        image = ax.imshow(overlay, cmap="inferno", vmin=0, vmax=top, alpha=alpha,
                          interpolation="nearest")
        ax.plot([cx], [cy], marker="+", color="cyan", markersize=12, markeredgewidth=1.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    label = METHOD_LABELS.get(method, method)
    fig.suptitle(f"{label}, sample {index} (class {int(explanation.targets[index])}): slices "
                 f"through the maximum at (d, h, w) = ({d}, {h}, {w})", fontsize=9)
    assert image is not None
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="map")
    return fig
