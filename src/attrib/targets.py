"""Targets beyond a class index: masks over dense outputs, weights, cosine to a reference, boxes.

``target=`` of :func:`attrib.explain` (and of every method's ``attribute``)
takes, besides class indices and class weights, one of these objects. Each
says which scalar score of each sample is explained:

- :class:`Mask` — a category's output summed (or averaged) over a mask of a
  dense output (N, C, H, W) (torch) / (N, H, W, C) (Flax): segmentation
  (pytorch-grad-cam's ``SemanticSegmentationTarget`` is ``reduce="sum"``,
  xplique's segmentation operator ``"mean"``);
- :class:`Weights` — ``sum(weights * output)`` over an output of any shape
  (regression, several outputs; class weights are its (N, classes) case);
- :class:`Cosine` — the cosine similarity of each output vector (N, D) with a
  reference (D,) or (N, D) (embedding models);
- :class:`Boxes` — for each reference box, the IoU plus the score of the
  best-overlapping predicted box of the same label, when that IoU exceeds
  ``iou`` (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``), on torchvision
  detection models (a list of N ``{"boxes", "labels", "scores"}`` mappings)
  and on dense ``(boxes (N, P, 4), logits (N, P, classes))`` outputs.

The contract (how a backend evaluates a target natively)
---------------------------------------------------------
A target is framework-free. A backend, in its gradient pass:

1. picks the output with :meth:`Target.select` (``output=`` of the backend
   first, then the target's default: the logits rule of
   :mod:`attrib._outputs`, or the whole output for :class:`Boxes`);
2. checks it with :meth:`Target.check` on anything with ``.shape`` (NumPy
   arrays, tensors, ``jax.ShapeDtypeStruct``): a clear
   :class:`attrib.AttribError` naming the argument otherwise;
3. applies the objective along :meth:`Target.class_axis` (only targets whose
   :attr:`Target.objectives` allow it);
4. converts :meth:`Target.data` (NumPy arrays) to native arrays (program
   arguments under ``jax.jit``, so new data reuse the compiled program);
5. calls :meth:`Target.score` with its array namespace ``xp`` (``numpy``,
   ``torch``, ``jax.numpy``): each score is written once against this subset
   of the array API, which all three implement with the same spelling —
   arithmetic, comparison and integer-array indexing, ``xp.sum(x, axis=)``,
   ``xp.sqrt``, ``xp.maximum``, ``xp.minimum``, ``xp.clip(x, min=)``,
   ``xp.where``, ``xp.argmax(x, axis=)``, ``xp.arange``, ``xp.zeros_like``
   — and differentiates the sum of the (N,) scores.

A backend without automatic differentiation (``examples/attrib-numpy``)
seeds its backward pass with :meth:`Target.score_gradient`, the NumPy
reference of d sum(score) / d output; the conformance suite checks every
backend against it.
"""

from __future__ import annotations

import copy
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._errors import AttribTypeError, argument_error, check_choice, shown
from ._outputs import select_output

__all__ = ["Target", "Mask", "Weights", "Cosine", "Boxes", "REDUCTIONS", "box_iou",
           "reference_scores"]

REDUCTIONS: tuple[str, ...] = ("sum", "mean")


def _channels_last(layout: str) -> bool:
    return layout.upper().startswith("N") and layout.upper().endswith("C") and layout != "NC"


class Target(ABC):
    """A score per sample computed from a model's output; see the module's contract."""

    #: objectives the target allows (``"logit"``: the output as it is)
    objectives: tuple[str, ...] = ("logit",)

    def select(self, value: Any, output: Any, is_array: Callable[[Any], bool]) -> Any:
        """The part of the model's output ``value`` the score reads (``output=`` first).

        By default the logits rule of :mod:`attrib._outputs`, and a mapping's
        ``"out"`` entry when it has no ``"logits"`` (torchvision's segmentation models).
        """
        if output is None and isinstance(value, Mapping) and "logits" not in value \
                and "out" in value:
            return value["out"]
        return select_output(value, output, is_array)

    @abstractmethod
    def check(self, output: Any, n: int, layout: str) -> None:
        """Raise a clear :class:`attrib.AttribError` if ``output`` (shapes) does not fit."""

    @abstractmethod
    def data(self, output: Any, n: int, layout: str) -> dict[str, np.ndarray]:
        """The target's arrays (NumPy) for this output, passed to :meth:`score` as native arrays."""

    @abstractmethod
    def score(self, output: Any, data: Mapping[str, Any], xp: Any, layout: str) -> Any:
        """The per-sample scores, shape (N,), in the namespace ``xp`` of ``output``."""

    def score_gradient(self, output: np.ndarray, layout: str) -> np.ndarray:
        """NumPy reference of d sum_n score_n / d output, the shape of ``output`` (float64)."""
        raise argument_error(
            "target", "a target with a NumPy reference gradient for this backend",
            shown(type(self).__name__),
            "This backend has no automatic differentiation; use the torch or jax backend.")

    def labels(self, n: int) -> np.ndarray:
        """What ``Explanation.targets`` holds, (N,) int64: a category, or -1."""
        return np.full((n,), -1, dtype=np.int64)

    def rows(self, samples: np.ndarray, n: int) -> Target:
        """This target for a batch whose row ``i`` is sample ``samples[i]`` of ``n``.

        Multi-pass methods (occlusion, integrated gradients, SmoothGrad) run
        many rows per sample; per-sample parts (categories, masks, reference
        vectors, boxes, weights) are indexed, shared parts kept.
        """
        return self

    def class_axis(self, layout: str, ndim: int) -> int:
        """The axis the objective normalises over (channels: 1 first, -1 last)."""
        return -1 if _channels_last(layout) else 1

    def key(self) -> tuple[Any, ...]:
        """What decides the traced program besides :meth:`data` (static configuration)."""
        return (type(self).__name__,)

    def check_objective(self, objective: str) -> None:
        """A clear error for an objective this target does not allow."""
        if objective not in self.objectives:
            raise argument_error(
                "objective", f"one of {list(self.objectives)} with a {type(self).__name__} target",
                objective, "Pass output= a callable that applies it to the model's output.")


def reference_scores(target: Target, output: np.ndarray, objective: str = "logit",
                     layout: str = "NCHW") -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: the scores (N,) and d sum(scores) / d output of ``target`` on ``output``.

    Checks the target and the objective as a backend does; the objective
    (``log_softmax``, ``softmax``) is applied along :meth:`Target.class_axis`.
    A backend without automatic differentiation seeds its backward pass
    with the gradient (``examples/attrib-numpy`` does).
    """
    target.check_objective(objective)
    output = np.asarray(output, dtype=np.float64)
    n = len(output)
    target.check(output, n, layout)
    axis = target.class_axis(layout, output.ndim)
    values = output
    if objective != "logit":
        shifted = output - output.max(axis=axis, keepdims=True)
        log_sm = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        values = log_sm if objective == "log_softmax" else np.exp(log_sm)
    scores = np.asarray(target.score(values, target.data(output, n, layout), np, layout),
                        dtype=np.float64)
    grad = target.score_gradient(values, layout)
    if objective == "log_softmax":
        grad = grad - np.exp(values) * grad.sum(axis=axis, keepdims=True)
    elif objective == "softmax":
        grad = values * (grad - (grad * values).sum(axis=axis, keepdims=True))
    return scores, grad


# -- helpers -----------------------------------------------------------------------------------
def _shape(array: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(array, "shape", ()))


def _float_array(name: str, value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise argument_error(name, what, value, kind=AttribTypeError) from error
    if array.dtype.kind not in "fiub":
        raise argument_error(name, what, shown(f"an array of dtype {array.dtype}"),
                             kind=AttribTypeError)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise argument_error(name, f"finite values ({what})",
                             shown(f"{int((~np.isfinite(array)).sum())} NaN or infinite values"))
    return array


def _categories(name: str, value: Any) -> int | np.ndarray:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if int(value) < 0:
            raise argument_error(name, "a category index >= 0", value)
        return int(value)
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 0
            for v in value):
        return np.asarray(value, dtype=np.int64)
    raise argument_error(name, "a category index (int >= 0) or one per sample", value,
                         kind=AttribTypeError)


def _per_sample(name: str, value: int | np.ndarray, n: int) -> np.ndarray:
    if isinstance(value, int):
        return np.full((n,), value, dtype=np.int64)
    if len(value) != n:
        raise argument_error(name, f"one category per sample ({n})",
                             shown(f"{len(value)}: {value.tolist()}"),
                             "Pass an int to use the same category for every sample.")
    return value


def _dense_output(name: str, output: Any, what: str, suggestion: str) -> tuple[int, ...]:
    shape = _shape(output)
    if not hasattr(output, "shape") or len(shape) < 3:
        given = f"an output of shape {shape}" if hasattr(output, "shape") else \
            f"an output of type {type(output).__name__}"
        raise argument_error(name, what, shown(given), suggestion)
    return shape


def _spatial(shape: tuple[int, ...], layout: str) -> tuple[tuple[int, ...], int]:
    """(spatial shape, channels) of a dense output's ``shape`` in ``layout``."""
    if _channels_last(layout):
        return shape[1:-1], shape[-1]
    return shape[2:], shape[1]


# -- Weights -----------------------------------------------------------------------------------
class Weights(Target):
    """The weighted sum of a model's output: ``score_n = sum(weights[n] * output[n])``.

    Parameters
    ----------
    weights : array, shape of the output (N, ...) or of one sample's output (...)
        Finite numbers; a per-sample shape is used for every sample. On a
        classifier, (classes,) or (N, classes): today's class weights (a
        one-hot row is the class target). The objective (``log_softmax``,
        ``softmax``) applies along the class axis (1 in torch, last in Flax).

    Examples
    --------
    >>> Weights([1.0, -1.0]).data(np.zeros((2, 2)), 2, "NCHW")["weights"].tolist()
    [[1.0, -1.0], [1.0, -1.0]]
    """

    objectives = ("logit", "log_softmax", "softmax")

    def __init__(self, weights: Any) -> None:
        self.weights = _float_array("weights", weights, "an array of numbers")
        if self.weights.ndim == 0:
            raise argument_error("weights", "an array with one weight per output value",
                                 shown(f"a scalar {float(self.weights)}"),
                                 "e.g. np.ones(output.shape[1:]) for the sum of the outputs.")
        self._batched: bool | None = None  # set by check(): weights (N, ...) or (...)

    def check(self, output: Any, n: int, layout: str) -> None:
        shape = _shape(output)
        if not hasattr(output, "shape"):
            raise argument_error("output", "one array (N, ...) for Weights",
                                 shown(f"an output of type {type(output).__name__}"),
                                 "Pass output= (a key, an index or a callable) to pick it.")
        if self.weights.shape not in (shape, shape[1:]):
            raise argument_error(
                "weights", f"an array of the output's shape {shape} or {shape[1:]}",
                shown(f"shape {self.weights.shape}"))
        self._batched = self.weights.shape == shape  # one row per sample (for rows())

    def data(self, output: Any, n: int, layout: str) -> dict[str, np.ndarray]:
        shape = _shape(output)
        return {"weights": np.array(np.broadcast_to(self.weights, shape))}

    def score(self, output: Any, data: Mapping[str, Any], xp: Any, layout: str) -> Any:
        values = output * data["weights"]
        return xp.sum(values, axis=tuple(range(1, len(values.shape))))

    def score_gradient(self, output: np.ndarray, layout: str) -> np.ndarray:
        return np.array(np.broadcast_to(self.weights, np.shape(output)), dtype=np.float64)

    def rows(self, samples: np.ndarray, n: int) -> Target:
        if self._batched is None:
            raise argument_error("weights", "weights checked against the model's output first",
                                 shown("rows of unchecked weights"))
        if not self._batched:
            return self
        out = copy.copy(self)
        out.weights = self.weights[np.asarray(samples)]
        return out

    def labels(self, n: int) -> np.ndarray:
        if self.weights.ndim in (1, 2) and self.weights.shape[-1] > 0:
            rows = np.broadcast_to(self.weights, (n, self.weights.shape[-1])) \
                if self.weights.ndim == 1 else self.weights
            if len(rows) == n:
                return np.argmax(rows, axis=1).astype(np.int64)
        return super().labels(n)

    def __repr__(self) -> str:
        return f"Weights(shape={self.weights.shape})"


# -- Mask --------------------------------------------------------------------------------------
class Mask(Target):
    """A category's output over a mask of a dense output (segmentation).

    ``score_n = sum_{h,w} mask[n, h, w] * output[n, category_n, h, w]``
    (``reduce="sum"``, pytorch-grad-cam's ``SemanticSegmentationTarget``) or
    that sum divided by ``sum(mask[n])`` (``"mean"``, xplique's). Outputs
    (N, C, H, W) in torch, (N, H, W, C) in Flax (any number of spatial axes).

    Parameters
    ----------
    category : int or sequence of N ints
        The output channel (class) explained, per sample or for all.
    mask : array (H, W) or (N, H, W) of bool or float, optional
        Where the category counts, at the output's resolution; ``None``:
        everywhere. Finite, with at least one non-zero value per sample.
    reduce : {"sum", "mean"}
    """

    objectives = ("logit", "log_softmax", "softmax")

    def __init__(self, category: Any, mask: Any = None, reduce: str = "sum") -> None:
        self.category = _categories("category", category)
        self.reduce = check_choice("reduce", reduce, REDUCTIONS)
        self.mask = None if mask is None else _float_array("mask", mask, "a mask of bools or numbers")
        if self.mask is not None and self.mask.ndim == 0:
            raise argument_error("mask", "an array (H, W) or (N, H, W)", shown("a scalar"))
        self._batched = False  # set by check(): a mask per sample (for rows())

    def key(self) -> tuple[Any, ...]:
        return ("Mask", self.reduce)

    def check(self, output: Any, n: int, layout: str) -> None:
        shape = _dense_output(
            "target", output, "a dense output (N, C, H, W) for Mask" if not _channels_last(layout)
            else "a dense output (N, H, W, C) for Mask",
            "Mask explains segmentation outputs; for a classifier's (N, classes) pass a class "
            "index or Weights.")
        spatial, channels = _spatial(shape, layout)
        categories = _per_sample("category", self.category, n)
        if categories.max() >= channels:
            raise argument_error("category", f"categories in [0, {channels - 1}] (the output has "
                                 f"{channels} channels)", int(categories.max()))
        if self.mask is not None:
            self._batched = self.mask.shape == (n, *spatial) and self.mask.shape != spatial
            if self.mask.shape not in (spatial, (n, *spatial)):
                raise argument_error(
                    "mask", f"a mask of the output's spatial shape {spatial} or {(n, *spatial)}",
                    shown(f"shape {self.mask.shape}"),
                    "The mask is at the output's resolution (output shape "
                    f"{shape}); resize it first.")
            per = np.broadcast_to(self.mask, (n, *spatial)).reshape(n, -1)
            empty = np.flatnonzero(~np.any(per != 0, axis=1))
            if len(empty):
                raise argument_error("mask", "at least one non-zero value per sample",
                                     shown(f"an empty mask for sample(s) {empty.tolist()}"))

    def data(self, output: Any, n: int, layout: str) -> dict[str, np.ndarray]:
        shape = _shape(output)
        spatial, channels = _spatial(shape, layout)
        categories = _per_sample("category", self.category, n)
        mask = np.ones(spatial) if self.mask is None else self.mask
        mask = np.broadcast_to(mask, (n, *spatial)).astype(np.float64)
        if self.reduce == "mean":
            mask = mask / mask.reshape(n, -1).sum(axis=1).reshape((n,) + (1,) * len(spatial))
        onehot = np.eye(channels)[categories]  # (N, C)
        if _channels_last(layout):
            weights = mask[..., None] * onehot.reshape((n,) + (1,) * len(spatial) + (channels,))
        else:
            weights = mask[:, None] * onehot.reshape((n, channels) + (1,) * len(spatial))
        return {"weights": weights}

    def score(self, output: Any, data: Mapping[str, Any], xp: Any, layout: str) -> Any:
        values = output * data["weights"]
        return xp.sum(values, axis=tuple(range(1, len(values.shape))))

    def score_gradient(self, output: np.ndarray, layout: str) -> np.ndarray:
        return self.data(output, len(output), layout)["weights"]

    def labels(self, n: int) -> np.ndarray:
        return _per_sample("category", self.category, n)

    def rows(self, samples: np.ndarray, n: int) -> Target:
        samples = np.asarray(samples)
        out = copy.copy(self)
        if not isinstance(self.category, int):
            out.category = _per_sample("category", self.category, n)[samples]
        if self._batched:
            assert self.mask is not None
            out.mask = self.mask[samples]
        return out

    def __repr__(self) -> str:
        mask = None if self.mask is None else f"<{self.mask.shape}>"
        return f"Mask({self.category!r}, mask={mask}, reduce={self.reduce!r})"


# -- Cosine ------------------------------------------------------------------------------------
_NORM_FLOOR = 1e-24  # squared norm below which an output vector counts as zero


class Cosine(Target):
    """Cosine similarity of each output vector with a reference (embedding models).

    ``score_n = <output[n], r_n> / (|output[n]| |r_n|)`` for an output (N, D).

    Parameters
    ----------
    reference : array (D,) or (N, D)
        A non-zero reference vector, for every sample or one per sample.
    """

    def __init__(self, reference: Any) -> None:
        ref = _float_array("reference", reference, "a vector (D,) or (N, D)")
        if ref.ndim not in (1, 2) or ref.shape[-1] == 0:
            raise argument_error("reference", "a vector (D,) or (N, D)", shown(f"shape {ref.shape}"))
        norms = np.linalg.norm(ref, axis=-1)
        if np.any(norms == 0):
            raise argument_error("reference", "non-zero reference vectors",
                                 shown("a vector of zeros"), "Cosine similarity to 0 is undefined.")
        self.reference = ref

    def check(self, output: Any, n: int, layout: str) -> None:
        shape = _shape(output)
        if not hasattr(output, "shape") or len(shape) != 2:
            raise argument_error(
                "target", "an output of vectors (N, D) for Cosine",
                shown(f"an output of shape {shape}" if hasattr(output, "shape")
                      else f"an output of type {type(output).__name__}"),
                "Pass output= a callable that flattens or pools the embedding to (N, D).")
        if self.reference.shape[-1] != shape[1] or (
                self.reference.ndim == 2 and self.reference.shape[0] != n):
            raise argument_error(
                "reference", f"a vector ({shape[1]},) or ({n}, {shape[1]}) for an output of "
                f"shape {shape}", shown(f"shape {self.reference.shape}"))

    def data(self, output: Any, n: int, layout: str) -> dict[str, np.ndarray]:
        unit = self.reference / np.linalg.norm(self.reference, axis=-1, keepdims=True)
        return {"reference": np.array(np.broadcast_to(unit, (n, unit.shape[-1])))}

    def score(self, output: Any, data: Mapping[str, Any], xp: Any, layout: str) -> Any:
        dot = xp.sum(output * data["reference"], axis=1)
        return dot / xp.sqrt(xp.clip(xp.sum(output * output, axis=1), min=_NORM_FLOOR))

    def score_gradient(self, output: np.ndarray, layout: str) -> np.ndarray:
        out = np.asarray(output, dtype=np.float64)
        ref = self.data(out, len(out), layout)["reference"]
        sq = np.maximum((out * out).sum(axis=1, keepdims=True), _NORM_FLOOR)
        norm = np.sqrt(sq)
        dot = (out * ref).sum(axis=1, keepdims=True)
        grad = ref / norm
        grad = grad - np.where(sq > _NORM_FLOOR, dot * out / (norm * sq), 0.0)
        return np.asarray(grad)

    def rows(self, samples: np.ndarray, n: int) -> Target:
        if self.reference.ndim == 1:
            return self
        out = copy.copy(self)
        out.reference = self.reference[np.asarray(samples)]
        return out

    def __repr__(self) -> str:
        return f"Cosine(reference=<{self.reference.shape}>)"


# -- Boxes -------------------------------------------------------------------------------------
def box_iou(a: Any, b: Any, xp: Any) -> Any:
    """IoU of boxes ``a`` (..., K, 1, 4) and ``b`` (..., 1, P, 4) as (x1, y1, x2, y2): (..., K, P).

    >>> box_iou(np.array([[[0., 0, 2, 2]]]), np.array([[[1., 1, 3, 3]]]), np).tolist()
    [[0.14285714285714285]]
    """
    width = xp.clip(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), min=0.0)
    height = xp.clip(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), min=0.0)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def _is_mapping_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, Mapping) for v in value)


class Boxes(Target):
    """Detection boxes: each reference box's IoU plus the score of its predicted box.

    For each reference box ``b`` of label ``l`` of sample ``n``, the predicted
    boxes of label ``l`` are compared with ``b``; the best-overlapping one
    counts if its IoU exceeds ``iou``, adding ``IoU + score``. The sum over
    the reference boxes is the sample's score (pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget``, which takes the best-overlapping box of any
    label and counts it if the label matches: the two agree whenever that box
    has the reference's label, e.g. for the model's own detections).

    Model outputs: a list of N mappings with ``"boxes"`` (P, 4), ``"labels"``
    (P,) and ``"scores"`` (P,) (torchvision's detection models), or a pair
    ``(boxes (N, P, 4), logits (N, P, classes))`` whose box labels are the
    arg-max class and whose score for label ``l`` is ``logits[n, p, l]``.
    Boxes are (x1, y1, x2, y2) in the output's coordinates.

    Parameters
    ----------
    boxes : array (K, 4), or a sequence of N arrays (K_n, 4)
        Reference boxes, for every sample or per sample.
    labels : sequence of K ints, or a sequence of N such sequences
        One label per reference box.
    iou : float
        The overlap a predicted box needs, in [0, 1) (default 0.5).
    """

    def __init__(self, boxes: Any, labels: Any, iou: float = 0.5) -> None:
        if isinstance(iou, bool) or not isinstance(iou, numbers.Real) or not 0 <= float(iou) < 1:
            raise argument_error("iou", "an IoU threshold in [0, 1)", iou)
        self.iou: float = float(iou)
        per_sample = isinstance(boxes, (list, tuple)) and bool(boxes) and all(
            np.ndim(_numpy(b)) == 2 for b in boxes)
        box_list = [_numpy(b) for b in boxes] if per_sample else [_numpy(boxes)]
        label_list = list(labels) if per_sample else [labels]
        if per_sample and (not isinstance(labels, (list, tuple)) or len(labels) != len(box_list)):
            raise argument_error("labels", f"one sequence of labels per sample ({len(box_list)})",
                                 labels, kind=AttribTypeError)
        self.boxes: list[np.ndarray] = []
        self.box_labels: list[np.ndarray] = []
        for b, lab in zip(box_list, label_list):
            array = _float_array("boxes", b, "boxes (K, 4) as (x1, y1, x2, y2)")
            if array.ndim != 2 or array.shape[1] != 4:
                raise argument_error("boxes", "boxes (K, 4) as (x1, y1, x2, y2)",
                                     shown(f"shape {array.shape}"))
            if np.any(array[:, 2] <= array[:, 0]) or np.any(array[:, 3] <= array[:, 1]):
                raise argument_error("boxes", "boxes with x2 > x1 and y2 > y1",
                                     shown(f"{array.tolist()[:4]}"))
            lab = _numpy(lab)
            lab_array = np.asarray(lab)
            if lab_array.ndim != 1 or lab_array.dtype.kind not in "iu" or np.any(lab_array < 0):
                raise argument_error("labels", "one label (int >= 0) per box",
                                     shown(f"{lab_array.tolist()!r}"), kind=AttribTypeError)
            if len(lab_array) != len(array):
                raise argument_error("labels", f"one label per box ({len(array)} boxes)",
                                     shown(f"{len(lab_array)} labels"))
            self.boxes.append(array)
            self.box_labels.append(lab_array.astype(np.int64))
        self.per_sample: bool = per_sample

    def key(self) -> tuple[Any, ...]:
        return ("Boxes", self.iou)

    def select(self, value: Any, output: Any, is_array: Callable[[Any], bool]) -> Any:
        return value if output is None else select_output(value, output, is_array)

    def _kind(self, output: Any) -> str:
        if _is_mapping_list(output):
            return "mappings"
        if isinstance(output, (list, tuple)) and len(output) == 2 and all(
                hasattr(o, "shape") for o in output):
            return "dense"
        return "none"

    def check(self, output: Any, n: int, layout: str) -> None:
        kind = self._kind(output)
        if kind == "none":
            given = (f"an output of shape {_shape(output)}" if hasattr(output, "shape")
                     else f"an output of type {type(output).__name__}")
            raise argument_error(
                "target", "a detection model's output for Boxes: a list of N mappings with "
                "'boxes', 'labels' and 'scores', or (boxes (N, P, 4), logits (N, P, classes))",
                shown(given), "Pass output= a callable returning one of these.")
        if self.per_sample and len(self.boxes) != n:
            raise argument_error("boxes", f"one array of boxes per sample ({n})",
                                 shown(f"{len(self.boxes)} arrays"))
        if kind == "mappings":
            if len(output) != n:
                raise argument_error("model", f"one detection mapping per image ({n})",
                                     shown(f"{len(output)} mappings"))
            for entry in output:
                missing = [k for k in ("boxes", "labels", "scores") if k not in entry]
                if missing:
                    raise argument_error("target", "mappings with 'boxes', 'labels', 'scores'",
                                         shown(f"a mapping without {missing}"))
            return
        boxes, logits = output
        bs, ls = _shape(boxes), _shape(logits)
        if len(bs) != 3 or bs[2] != 4 or len(ls) != 3 or ls[:2] != bs[:2] or bs[0] != n:
            raise argument_error(
                "target", f"(boxes ({n}, P, 4), logits ({n}, P, classes)) for Boxes",
                shown(f"shapes {bs} and {ls}"))
        top = max(int(lab.max(initial=-1)) for lab in self.box_labels)
        if top >= ls[2]:
            raise argument_error("labels", f"labels in [0, {ls[2] - 1}]", top)

    def data(self, output: Any, n: int, layout: str) -> dict[str, np.ndarray]:
        boxes = self.boxes if self.per_sample else self.boxes * n
        labels = self.box_labels if self.per_sample else self.box_labels * n
        k = max(1, max(len(b) for b in boxes))
        ref = np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (n, k, 1))
        lab = np.zeros((n, k), dtype=np.int64)
        valid = np.zeros((n, k), dtype=np.float64)
        for i, (b, lb) in enumerate(zip(boxes, labels)):
            ref[i, :len(b)], lab[i, :len(b)], valid[i, :len(b)] = b, lb, 1.0
        return {"boxes": ref, "labels": lab, "valid": valid}

    def score(self, output: Any, data: Mapping[str, Any], xp: Any, layout: str) -> Any:
        kind = self._kind(output)
        ref, lab, valid = data["boxes"], data["labels"], data["valid"]
        k = int(ref.shape[1])
        rows = xp.arange(k)
        scores = []
        for i in range(int(ref.shape[0])):
            if kind == "mappings":
                boxes, labels = output[i]["boxes"], output[i]["labels"]
                if int(boxes.shape[0]) == 0:
                    scores.append(xp.sum(valid[i]) * 0.0)
                    continue
            else:
                boxes, logits = output[0][i], output[1][i]
                labels = xp.argmax(logits, axis=-1)
            iou = box_iou(ref[i][:, None, :], boxes[None, :, :], xp)  # (K, P)
            same = labels[None, :] == lab[i][:, None]
            masked = xp.where(same, iou, xp.zeros_like(iou) - 1.0)
            best = xp.argmax(masked, axis=1)  # (K,)
            overlap = masked[rows, best]
            own = output[i]["scores"][best] if kind == "mappings" else logits[best, lab[i]]
            counted = (overlap > self.iou) & (valid[i] > 0)
            value = xp.where(counted, overlap + own, xp.zeros_like(overlap))
            scores.append(xp.sum(value))
        return xp.stack(scores) if hasattr(xp, "stack") else xp.asarray(scores)

    def rows(self, samples: np.ndarray, n: int) -> Target:
        if not self.per_sample:
            return self
        out = copy.copy(self)
        out.boxes = [self.boxes[int(i)] for i in samples]
        out.box_labels = [self.box_labels[int(i)] for i in samples]
        return out

    def __repr__(self) -> str:
        return f"Boxes({sum(len(b) for b in self.boxes)} boxes, iou={self.iou})"


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value
