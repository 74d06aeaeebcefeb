"""What multi-pass methods share: the explained score, chunking, padding for compiled backends.

Integrated gradients, SmoothGrad and occlusion run many images (interpolated,
noisy, occluded) through :meth:`attrib.Model.gradients` / :meth:`attrib.Model.forward`.
They go through the backend in chunks of at most ``batch_size`` rows, all of one
size but the last (``ceil(total / ceil(total / batch_size))`` rows: no small
remainder chunk); on a backend that compiles per input shape
(:attr:`attrib.Model.compiles_per_shape`, jax) the last chunk is padded with copies
of its last row and the padding dropped, so each method compiles once per input
shape.

The default ``batch_size`` (``None``) is sized from a memory budget
(:func:`default_batch_size`): as many rows as fit in :data:`CHUNK_BYTES` (3 MiB) of
model input, between 1 and :data:`MAX_CHUNK_ROWS` (256). A network's activation
memory grows with its input's size, so the peak memory of a call is bounded by
the chunk, not by the number of images, steps or samples: e.g. 64 rows of
3 x 64 x 64 float32 images (ResNet-50: about 0.6 GiB for a gradient pass), 5 rows
of 3 x 224 x 224. On a 2-core CPU those sizes are at the flat bottom of ResNet-50's
time per image against rows per pass (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import numbers
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._checks import warn_zero
from .._errors import AttribTypeError, argument_error
from .._explanation import Explanation
from .._inputs import as_tuple, first_shape, like, several
from .._layout import spatial_axes as layout_spatial_axes
from .._model import GradientRequest, GradientResult, Model
from .._targets import resolve_target_weights, resolve_targets, weighted_scores, weights_targets
from ..targets import Target


@dataclass(frozen=True)
class Explained:
    """The score explained for each of N samples: classes, target weights (N, classes), or a target.

    With an :class:`attrib.targets.Target`, "logits" are the per-row scores
    as (N, 1) (see :meth:`forward`): the output a target reads need not be
    one array.
    """

    targets: np.ndarray
    weights: np.ndarray | None
    objective: str
    target: Target | None = None

    def rows(self, samples: np.ndarray) -> Explained:
        """The explained score of each row of a batch whose row ``i`` is sample ``samples[i]``."""
        weights = None if self.weights is None else self.weights[samples]
        target = None if self.target is None else self.target.rows(samples, len(self.targets))
        return Explained(self.targets[samples], weights, self.objective, target)

    def as_target(self) -> Any:
        """What :meth:`Attributor.attribute` takes as ``target`` for these rows."""
        if self.target is not None:
            return self.target
        return self.targets if self.weights is None else self.weights

    def request(self, inputs: Any, **needs: Any) -> GradientRequest:
        """A gradient request for ``inputs`` (one row per entry) explaining this score."""
        return GradientRequest(inputs=inputs, targets=self.targets, objective=self.objective,
                               target_weights=self.weights, target=self.target, **needs)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """The per-row scores (N,) of ``logits``, float64."""
        if self.target is not None:
            return np.asarray(logits, dtype=np.float64)[:, 0]
        return weighted_scores(logits, self.targets, self.weights, self.objective)

    def forward(self, model: Model, inputs: Any) -> np.ndarray:
        """``model.forward(inputs)``; with a target, its scores (N, 1) from a pass without backward."""
        if self.target is None:
            return model.forward(inputs)
        result = model.gradients(self.request(inputs, input_gradient=False))
        assert result.scores is not None, "the backend returned no scores for the target"
        return np.asarray(result.scores, dtype=np.float64)[:, None]


#: bytes of model input per chunk when ``batch_size`` is not given
CHUNK_BYTES: int = 3 * 2**20
#: most rows per chunk when ``batch_size`` is not given (tiny inputs)
MAX_CHUNK_ROWS: int = 256


def default_batch_size(x: np.ndarray) -> int:
    """Rows per chunk for inputs like ``x`` (N, ...): ``CHUNK_BYTES`` of input, 1 to 256.

    >>> default_batch_size(np.zeros((8, 3, 64, 64), np.float32))
    64
    >>> default_batch_size(np.zeros((1, 3, 224, 224), np.float32))
    5
    """
    arrays = as_tuple(x)  # several inputs: a row is one sample of each
    row_bytes = max(1, sum(a[0].nbytes for a in arrays)) if len(arrays[0]) else 1
    return int(min(MAX_CHUNK_ROWS, max(1, CHUNK_BYTES // row_bytes)))


def check_batch_size(value: object) -> int | None:
    """``None`` (sized from memory, :func:`default_batch_size`) or an int >= 1."""
    return None if value is None else check_count("batch_size", value)


@dataclass(frozen=True)
class Forwarded:
    """Rows that went through the model with the inputs, and their logits."""

    rows: Any  # ndarray, or a tuple of them for several inputs
    logits: np.ndarray


def chunks(total: int, batch_size: int, model: Model) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, size)`` of each chunk of ``total`` rows; ``size`` includes padding.

    The rows are split into ``ceil(total / batch_size)`` chunks of equal size
    (the last one smaller when they do not divide evenly); on a backend that
    compiles per shape every chunk has the size of the first one.

    >>> class Eager: compiles_per_shape = False
    >>> [stop - start for start, stop, _ in chunks(10, 4, Eager())]
    [4, 4, 2]
    >>> [stop - start for start, stop, _ in chunks(400, 128, Eager())]
    [100, 100, 100, 100]
    """
    count = -(-total // batch_size)
    size = -(-total // count) if total else 1
    for start in range(0, total, size):
        stop = min(start + size, total)
        yield start, stop, size if model.compiles_per_shape else stop - start


def padded(array: Any, size: int) -> Any:
    """``array`` with copies of its last row appended up to ``size`` rows (each of several inputs)."""
    if several(array):
        return tuple(padded(a, size) for a in array)
    missing = size - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)], axis=0)


def add_rows(total: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """``total[index[i]] += values[i]`` for every row ``i``; repeated indices add up.

    What ``np.add.at(total, index, values)`` does, with one vectorised sum per
    distinct index instead of an unbuffered loop over rows.
    """
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    total[ordered[starts]] += np.add.reduceat(values[order], starts, axis=0)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise argument_error(name, f"an int >= {minimum}", value, kind=AttribTypeError)
    if int(value) < minimum:
        raise argument_error(name, f"an int >= {minimum}", value)
    return int(value)


def check_scale(name: str, value: object, unit: str, suggestion: str | None = None) -> float:
    """``value`` as a finite float >= 0 (a noise scale in ``unit``), else a clear error naming ``name``."""
    expected = f"a finite float >= 0 ({unit})"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise argument_error(name, expected, value, suggestion, kind=AttribTypeError)
    number = float(value)
    if not (np.isfinite(number) and number >= 0):
        raise argument_error(name, expected, value, suggestion)
    return number


def spatial_axes(layout: str, ndim: int) -> tuple[int, ...]:
    """The spatial axes of a batch of ``ndim`` dimensions in ``layout``: (H, W), (L,), (D, H, W)."""
    if not 3 <= ndim <= 5:
        raise argument_error(
            "inputs", "images (N, C, H, W), signals (N, C, L) or volumes (N, C, D, H, W) (channels "
            "last in a channels-last model) for this option", f"an array with {ndim} dimensions")
    return layout_spatial_axes(layout, ndim)


def random_images(rng: np.random.Generator, shape: tuple[int, ...], layout: str,
                  kind: str = "normal") -> np.ndarray:
    """Standard normal (or uniform [0, 1)) values of ``shape``, drawn in NCHW order.

    The same generator state gives the same value at the same (sample,
    channel, row, column) in either layout, so seeded noise is the same on
    a torch (NCHW) and a jax (NHWC) backend; also for signals (N, L, C) and
    volumes (N, D, H, W, C), drawn as (N, C, L) and (N, C, D, H, W).
    """
    draw = rng.standard_normal if kind == "normal" else rng.random
    if layout == "NHWC" and len(shape) == 4:
        n, h, w, c = shape
        return np.asarray(draw((n, c, h, w))).transpose(0, 2, 3, 1)
    if layout == "NHWC" and len(shape) in (3, 5):
        first = (shape[0], shape[-1], *shape[1:-1])
        return np.moveaxis(np.asarray(draw(first)), 1, -1)
    return np.asarray(draw(shape))


class MultiPassMethod(Attributor):
    """A method that runs many images through the backend, in chunks.

    Subclasses implement :meth:`run`; :meth:`attribute` validates the
    inputs, resolves the explained score once on the given inputs (the
    arg-max of their logits for ``target=None``) and builds the explanation.
    """

    def needs(self) -> GradientNeeds:
        """Not one gradient pass: :meth:`attribute` runs them."""
        return GradientNeeds(input_gradient=False)

    def compute(self, result: GradientResult) -> MethodOutput:
        raise argument_error(
            "method", "a single-pass method for compute()", self.name,
            f"{self.name!r} runs several passes: call attribute() instead.")

    @abstractmethod
    def run(self, x: np.ndarray, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        """The map (and extra ``stats``) of ``x`` (NumPy, the model's layout) with ``logits``.

        ``extra`` holds the rows of :meth:`extra_inputs` and their logits.
        ``logits`` is ``None`` only where :meth:`folds_forward` said so: ``run``
        then returns the logits of ``x`` in ``stats["logits"]``.
        """

    def folds_forward(self, x: np.ndarray) -> bool:
        """Whether :meth:`run` finds the logits of ``x`` in its own passes (no forward call).

        Asked only when the targets are given (the explained score does not
        depend on the logits); the backend checks them against the classes.
        """
        return False

    def extra_inputs(self, x: np.ndarray) -> np.ndarray | None:
        """Rows (N', ...) whose logits :meth:`run` needs besides those of ``x``, or ``None``.

        They go through the model in the forward pass of ``x`` (one call
        instead of two; integrated gradients: the baselines).
        """
        return None

    def _target_forward(self, x: np.ndarray,
                        explained: Explained) -> tuple[np.ndarray, Forwarded | None]:
        """:meth:`_forward` for a target: scores (N, 1) of ``x`` and of the extra rows.

        ``x`` goes first, alone: its pass checks the target against the output
        (which settles how the target's rows are indexed for the extra rows).
        """
        extra = self.extra_inputs(x)
        scores = explained.forward(self.model, x)
        if extra is None:
            return scores, None
        samples = np.arange(len(extra)) % len(x)
        return scores, Forwarded(extra, explained.rows(samples).forward(self.model, extra))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Forwarded | None]:
        """The logits of ``x`` and the :meth:`extra_inputs` with theirs, from one forward call.

        On an eager backend (not :attr:`attrib.Model.compiles_per_shape`)
        extra rows that are all equal (the zero baseline) go through the model
        once and their logits are repeated.
        """
        extra = self.extra_inputs(x)
        if extra is None:
            return self.model.forward(x), None
        rows, n = len(as_tuple(extra)[0]), len(as_tuple(x)[0])
        same = (not self.model.compiles_per_shape and rows > 1
                and all(bool(np.all(e == e[:1])) for e in as_tuple(extra)))
        logits = self.model.forward(like(tuple(
            np.concatenate([a, e[:1] if same else e]) for a, e in zip(as_tuple(x), as_tuple(extra))),
            x))
        extra_logits = logits[n:]
        if same:
            extra_logits = np.repeat(extra_logits, rows, axis=0)
        return logits[:n], Forwarded(extra, extra_logits)

    def attribute(self, inputs: Any, target: Any = None) -> Explanation:
        """Explain ``inputs`` for ``target`` (as :meth:`attrib.Attributor.attribute`)."""
        shape = first_shape(self.model, inputs, self.name, self.several_inputs)
        x = self.model.to_numpy(inputs)
        targets, weights = self._split_target(inputs, target, shape[0])
        if isinstance(target, Target):
            explained = Explained(target.labels(shape[0]), None, self.objective, target)
            logits, extra = self._target_forward(x, explained)
            output, stats = self.run(x, logits, explained, extra)
            if output.attribution.size and not np.any(output.attribution):
                warn_zero(self.name, ["the inputs"])
            return self._explanation(output, targets=explained.targets, logits=logits, inputs=x,
                                     stats={**output.stats, **stats}, target_weights=None)
        if (targets is not None or weights is not None) and self.folds_forward(x):
            explained = self._explained(targets, weights, None)
            output, stats = self.run(x, None, explained)
            logits = stats.pop("logits")
        else:
            logits, extra = self._forward(x)
            explained = self._explained(targets, weights, logits)
            output, stats = self.run(x, logits, explained, extra)
        if weights is not None:
            weights = resolve_target_weights(weights, logits)
        if all(a.size and not np.any(a) for a in as_tuple(output.attribution)):
            warn_zero(self.name, ["the inputs"])
        return self._explanation(output, targets=explained.targets, logits=logits, inputs=x,
                                 stats={**output.stats, **stats}, target_weights=weights)

    def _explained(self, targets: np.ndarray | None, weights: Any,
                   logits: np.ndarray | None) -> Explained:
        """The explained score: given classes or weights (checked against ``logits`` if given)."""
        if weights is not None:
            if logits is not None:
                weights = resolve_target_weights(weights, logits)
            weights = np.asarray(weights, dtype=np.float64)
            return Explained(weights_targets(weights), weights, self.objective)
        if logits is not None:
            return Explained(resolve_targets(targets, logits), None, self.objective)
        assert targets is not None
        return Explained(targets, None, self.objective)
