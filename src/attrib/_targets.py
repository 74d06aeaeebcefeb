"""Targets and objectives: which score each sample's gradient is taken of.

``target=None`` means the arg-max class of each sample, an ``int`` the same
class for every sample, a sequence of ``N`` ints one class per sample.
The score of sample ``i`` is then, by ``objective``:

- ``"logit"`` — ``logits[i, t_i]`` (the papers' choice, the default);
- ``"log_softmax"`` — ``log_softmax(logits)[i, t_i]`` (the negated
  cross-entropy the JAX seed differentiates);
- ``"softmax"`` — ``softmax(logits)[i, t_i]``.

The gradient pass differentiates the sum of the per-sample scores; samples do
not interact (for models in eval mode), so each sample's gradient is its own.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ._errors import AttribTypeError, argument_error, close_matches, shown

__all__ = ["OBJECTIVES", "check_objective", "check_target", "resolve_targets", "objective_scores"]

OBJECTIVES: tuple[str, ...] = ("logit", "log_softmax", "softmax")

Target = int | Sequence[int] | np.ndarray | None


def check_objective(objective: object) -> str:
    """Return ``objective`` if it names one of :data:`OBJECTIVES`, else raise."""
    if isinstance(objective, str) and objective in OBJECTIVES:
        return objective
    near = close_matches(str(objective), OBJECTIVES)
    raise argument_error(
        "objective",
        f"one of {list(OBJECTIVES)}",
        objective,
        f"Did you mean {near[0]!r}?" if near else None,
    )


def check_target(target: object, n: int) -> np.ndarray | None:
    """Validate ``target`` for a batch of ``n`` samples.

    Returns ``None`` (arg-max per sample) or an int64 array of shape ``(n,)``.
    The class range is checked later, by :func:`resolve_targets`, once the
    number of classes is known.
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise argument_error("target", "None, an int or a sequence of ints", target,
                             kind=AttribTypeError)
    if isinstance(target, numbers.Integral):
        return np.full((n,), int(target), dtype=np.int64)
    if hasattr(target, "tolist") and not isinstance(target, (list, tuple)):
        # numpy arrays and framework tensors (on any device) alike
        target = target.tolist()
        if isinstance(target, int):
            return np.full((n,), target, dtype=np.int64)
    if isinstance(target, (list, tuple)):
        if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in target):
            raise argument_error("target", "a sequence of ints (class indices)", target,
                                 kind=AttribTypeError)
        if len(target) != n:
            raise argument_error(
                "target",
                f"one class per sample ({n} ints for a batch of {n})",
                shown(f"{len(target)} ints: {list(target)!r}"),
                "Pass an int to use the same class for every sample.",
            )
        return np.asarray(target, dtype=np.int64).reshape(n)
    raise argument_error("target", "None, an int or a sequence of ints", target,
                         kind=AttribTypeError)


def resolve_targets(target: np.ndarray | None, logits: np.ndarray) -> np.ndarray:
    """The class of each sample: ``target`` checked against ``logits`` (N, C), or its arg-max."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise argument_error(
            "model",
            "a classifier returning logits of shape (N, classes)",
            shown(f"an output of shape {logits.shape}"),
        )
    n, classes = logits.shape
    if target is None:
        return np.argmax(logits, axis=1).astype(np.int64)
    bad = (target < 0) | (target >= classes)
    if bad.any():
        raise argument_error(
            "target",
            f"class indices in [0, {classes - 1}] (the model has {classes} classes)",
            target[bad].tolist() if bad.sum() > 1 else int(target[bad][0]),
        )
    return target


def objective_scores(logits: np.ndarray, targets: np.ndarray, objective: str) -> np.ndarray:
    """NumPy reference of the per-sample scores, shape (N,)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(targets))
    if objective == "logit":
        return logits[rows, targets]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sm = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    if objective == "log_softmax":
        return log_sm[rows, targets]
    return np.exp(log_sm[rows, targets])
