"""attrib-numpy: small sequential CNNs (1-D, 2-D, 3-D) and MLPs in pure NumPy, and their attrib backend.

The network classes are the "framework"; :mod:`attrib_numpy._plugin` registers
the backend ``"numpy"`` through the entry point group ``attrib`` and
:mod:`attrib_numpy._model` is its :class:`attrib.Model` adapter.
"""

from __future__ import annotations

from ._layers import (
    Concat,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvNd,
    Dense,
    Flatten,
    GlobalAvgPool,
    Layer,
    ReLU,
    ReLU6,
)
from ._network import Sequential

__version__ = "0.1.0"

__all__ = ["Sequential", "Layer", "Concat", "ConvNd", "Conv1d", "Conv2d", "Conv3d", "Dense", "ReLU", "ReLU6",
           "GlobalAvgPool", "Flatten"]
