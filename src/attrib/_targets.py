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
from collections.abc import Mapping, Sequence

import numpy as np

from ._errors import AttribTypeError, AttribValueError, argument_error, check_choice, shown

__all__ = ["OBJECTIVES", "check_objective", "check_target", "resolve_targets", "objective_scores",
           "split_target", "complete_target_weights", "resolve_target_weights", "weights_targets",
           "weighted_scores", "weighted_score_gradient"]

OBJECTIVES: tuple[str, ...] = ("logit", "log_softmax", "softmax")

Target = int | Sequence[int] | np.ndarray | None


def check_objective(objective: object) -> str:
    """Return ``objective`` if it names one of :data:`OBJECTIVES`, else raise."""
    return check_choice("objective", objective, OBJECTIVES)


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


# -- target weights: explaining a weighted sum of class scores ------------------------------
#
# ``target`` may also be weights over the classes: a float array of shape (classes,) (the
# same weights for every sample) or (N, classes), or a mapping ``{class_index: weight}``.
# The score of sample ``n`` is then ``sum_k w[n, k] * objective(logits)[n, k]``: a one-hot
# row is the plain class target, ``{cat: 1, dog: -1}`` the contrast "cat rather than dog".
# Integer sequences keep meaning one class per sample; float arrays mean weights.
# ``Explanation.targets`` then holds each sample's class of largest weight and
# ``Explanation.target_weights`` the (N, classes) weights.


def split_target(target: object, n: int) -> tuple[np.ndarray | None, np.ndarray | dict[int, float] | None]:
    """``target`` as ``(class indices, None)`` or ``(None, weights)``.

    Weights are returned as a float64 array of shape ``(n, classes)`` (a
    ``(classes,)`` array is repeated for every sample) or, for a mapping, as a
    checked ``{class: weight}`` dict that :func:`complete_target_weights`
    expands once the number of classes is known.
    """
    if isinstance(target, Mapping):
        return None, _check_weight_mapping(target)
    if target is None or isinstance(target, (bool, numbers.Integral)):
        return check_target(target, n), None
    values = target
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # numpy arrays and framework tensors alike
    if isinstance(values, (list, tuple)):
        try:
            array = np.asarray(values)
        except ValueError:  # ragged nested lists
            array = np.asarray(values, dtype=object)
        if array.dtype.kind == "f" or (array.ndim == 2 and array.dtype.kind in "iu"):
            return None, _check_weight_array(array, n)
        if array.dtype.kind in "bO" or array.ndim > 1:
            raise argument_error(
                "target", "class indices, or target weights of shape (classes,) or (N, classes)",
                shown(f"an array of shape {array.shape} and dtype {array.dtype}"),
                "Weights must be numbers, e.g. np.array([0.0, 1.0, -1.0]).",
                kind=AttribTypeError)
    return check_target(target, n), None


def _check_weight_array(array: np.ndarray, n: int) -> np.ndarray:
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise argument_error(
            "target", f"target weights of shape (classes,) or ({n}, classes)",
            shown(f"an array of shape {array.shape}"))
    if array.ndim == 2 and array.shape[0] != n:
        raise argument_error(
            "target", f"one row of weights per sample, shape ({n}, classes)",
            shown(f"an array of shape {array.shape}"),
            "Pass a 1-D array (classes,) to use the same weights for every sample.")
    weights = array.astype(np.float64)
    if not np.all(np.isfinite(weights)):
        raise argument_error("target", "finite target weights",
                             shown(f"{int((~np.isfinite(weights)).sum())} NaN or infinite weights"))
    return np.array(np.broadcast_to(weights, (n, weights.shape[-1])))


def _check_weight_mapping(target: Mapping[object, object]) -> dict[int, float]:
    if not target:
        raise argument_error("target", "a non-empty mapping {class_index: weight}", dict(target))
    checked: dict[int, float] = {}
    for key, value in target.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or int(key) < 0:
            raise argument_error(
                "target", "a mapping whose keys are class indices (ints >= 0)", key,
                "Map class names to indices first, e.g. {labels.index('cat'): 1.0}.",
                kind=AttribTypeError if not isinstance(key, numbers.Integral) else AttribValueError)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise argument_error("target", "numeric weights in {class_index: weight}",
                                 shown(f"{value!r} for class {key}"), kind=AttribTypeError)
        if not np.isfinite(float(value)):
            raise argument_error("target", "finite weights", shown(f"{value!r} for class {key}"))
        checked[int(key)] = float(value)
    return checked


def complete_target_weights(weights: np.ndarray | Mapping[int, float], n: int,
                            classes: int) -> np.ndarray:
    """Weights as a float64 array (n, classes), checked against the number of classes."""
    if isinstance(weights, Mapping):
        bad = sorted(k for k in weights if k >= classes)
        if bad:
            raise argument_error(
                "target", f"class indices in [0, {classes - 1}] (the model has {classes} classes)",
                bad if len(bad) > 1 else bad[0])
        full = np.zeros((n, classes), dtype=np.float64)
        for k, w in weights.items():
            full[:, k] = w
        return full
    return resolve_target_weights(weights, np.zeros((n, classes)))


def resolve_target_weights(weights: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``weights`` checked against ``logits`` (N, classes): float64 of the same shape.

    Backends call this on :attr:`GradientRequest.target_weights`.
    """
    logits = np.asarray(logits)
    weights = np.asarray(weights)
    if weights.dtype.kind not in "fiu":
        raise argument_error("target_weights", "a float array (N, classes)",
                             shown(f"dtype {weights.dtype}"), kind=AttribTypeError)
    if logits.ndim != 2 or weights.shape != logits.shape:
        raise argument_error(
            "target", f"target weights of shape (classes,) or (N, classes) matching the model's "
            f"logits {tuple(logits.shape)}", shown(f"weights of shape {weights.shape}"),
            f"The model has {logits.shape[-1]} classes." if logits.ndim == 2 else None)
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)):
        raise argument_error("target", "finite target weights",
                             shown(f"{int((~np.isfinite(weights)).sum())} NaN or infinite weights"))
    return weights


def weights_targets(weights: np.ndarray) -> np.ndarray:
    """The class of largest weight of each sample (what ``Explanation.targets`` holds)."""
    return np.argmax(np.asarray(weights), axis=1).astype(np.int64)


def weighted_scores(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None,
                    objective: str) -> np.ndarray:
    """Per-sample scores (N,): ``objective_scores`` or, with weights, ``sum_k w[n,k] obj[n,k]``."""
    if weights is None:
        return objective_scores(logits, targets, objective)
    logits = np.asarray(logits, dtype=np.float64)
    if objective == "logit":
        values = logits
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        values = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        if objective == "softmax":
            values = np.exp(values)
    return (values * weights).sum(axis=1)


def weighted_score_gradient(logits: np.ndarray, weights: np.ndarray, objective: str) -> np.ndarray:
    """NumPy reference of d(sum_n sum_k w[n,k] objective(logits)[n,k]) / d logits, (N, classes)."""
    logits = np.asarray(logits, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if objective == "logit":
        return weights.copy()
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if objective == "log_softmax":
        return weights - probs * weights.sum(axis=1, keepdims=True)
    return probs * (weights - (weights * probs).sum(axis=1, keepdims=True))
