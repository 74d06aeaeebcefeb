"""DeepLIFT (rescale rule): the change of the score from a baseline, split over the inputs."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._errors import AttribWarning, argument_error, check_choice
from .._model import Model
from ..rules import DEEPLIFT
from ._batched import (
    Explained,
    Forwarded,
    MultiPassMethod,
    check_batch_size,
    chunks,
    default_batch_size,
    padded,
)
from .integrated_gradients import BASELINES, make_baselines

__all__ = ["DeepLIFT", "deeplift_rows", "check_summation"]

#: a summation-to-delta gap above this share of the scores is more than rounding
SUMMATION_GAP = 1e-2


def check_summation(method: str, delta: np.ndarray, score: np.ndarray,
                    baseline_score: np.ndarray) -> None:
    """Warn (:class:`attrib.AttribWarning`) where ``Σ map − (f(x) − f(x0))`` is beyond rounding.

    The rules make the sum exact up to rounding; a gap over ``SUMMATION_GAP``
    of ``max(|f(x)|, |f(x0)|)`` means the network amplifies rounding at these
    inputs, and the map is not one to trust. It happens where the network is
    so steep between input and baseline that the exact multipliers are huge
    and ``Σ |m·Δx| / |Δf|`` passes ~1e14: the terms cancel beyond float64
    (random-weight ``efficientnet_b7`` whose BatchNorm statistics never saw a
    constant image, against a constant baseline: multipliers 4e22, ratio
    1.2e20, gap 5e3 times ``|Δf|``). No operation is at fault and float64
    does not cure it, so this is a warning, not an error; the map is returned
    with the gap in ``stats["delta"]``.
    """
    scale = np.maximum(np.abs(score), np.abs(baseline_score))
    gap = np.abs(delta) / np.where(scale > 0, scale, 1.0)
    if np.any(gap > SUMMATION_GAP):
        worst = int(np.argmax(gap))
        warnings.warn(
            f"{method}: the map of sample {worst} misses summation-to-delta by "
            f"{float(delta[worst]):.3g} (f(x) = {float(score[worst]):.6g}, f(baseline) = "
            f"{float(baseline_score[worst]):.6g}): more than rounding, so the network amplifies "
            "rounding between these inputs and the map is unreliable. Try a baseline nearer "
            "the data (where the BatchNorm statistics came from) or float64.",
            AttribWarning, stacklevel=4)


def deeplift_rows(model: Model, explained: Explained, x: np.ndarray, references: np.ndarray,
                  samples: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepLIFT maps of rows ``x[samples[i]]`` against ``references[i]``, ``batch_size`` at a time.

    Returns the maps ``m * (x - reference)`` (rows, ...) in float64, the rows'
    logits and the references' logits (from the backend's ``stats`` when it
    returns them as ``"reference_logits"``, else a forward pass).
    """
    maps = np.zeros((len(samples),) + x.shape[1:])
    logits: list[np.ndarray] = []
    reference_logits: list[np.ndarray] = []
    for start, stop, size in chunks(len(samples), batch_size, model):
        picked = padded(samples[start:stop], size)
        reference = padded(references[start:stop], size)
        result = model.gradients(explained.rows(picked).request(
            x[picked], rule=DEEPLIFT, input_gradient=True, layer_gradients=False,
            reference=reference))
        assert result.input_gradient is not None, "the backend returned no multipliers"
        k = stop - start
        diff = x[picked[:k]].astype(np.float64) - reference[:k].astype(np.float64)
        maps[start:stop] = np.asarray(result.input_gradient[:k], dtype=np.float64) * diff
        logits.append(np.asarray(result.logits[:k]))
        given = result.stats.get("reference_logits")
        reference_logits.append(np.asarray(given[:k]) if given is not None
                                else model.forward(reference[:k]))
    return maps, np.concatenate(logits), np.concatenate(reference_logits)


class DeepLIFT(MultiPassMethod):
    """DeepLIFT with the rescale rule: ``m * (x - x0)`` with ``sum = f(x) - f(x0)``.

    The input and the baseline ``x0`` run through the network together; at
    every nonlinearity the multiplier is the ratio of the output's change to the
    input's change (the rescale rule), max pooling is one nonlinearity over each
    window, the product of two activations (squeeze-excitation gates) splits its
    change by the Shapley rule, and linear layers (convolutions, dense layers,
    additions, BatchNorm in eval mode) pass the multipliers on by their
    transpose (the rule set :data:`attrib.rules.DEEPLIFT`). The map has the
    input's shape and satisfies summation-to-delta,
    ``attribution.sum() = f(x) - f(x0)`` per sample (``stats["delta"]`` holds
    the difference, float rounding only). The model is never edited; an
    operation with no rule raises :class:`attrib.AttribError` naming it.

    Parameters
    ----------
    baseline : ``"zeros"`` (default), ``"blur"``, ``"uniform"`` or an array
        As integrated gradients takes it (broadcastable to the inputs).
    batch_size : int or None
        Most inputs per pass (each runs with its baseline: twice the rows).
    seed : int
        Seed of the ``"uniform"`` baseline.
    backend, objective, registry
        As for every method (``objective`` must be ``"logit"``: summation-to-delta
        is of the logit).

    References
    ----------
    Shrikumar, Greenside, Kundaje (2017). Learning important features through
    propagating activation differences. Ancona, Ceolini, Öztireli, Gross (2018).
    Towards better understanding of gradient-based attribution methods for deep
    neural networks.
    """

    name = "deeplift"

    def __init__(self, model: Any, *, baseline: Any = "zeros", batch_size: int | None = None,
                 seed: int = 0, backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if self.objective != "logit":
            raise argument_error("objective", "'logit' for DeepLIFT (summation-to-delta is of "
                                 "the logit)", self.objective)
        if isinstance(baseline, str):
            check_choice("baseline", baseline, BASELINES,
                         suggestion="Or pass a numeric array broadcastable to the inputs.")
        self.baseline: Any = baseline
        self.seed = seed
        self.batch_size: int | None = check_batch_size(batch_size)

    def folds_forward(self, x: np.ndarray) -> bool:
        """With given targets the logits come from the DeepLIFT pass itself."""
        return True

    def run(self, x: np.ndarray, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        baselines = make_baselines(self.baseline, x, self.model, self.seed)
        batch_size = self.batch_size or max(1, default_batch_size(x) // 2)
        maps, row_logits, base_logits = deeplift_rows(self.model, explained, x, baselines,
                                                      np.arange(len(x)), batch_size)
        score = explained.scores(row_logits)
        baseline_score = explained.scores(base_logits)
        delta = maps.reshape(len(x), -1).sum(axis=1) - (score - baseline_score)
        check_summation("deeplift", delta, score, baseline_score)
        stats: dict[str, Any] = {"score": score, "baseline_score": baseline_score, "delta": delta}
        if logits is None:
            stats["logits"] = row_logits
        return MethodOutput(attribution=maps.astype(x.dtype)), stats
