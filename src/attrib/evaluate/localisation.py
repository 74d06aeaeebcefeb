"""Localisation against object masks: the pointing game and the energy in the mask.

*Pointing game* (Zhang et al., 2016, "Top-down Neural Attention by
Excitation Backprop"): a hit when the map's maximum lies within
``tolerance`` pixels of the object's mask. The paper's 15 px are for images
of about 224 px; the tolerance is scaled to the image, ``15 * min(H, W) /
224`` (4.3 px on the 64 px demo scenes). The uniform-random baseline is the
share of pixels within the tolerance of the mask: the expected hit rate of
a point drawn uniformly over the image.

*Energy in mask* (as in Score-CAM's energy-based pointing game): the share
of the map's positive part that falls inside the mask.

Maps of another size than the masks are resized to the masks (bilinear).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import argument_error, shown
from ._maps import two_d
from ._table import format_table

__all__ = ["LocalisationResult", "PointingGame", "EnergyInMask", "pointing_game",
           "energy_in_mask", "PAPER_TOLERANCE", "PAPER_IMAGE_SIZE"]

#: the pointing game's tolerance in the paper, in pixels, ...
PAPER_TOLERANCE: float = 15.0
#: ... for images of this size
PAPER_IMAGE_SIZE: float = 224.0


def _masks(masks: Any) -> np.ndarray:
    array = np.asarray(masks)
    if array.ndim != 3 or array.dtype != bool:
        raise argument_error("masks", "a boolean array (N, H, W)",
                             shown(f"{array.dtype} array of shape {array.shape}"))
    return array


def _maps_like(attributions: Any, masks: np.ndarray) -> np.ndarray:
    maps = two_d(attributions)
    if maps.shape[0] != masks.shape[0]:
        raise argument_error("attributions", f"{masks.shape[0]} maps (one per mask)",
                             shown(f"{maps.shape[0]} maps"))
    if maps.shape[1:] != masks.shape[1:]:
        from ..postprocess import resize_map

        maps = np.asarray(resize_map(maps, masks.shape[1:]), dtype=np.float64)
    return maps


def _distance_to_mask(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) Euclidean distance of every pixel to the nearest mask pixel (inf: empty mask)."""
    n, h, w = masks.shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.full(masks.shape, np.inf)
    for i in range(n):
        ys, xs = np.nonzero(masks[i])
        if len(ys) == 0:
            continue
        for y0 in range(h):  # row by row keeps memory at (W, pixels in mask)
            d2 = (y0 - ys[None, :]) ** 2 + (xx[y0][:, None] - xs[None, :]) ** 2
            out[i, y0] = np.sqrt(d2.min(axis=1))
    del yy
    return out


@dataclass(frozen=True)
class LocalisationResult:
    """Per-sample scores of a localisation metric.

    Attributes
    ----------
    metric : {"pointing_game", "energy_in_mask"}
    scores : ndarray of float64, shape (N,)
        1.0 / 0.0 hits (pointing game) or shares in [0, 1] (energy).
    baseline : ndarray of float64, shape (N,)
        What a uniformly random point (pointing game) or a uniform map
        (energy) scores: the area share of the (tolerance-dilated) mask.
    """

    metric: str
    scores: np.ndarray = field(repr=False)
    baseline: np.ndarray = field(repr=False)

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def baseline_mean(self) -> float:
        return float(self.baseline.mean())

    def table(self) -> str:
        return format_table(["metric", "score", "uniform baseline", "N"],
                            [[self.metric, f"{self.mean:.3f}", f"{self.baseline_mean:.3f}",
                              str(len(self.scores))]])

    def plot(self, ax: Any = None) -> Any:
        """A bar of the score next to the uniform baseline; returns the Axes."""
        if ax is None:
            from ..plotting import _pyplot

            _, ax = _pyplot().subplots(figsize=(3, 3), layout="constrained")
        ax.bar(["map", "uniform"], [self.mean, self.baseline_mean], color=["C0", "0.6"])
        ax.set_ylim(0, 1)
        ax.set_title(self.metric, fontsize=9)
        return ax


class PointingGame:
    """``PointingGame(masks)(maps)`` → :class:`LocalisationResult` (hits).

    Parameters
    ----------
    masks : ndarray of bool, shape (N, H, W)
        The objects' pixels, at the image size.
    tolerance : float, optional
        In pixels; default ``15 * min(H, W) / 224`` (the paper's 15 px scaled).
    """

    def __init__(self, masks: Any, *, tolerance: float | None = None) -> None:
        self.masks = _masks(masks)
        size = min(self.masks.shape[1:])
        if tolerance is None:
            tolerance = PAPER_TOLERANCE * size / PAPER_IMAGE_SIZE
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise argument_error("tolerance", "a non-negative number of pixels", tolerance)
        self.tolerance = float(tolerance)
        self._near = _distance_to_mask(self.masks) <= self.tolerance

    def __call__(self, attributions: Any) -> LocalisationResult:
        maps = _maps_like(attributions, self.masks)
        n, h, w = maps.shape
        peak = maps.reshape(n, -1).argmax(axis=1)
        hits = self._near.reshape(n, -1)[np.arange(n), peak].astype(np.float64)
        return LocalisationResult("pointing_game", hits,
                                  self._near.reshape(n, -1).mean(axis=1).astype(np.float64))


class EnergyInMask:
    """``EnergyInMask(masks)(maps)`` → :class:`LocalisationResult` (shares of positive attribution).

    A map with no positive value scores 0.
    """

    def __init__(self, masks: Any) -> None:
        self.masks = _masks(masks)

    def __call__(self, attributions: Any) -> LocalisationResult:
        maps = np.maximum(_maps_like(attributions, self.masks), 0.0)
        n = maps.shape[0]
        total = maps.reshape(n, -1).sum(axis=1)
        inside = (maps * self.masks).reshape(n, -1).sum(axis=1)
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
        return LocalisationResult("energy_in_mask", share,
                                  self.masks.reshape(n, -1).mean(axis=1).astype(np.float64))


def pointing_game(attributions: Any, masks: Any, *, tolerance: float | None = None
                  ) -> LocalisationResult:
    """``PointingGame(masks, tolerance=tolerance)(attributions)``."""
    return PointingGame(masks, tolerance=tolerance)(attributions)


def energy_in_mask(attributions: Any, masks: Any) -> LocalisationResult:
    """``EnergyInMask(masks)(attributions)``."""
    return EnergyInMask(masks)(attributions)


def localisation_table(results: Mapping[str, tuple[LocalisationResult, LocalisationResult]]) -> str:
    """One row per method: pointing-game hit rate, its random baseline, energy in mask."""
    rows = []
    for method, (pointing, energy) in results.items():
        rows.append([method, f"{pointing.mean:.3f}", f"{pointing.baseline_mean:.3f}",
                     f"{energy.mean:.3f}", f"{energy.baseline_mean:.3f}"])
    return format_table(["method", "pointing hit rate", "random point", "energy in mask",
                         "mask area"], rows)
