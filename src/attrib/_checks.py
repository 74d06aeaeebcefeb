"""Checks on what a backend returned, before any method math runs on it."""

from __future__ import annotations

import numpy as np

from ._errors import argument_error, shown
from ._model import GradientResult

__all__ = ["check_finite"]


def _bad_samples(array: np.ndarray) -> list[int]:
    """Indices of the samples (axis 0) holding a NaN or an infinity."""
    bad = ~np.isfinite(array.reshape(array.shape[0], -1) if array.ndim > 1 else array[:, None])
    return [int(i) for i in np.flatnonzero(bad.any(axis=1))]


def check_finite(result: GradientResult) -> None:
    """Raise an :class:`attrib.AttribError` naming ``model`` if the pass produced NaN or inf.

    A map computed from non-finite logits or gradients would be NaN (or
    silently zero after a ReLU), so it is refused: the logits first (the
    usual cause: broken weights, or inputs far outside the training range),
    then the input and layer gradients (e.g. ``sqrt`` or ``log`` at 0 inside
    the model).
    """
    logits = np.asarray(result.logits)
    if logits.size and not np.all(np.isfinite(logits)):
        samples = _bad_samples(logits)
        raise argument_error(
            "model", "finite logits",
            shown(f"NaN or inf in the logits of sample(s) {samples[:10]}"),
            "The model's forward pass produced them (check its weights and the scaling of "
            "the inputs); a map of a non-finite score would be NaN.",
        )
    gradients = {"input gradient": result.input_gradient, **{
        f"gradient at layer {name!r}": g for name, g in result.layer_gradients.items()}}
    for what, gradient in gradients.items():
        if gradient is not None and not np.all(np.isfinite(gradient)):
            raise argument_error(
                "model", "finite gradients",
                shown(f"NaN or inf in the {what} of sample(s) "
                      f"{_bad_samples(np.asarray(gradient))[:10]}"),
                "An operation in the model has no finite derivative at these inputs "
                "(e.g. sqrt or log at 0).",
            )


def check_finite_map(method: str, attribution: np.ndarray) -> None:
    """Raise naming ``inputs`` if a method's map overflowed its dtype (finite passes, inf map).

    Happens only for values near the dtype's range (e.g. a float32 gradient
    of 1e30 times an input of 1e10 in gradient x input).
    """
    if not np.all(np.isfinite(attribution)):
        raise argument_error(
            "inputs", f"values whose {method} map fits in {attribution.dtype}",
            shown(f"a map that overflows to inf in sample(s) {_bad_samples(attribution)[:10]}"),
            "Rescale the inputs (or run the model in float64).",
        )
