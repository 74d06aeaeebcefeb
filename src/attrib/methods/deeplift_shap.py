"""DeepLIFT-SHAP: the mean of DeepLIFT maps over a set of baselines."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._errors import argument_error
from ._batched import (
    Explained,
    Forwarded,
    MultiPassMethod,
    check_batch_size,
    default_batch_size,
)
from .deeplift import check_summation, deeplift_rows
from .gradient_shap import baseline_set

__all__ = ["DeepLIFTSHAP"]


class DeepLIFTSHAP(MultiPassMethod):
    """SHAP values approximated by DeepLIFT: its map averaged over every baseline of a set.

    ``DeepLIFTSHAP(x) = 1/B sum_b DeepLIFT(x; x0_b)`` exactly (no sampling): each
    (baseline, image) pair runs through :class:`attrib.DeepLIFT`'s rule set, ``batch_size``
    pairs at a time, so ``attribution.sum() = f(x) - mean_b f(x0_b)`` per sample
    (``stats["delta"]`` holds the difference, float rounding only).

    Parameters
    ----------
    baselines : ``"zeros"`` (default) or array
        One baseline image or a set (B, ...) in the model's layout (Captum's
        ``DeepLiftShap`` takes the same set).
    batch_size : int or None
        Most pairs per pass (each runs with its baseline: twice the rows).

    References
    ----------
    Lundberg, Lee (2017). A unified approach to interpreting model predictions.
    Shrikumar, Greenside, Kundaje (2017). Learning important features through
    propagating activation differences.
    """

    name = "deeplift_shap"

    def __init__(self, model: Any, *, baselines: Any = "zeros", batch_size: int | None = None,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if self.objective != "logit":
            raise argument_error("objective", "'logit' for DeepLIFT-SHAP (summation-to-delta is "
                                 "of the logit)", self.objective)
        if isinstance(baselines, str) and baselines != "zeros":
            raise argument_error("baselines", "'zeros' or an array of baseline images", baselines)
        self.baselines: Any = baselines
        self.batch_size: int | None = check_batch_size(batch_size)

    def folds_forward(self, x: np.ndarray) -> bool:
        """With given targets the logits come from the DeepLIFT passes themselves."""
        return True

    def run(self, x: np.ndarray, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        n = len(x)
        base = baseline_set(self.baselines, x, self.model.to_numpy)
        # rows are (baseline, image) pairs, baseline-major
        rows = np.arange(len(base) * n)
        samples, which = rows % n, rows // n
        batch_size = self.batch_size or max(1, default_batch_size(x) // 2)
        maps, row_logits, base_logits = deeplift_rows(self.model, explained, x, base[which],
                                                      samples, batch_size)
        # the mean of the B DeepLIFT maps, as numpy.mean takes it
        attribution = maps.reshape((len(base),) + x.shape).mean(axis=0)
        score = explained.scores(row_logits[:n])
        baseline_score = np.zeros(n)
        np.add.at(baseline_score, samples, explained.rows(samples).scores(base_logits))
        baseline_score /= len(base)
        delta = attribution.reshape(n, -1).sum(axis=1) - (score - baseline_score)
        check_summation("deeplift_shap", delta, score, baseline_score)
        stats: dict[str, Any] = {"score": score, "baseline_score": baseline_score, "delta": delta,
                                 "baselines": len(base)}
        if logits is None:
            stats["logits"] = row_logits[:n]
        return MethodOutput(attribution=attribution.astype(x.dtype)), stats
