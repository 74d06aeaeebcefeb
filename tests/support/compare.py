"""How far a map is from its reference, as the tests report it."""

from __future__ import annotations

from typing import Any

import numpy as np


def max_relative(actual: Any, expected: Any) -> float:
    """``max |actual - expected| / max |expected|``, in float64."""
    expected = np.asarray(expected, np.float64)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max())
