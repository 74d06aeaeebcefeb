"""Checks on what a backend returned, before any method math runs on it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from ._errors import AttribWarning, argument_error, shown
from ._inputs import as_tuple
from ._model import GradientRequest, GradientResult

__all__ = ["check_finite", "check_finite_map", "zero_gradients", "warn_zero", "one_zero_warning"]

#: the zero-map findings of the current call when several methods share it (else None)
_COLLECTED: ContextVar[list[tuple[str, str]] | None] = ContextVar("attrib_zero_maps", default=None)


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
    inputs = as_tuple(result.input_gradient)
    gradients = {("input gradient" if len(inputs) == 1 else f"gradient at input {i}"): g
                 for i, g in enumerate(inputs)}
    gradients.update({f"gradient at layer {name!r}": g
                      for name, g in result.layer_gradients.items()})
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
    for part in as_tuple(attribution):
        if not np.all(np.isfinite(part)):
            raise argument_error(
                "inputs", f"values whose {method} map fits in {part.dtype}",
                shown(f"a map that overflows to inf in sample(s) {_bad_samples(part)[:10]}"),
                "Rescale the inputs (or run the model in float64).",
            )


def zero_gradients(request: GradientRequest, result: GradientResult) -> list[str]:
    """What the explained score does not depend on, from one pass: ``"the inputs"``, ``"layer 'x'"``.

    A true (vanilla-rule) input gradient, or a layer gradient (always the true
    one), that is exactly zero for every sample: every map built on it is zero.
    Input gradients under another rule are not judged (a rule may zero them).
    """
    found = []
    gradient = result.input_gradient
    if request.input_gradient and request.rule == "vanilla" and gradient is not None \
            and all(g.size and not np.any(g) for g in as_tuple(gradient)):
        found.append("the inputs")
    found += [f"layer {name!r}" for name, g in result.layer_gradients.items()
              if np.size(g) and not np.any(g)]
    return found


def warn_zero(method: str, causes: Sequence[str], stacklevel: int = 4) -> None:
    """Warn that ``method``'s map is zero everywhere because the score ignores ``causes``.

    Inside :func:`one_zero_warning` the finding is kept for its one warning instead.
    """
    collected = _COLLECTED.get()
    if collected is not None:
        collected.extend((method, cause) for cause in causes)
        return
    warnings.warn(_zero_message({method}, list(dict.fromkeys(causes))), AttribWarning,
                  stacklevel=stacklevel)


@contextmanager
def one_zero_warning(stacklevel: int = 5) -> Iterator[None]:
    """Collect the zero-map findings of several methods and warn once, on leaving."""
    collected: list[tuple[str, str]] = []
    token = _COLLECTED.set(collected)
    try:
        yield
    finally:
        _COLLECTED.reset(token)
    if collected:
        methods = {method for method, _ in collected}
        causes = list(dict.fromkeys(cause for _, cause in collected))
        warnings.warn(_zero_message(methods, causes), AttribWarning, stacklevel=stacklevel)


def _zero_message(methods: set[str], causes: list[str]) -> str:
    what = " or ".join(causes)
    return (
        f"the map of {', '.join(sorted(methods))} is zero everywhere: the explained score "
        f"does not depend on {what} (its gradient there is zero for every sample). Likely "
        "causes: a classifier head that is zero or frozen at zero (e.g. torchvision's "
        "vit_b_16(weights=None) zero-initialises its head: load weights), a target whose "
        "weights are all zero, or a layer that does not lead to the logits."
    )
