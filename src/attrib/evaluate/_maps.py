"""Attribution maps as (N, H, W) arrays, the common currency of the metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import argument_error, shown
from .._explanation import Explanation

__all__ = ["two_d", "method_list", "explain_maps"]


def two_d(maps: Any, *, absolute: bool = False, name: str = "attributions") -> np.ndarray:
    """(N, H, W) float64 maps from an :class:`attrib.Explanation` or an array.

    Input-space maps (N, C, H, W) / (N, H, W, C) are summed over the channel
    axis (``absolute``: the absolute values are summed); (N, H, W) maps are
    kept (``absolute``: their absolute value). A plain 4-D array is taken as
    NCHW when its axis 1 is smaller than its last axis, else NHWC.
    """
    if isinstance(maps, Explanation):
        array = np.asarray(maps.attribution, dtype=np.float64)
        axis = maps.channel_axis if array.ndim == 4 else None
    else:
        array = np.asarray(maps, dtype=np.float64)
        axis = (1 if array.shape[1] < array.shape[-1] else -1) if array.ndim == 4 else None
    if array.ndim not in (3, 4) or not np.all(np.isfinite(array)):
        raise argument_error(
            name, "finite maps of shape (N, H, W) or (N, C, H, W) / (N, H, W, C)",
            shown(f"an array of shape {array.shape}" + (
                "" if np.all(np.isfinite(array)) else " with NaN or infinite values")))
    if absolute:
        array = np.abs(array)
    return array.sum(axis=axis) if axis is not None else array


def method_list(method: Any) -> tuple[str, ...]:
    """``"gradcam"``, ``"gradcam,guided_backprop"`` or a sequence, as a tuple of names."""
    if isinstance(method, str):
        names = tuple(part.strip() for part in method.split(",") if part.strip())
    elif isinstance(method, (list, tuple)) and all(isinstance(m, str) for m in method):
        names = tuple(method)
    else:
        names = ()
    if not names:
        raise argument_error("method", "a method name or a sequence of them", method,
                             "e.g. method=['gradcam', 'guided_backprop']")
    return names


def explain_maps(model: Any, inputs: Any, method: str, *, target: Any, layer: str | None,
                 objective: str = "logit") -> Explanation:
    """:func:`attrib.explain` passing ``layer`` only to layer methods."""
    from .._api import explain
    from .._registry import default_registry

    needs_layer = default_registry().method(method).needs_layer
    return explain(model, inputs, method=method, target=target,
                   layer=layer if needs_layer else None, objective=objective)


def explain_all(model: Any, inputs: Any, methods: Sequence[str], *, target: Any,
                layer: str | None, objective: str = "logit") -> dict[str, Explanation]:
    """:func:`explain_maps` of every method in one :func:`attrib.explain` call (shared passes).

    Each map equals the method's own call bit for bit (issue 19).
    """
    from .._api import explain
    from .._registry import default_registry

    any_layer = any(default_registry().method(m).needs_layer for m in methods)
    return explain(model, inputs, method=list(methods), target=target,
                   layer=layer if any_layer else None, objective=objective)
