"""Ablation-CAM: channel weights from the drop of the score when the channel is zeroed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._targets import objective_scores
from ._cam import CAM, LayerData, check_batch_size, chunks


class AblationCAM(CAM):
    """Ablation-CAM: each channel's weight is the relative drop of the score without it.

    With ``A`` (N, C, h, w) the layer's activation and ``y[n]`` the target's
    score (by ``objective``) of the unmodified pass::

        y_k[n, c]     = score of x[n] with channel c of the layer's output set to 0
        weights[n, c] = (y[n] - y_k[n, c]) / y[n]
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])

    The ablated passes go through :meth:`attrib.Model.forward_scaled`, which
    multiplies the layer's output by a per-sample channel mask (1 everywhere,
    0 at the ablated channel) during that call only: the model is never
    edited. They are batched across the whole batch: ``ceil(N * C /
    batch_size)`` model calls per layer after the one capture-only pass;
    ``stats["forward_passes"]`` counts them all.

    pytorch-grad-cam zeroes the channel as well when the layer's output has
    minimum 0 (a layer after a ReLU: the usual choice); on other layers it
    writes ``min - 1e7`` instead, which is not the paper's ablation and is
    not offered here.

    Parameters
    ----------
    batch_size : int
        Ablated inputs per model call (default 32).

    References
    ----------
    Desai, Ramaswamy (2020). Ablation-CAM: visual explanations for deep
    convolutional network via gradient-free localization. WACV 2020.
    """

    name = "ablationcam"
    uses_gradients = False

    def __init__(self, model: Any, *, layer: str | Sequence[str] | None = None,
                 reshape: Any = None, combine: str = "mean", batch_size: int = 32,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, layer=layer, reshape=reshape, combine=combine, backend=backend,
                         objective=objective, registry=registry)
        self.batch_size = check_batch_size(batch_size)

    def weights(self, data: LayerData) -> np.ndarray:
        result = data.result
        n, c = data.activation.shape[:2]
        original = objective_scores(result.logits, result.targets, self.objective)
        ablated = np.empty(n * c, dtype=np.float64)
        pairs = chunks(n * c, self.batch_size)
        dtype = data.activation.dtype
        for index in pairs:
            samples, channels = np.divmod(index, c)
            masks = np.ones((len(index), c), dtype=dtype)
            masks[np.arange(len(index)), channels] = 0
            scale = data.grid.channel_scale(masks, data.raw_ndim)
            logits = self.model.forward_scaled(result.inputs[samples], data.name, scale)
            ablated[index] = objective_scores(logits, result.targets[samples], self.objective)
        self._count("masked_batches", len(pairs))
        self._stats["forward_passes"] = 1 + self._stats["masked_batches"]
        self._stats["batch_size"] = self.batch_size
        return (original[:, None] - ablated.reshape(n, c)) / original[:, None]
