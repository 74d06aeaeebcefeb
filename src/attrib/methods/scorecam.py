"""Score-CAM: channel weights from the scores of the input masked by each upsampled channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import check_choice
from .._layout import spatial_shape
from .._model import GradientRequest
from .._resize import resize_linear
from .._targets import objective_scores
from ._cam import CAM, LayerData, check_batch_size, chunks

UPSAMPLES: tuple[str, ...] = ("align_corners", "half_pixel")


class ScoreCAM(CAM):
    """Score-CAM: each channel's weight is the score of the input masked by that channel.

    With ``A`` (N, C, h, w) the layer's activation and ``x`` the input::

        M[n, c]       = Up(A[n, c]) min-max normalised to [0, 1]      # (H, W), + 1e-8
        s[n, c]       = score of x[n] * M[n, c]  (the target's, by ``objective``)
        weights[n, :] = softmax over c of s[n, :]
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])

    The masked inputs go through :meth:`attrib.Model.forward` in chunks of
    ``batch_size`` across the whole batch: ``ceil(N * C / batch_size)`` model
    calls per layer, after the one capture-only pass (no backward pass);
    ``stats["forward_passes"]`` counts them all and ``stats["masked_batches"]``
    the chunks.

    The paper's score is the increase over a baseline, ``f(x * M) - f(x_b)``;
    the softmax over channels does not change when one constant is subtracted,
    so the baseline drops out. ``objective="softmax"`` scores probabilities as
    the paper does; the default, the logit, is pytorch-grad-cam's choice.

    Parameters
    ----------
    batch_size : int
        Masked inputs per model call (default 32).
    upsample : {"align_corners", "half_pixel"}
        ``Up``: bilinear with the corner pixels aligned, as pytorch-grad-cam's
        ``UpsamplingBilinear2d`` (default, so that the maps match it), or with
        half-pixel centres as every other map here (the paper names no
        interpolation).

    References
    ----------
    Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu (2020). Score-CAM:
    score-weighted visual explanations for convolutional neural networks. CVPR workshops.
    """

    name = "scorecam"
    uses_gradients = False
    several_inputs = False  # it masks the input

    def __init__(self, model: Any, *, layer: str | Sequence[str] | None = None,
                 reshape: Any = None, combine: str = "mean", batch_size: int = 32,
                 upsample: str = "align_corners", backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        super().__init__(model, layer=layer, reshape=reshape, combine=combine, backend=backend,
                         objective=objective, registry=registry)
        self.batch_size = check_batch_size(batch_size)
        self.upsample = check_choice("upsample", upsample, UPSAMPLES)

    def weights(self, data: LayerData) -> np.ndarray:
        result = data.result
        x = result.inputs
        channels_first = self.model.layout == "NCHW"
        size = spatial_shape(x.shape, self.model.layout)
        n, c = data.activation.shape[:2]
        scores = np.empty(n * c, dtype=np.float64)
        pairs = chunks(n * c, self.batch_size)
        for index in pairs:
            samples, channels = np.divmod(index, c)
            masks = resize_linear(data.activation[samples, channels], size,
                                  align_corners=self.upsample == "align_corners")
            axes = tuple(range(1, masks.ndim))
            low = masks.min(axis=axes, keepdims=True)
            high = masks.max(axis=axes, keepdims=True)
            masks -= low  # in place (masks is a new array): the chunk's only big temporaries
            masks /= high - low + 1e-8
            masks = masks[:, None] if channels_first else masks[..., None]
            masked = x[samples]  # a copy (fancy indexing), multiplied in place in its dtype
            np.multiply(masked, masks, out=masked, casting="same_kind")
            if self._target is not None:  # an attrib.targets.Target: its scores, no backward
                scored = self.model.gradients(GradientRequest(
                    inputs=masked, target=self._target.rows(samples, n),
                    objective=self.objective, input_gradient=False))
                assert scored.scores is not None, "the backend returned no scores for the target"
                scores[index] = scored.scores
                continue
            logits = self.model.forward(masked)
            scores[index] = objective_scores(logits, result.targets[samples], self.objective)
        self._count("masked_batches", len(pairs))
        self._stats["forward_passes"] = 1 + self._stats["masked_batches"]
        self._stats["batch_size"] = self.batch_size
        scores = scores.reshape(n, c)
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
