"""Several inputs: a model called as ``model(x1, x2, ...)``, explained for each input.

A tuple of arrays ``(x1, x2, ...)`` passed as ``inputs`` is a batch of N samples
of a model that takes several arguments (an image and a table, two views): every
array has the batch axis first and the same N. Methods that explain the inputs
return one map per input, a tuple in the same order (as Captum does); the layer
methods (the gradient-based CAMs and Eigen-CAM) explain a layer and upsample
their map to the **first** input's spatial size.

A backend opts in with :attr:`attrib.Model.several_inputs` and a method with
:attr:`attrib.Attributor.several_inputs`; both are checked here, before any pass.
A single array is never wrapped: the one-input code paths do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._errors import argument_error, shown

__all__ = ["several", "each", "as_tuple", "like", "check_batch", "first_shape"]


def several(inputs: object) -> bool:
    """Whether ``inputs`` is several inputs (a tuple of arrays), not one batch."""
    return isinstance(inputs, tuple)


def each(fn: Callable[[Any], Any], inputs: Any) -> Any:
    """``fn`` of each input of a tuple (a tuple back), or of one batch."""
    return tuple(fn(x) for x in inputs) if several(inputs) else fn(inputs)


def as_tuple(inputs: Any) -> tuple[Any, ...]:
    """``inputs`` as a tuple of inputs (one batch: a 1-tuple)."""
    return tuple(inputs) if several(inputs) else (inputs,)


def like(values: tuple[Any, ...], inputs: Any) -> Any:
    """``values`` (one per input) shaped as ``inputs`` was: the tuple, or its one element."""
    return tuple(values) if several(inputs) else values[0]


def check_batch(shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """``shapes`` of several inputs, after checking there is one and they share the batch size.

    >>> check_batch(((2, 3, 8, 8), (2, 5)))
    ((2, 3, 8, 8), (2, 5))
    """
    if not shapes:
        raise argument_error("inputs", "a non-empty tuple of arrays (one per model argument)",
                             shown("an empty tuple"))
    sizes = [shape[0] if shape else None for shape in shapes]
    if len(set(sizes)) != 1:
        raise argument_error(
            "inputs", "arrays with the same batch size (axis 0): one row per sample in each",
            shown(f"a tuple of arrays of shapes {[tuple(s) for s in shapes]} (batch sizes "
                  f"{sizes})"), "Every input of the model needs one entry per sample.")
    return shapes


def first_shape(model: Any, inputs: Any, method: str, supported: bool) -> tuple[int, ...]:
    """The shape of ``inputs`` (of the first input when several), checked for ``model`` and ``method``.

    Several inputs need a backend with :attr:`attrib.Model.several_inputs` and a
    method that explains them (``supported``); otherwise a clear error naming ``inputs``.
    """
    if not several(inputs):
        return tuple(model.input_shape(inputs))
    if not supported:
        raise argument_error(
            "inputs", f"one array for {method!r}", shown(f"a tuple of {len(inputs)} inputs"),
            "Several inputs are explained by the gradient methods (saliency, gradient_x_input, "
            "guided_backprop, deconvnet), integrated_gradients, smoothgrad and the CAMs that "
            "read only the layer (gradcam, gradcam_pp, xgradcam, layercam, hirescam, eigencam).")
    if not getattr(model, "several_inputs", False):
        raise argument_error(
            "inputs", f"one array: the {model.backend!r} backend runs models on one input",
            shown(f"a tuple of {len(inputs)} inputs"),
            "Backends opt in to several inputs with Model.several_inputs (torch and jax do).")
    shapes = check_batch(tuple(tuple(s) for s in model.input_shape(inputs)))
    return shapes[0]


def finite_all(values: Any) -> bool:
    """Whether every value of an array, or of each array of a tuple, is finite."""
    return all(bool(np.all(np.isfinite(v))) for v in as_tuple(values))
