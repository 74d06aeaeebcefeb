"""Explaining a whole dataset: batches streamed into a Zarr store, resumable.

:func:`explain_dataset` runs in one process; :class:`BatchExplainer` is the
per-batch work as a plain class that Ray Data runs as a ``map_batches`` actor
(:func:`attrib.ray.explain_dataset`). Both write the layout :mod:`._store`
describes. Nothing here imports zarr, ray or a framework at import time.
"""

from __future__ import annotations

from ._explainer import BatchExplainer
from ._run import explain_dataset
from ._store import MapStore, open_maps

__all__ = ["BatchExplainer", "explain_dataset", "MapStore", "open_maps"]
