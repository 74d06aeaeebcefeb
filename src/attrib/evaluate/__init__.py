"""Can I trust this map? Sanity checks, faithfulness and localisation metrics.

Backend-agnostic: everything runs on :meth:`attrib.Model.forward`,
:func:`attrib.explain` and, for the model randomisation check,
:meth:`attrib.Model.randomized`.

- :func:`model_randomization`, :func:`data_randomization` — Adebayo et al. (2018);
- :class:`Deletion` / :func:`deletion`, :class:`Insertion` / :func:`insertion` — Petsiuk et al. (2018);
- :class:`PointingGame` / :func:`pointing_game` (Zhang et al., 2016),
  :class:`EnergyInMask` / :func:`energy_in_mask`.

Metrics are objects holding the data they are built with and called on
maps (``Deletion(model, inputs)(explanation)``); results are small frozen
objects with ``.table()`` (plain text) and ``.plot()`` (matplotlib).
"""

from __future__ import annotations

from .faithfulness import CurveResult, Deletion, Insertion, deletion, insertion
from .localisation import (
    EnergyInMask,
    LocalisationResult,
    PointingGame,
    energy_in_mask,
    localisation_table,
    pointing_game,
)
from .randomization import (
    METRICS,
    RandomizationResult,
    data_randomization,
    model_randomization,
    similarities,
)

__all__ = [
    "model_randomization",
    "data_randomization",
    "RandomizationResult",
    "similarities",
    "METRICS",
    "Deletion",
    "Insertion",
    "deletion",
    "insertion",
    "CurveResult",
    "PointingGame",
    "EnergyInMask",
    "pointing_game",
    "energy_in_mask",
    "LocalisationResult",
    "localisation_table",
]
