"""Explaining a batch with several methods and writing the figures (shared by the commands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._api import explain
from .._explanation import Explanation
from .._registry import default_registry
from ..preprocess import normalize
from ._models import LoadedModel

__all__ = ["model_inputs", "explain_all", "needs_layer", "progress", "SEED_METHODS"]

#: The methods of the four-panel seed figure (Grad-CAM, vanilla, guided, guided Grad-CAM).
SEED_METHODS: tuple[str, ...] = ("gradcam", "saliency", "guided_backprop", "guided_gradcam")


def model_inputs(display: np.ndarray, loaded: LoadedModel) -> np.ndarray:
    """HWC pictures in [0, 1], (N, H, W, 3), as the model's input batch."""
    if loaded.imagenet:
        return normalize(display, loaded.layout)
    return normalize(display, loaded.layout, mean=0.0, std=1.0)


def needs_layer(method: str) -> bool:
    return bool(default_registry().method(method).needs_layer)


def explain_all(loaded: LoadedModel, inputs: np.ndarray, methods: Sequence[str], *,
                target: Any = None, layer: str | None = None) -> dict[str, Explanation]:
    """``{method: Explanation}`` of ``inputs`` for each method, in one :func:`attrib.explain`
    call (shared gradient passes; each map equals the method's own call bit for bit)."""
    layer = layer or loaded.layer
    if loaded.backend == "jax":  # the second run of the same model and size starts fast
        from ._jaxcache import use_jax_compilation_cache

        use_jax_compilation_cache()
    names = list(dict.fromkeys(methods))
    if not names:
        return {}
    # layer None: each layer method's default layer (the last spatial one)
    shared = layer if any(needs_layer(m) for m in names) else None
    return dict(explain(loaded.model, inputs, method=names, target=target,
                        backend=loaded.backend, layer=shared))


def progress(items: Sequence[Any], description: str, unit: str = "image") -> Any:
    """``items`` with a tqdm bar on stderr when there are several (plain otherwise)."""
    if len(items) < 2:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a convenience; explaining works without it
        return items
    return tqdm(items, desc=description, unit=unit, file=sys.stderr, leave=False)


def relative(path: Path) -> str:
    """``path`` as the user would type it (relative to the working directory when inside it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
