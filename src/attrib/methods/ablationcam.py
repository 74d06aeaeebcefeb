"""Ablation-CAM: channel weights from the drop of the score when the channel is zeroed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import argument_error, check_choice, shown
from .._model import Model
from .._targets import objective_scores
from ._cam import CAM, LayerData, check_batch_size, chunks

#: what an ablated channel is set to (see :class:`AblationCAM`)
ABLATIONS: tuple[str, ...] = ("zero", "pytorch-grad-cam")


class AblationCAM(CAM):
    """Ablation-CAM: each channel's weight is the relative drop of the score without it.

    With ``A`` (N, C, h, w) the layer's activation and ``y[n]`` the target's
    score (by ``objective``) of the unmodified pass::

        y_k[n, c]     = score of x[n] with channel c of the layer's output ablated
        weights[n, c] = (y[n] - y_k[n, c]) / y[n]
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])

    The ablated passes continue from the layer: each is a copy of one
    image's activation ``A[n]`` (the layer's own output, captured in the first
    pass) with channel ``c`` set to the ablation value, handed to
    :meth:`attrib.Model.forward_substituted`, which replaces the layer's output
    by it during that call only (the model is never edited) and may skip the
    layer and run the layers before it once per image (torch and jax do; so
    did pytorch-grad-cam for the layer itself, which it swaps for its cached
    output). A backend without ``forward_substituted`` gets the zeroing
    through :meth:`attrib.Model.forward_scaled` (the layer's output times a
    0/1 channel mask). The copies are batched across the whole batch:
    ``ceil(N * C / batch_size)`` model calls per layer after the one
    capture-only pass; ``stats["forward_passes"]`` counts them all and
    ``stats["ablation_path"]`` says which primitive ran.

    Parameters
    ----------
    batch_size : int
        Ablated copies per model call (default 32).
    ablation : {"zero", "pytorch-grad-cam"}
        The value of the ablated channel: ``"zero"`` (default), the paper's
        ablation; or pytorch-grad-cam's ``AblationLayer`` value: 0 when the
        image's activation has minimum 0 (a layer after a ReLU, where the two
        agree), else ``min(A[n]) - 1e7``, a channel so negative that a
        following ReLU (or a max) drops it. They differ on a layer whose
        output goes negative and reaches something other than a ReLU, e.g.
        ``layer4.1.conv2`` of a ResNet (zeroing a convolution channel leaves
        the BatchNorm's shift and the residual ``identity`` through the ReLU
        after the addition; the large negative value removes them).
        pytorch-grad-cam itself also lowers the value by another 1e7 for
        each earlier row of its batch (row i of a batch gets
        ``min - (i + 1) * 1e7``: its loop re-reads the minimum after
        writing); where that matters (a negative value reaching a linear
        layer) the maps differ from it in both settings. It also keeps the
        layer's output tensor itself, so at a layer whose output a later
        in-place operation changes (ResNet's ``bn2``, then ``out +=
        identity`` and an in-place ReLU) it reads the changed values;
        attrib keeps a copy.

    References
    ----------
    Desai, Ramaswamy (2020). Ablation-CAM: visual explanations for deep
    convolutional network via gradient-free localization. WACV 2020.
    """

    name = "ablationcam"
    uses_gradients = False
    several_inputs = False  # its passes continue from the layer on one input

    def __init__(self, model: Any, *, layer: str | Sequence[str] | None = None,
                 reshape: Any = None, combine: str = "mean", batch_size: int = 32,
                 ablation: str = "zero", backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        super().__init__(model, layer=layer, reshape=reshape, combine=combine, backend=backend,
                         objective=objective, registry=registry)
        self.batch_size = check_batch_size(batch_size)
        self.ablation = check_choice("ablation", ablation, ABLATIONS)
        self._substitutes = type(self.model).forward_substituted is not Model.forward_substituted
        if ablation != "zero" and not self._substitutes:
            raise argument_error(
                "ablation", f"'zero' on the {self.model.backend!r} backend", ablation,
                "This backend has no Model.forward_substituted(), through which another "
                "ablation value is set; it zeroes channels through forward_scaled().")

    def weights(self, data: LayerData) -> np.ndarray:
        result = data.result
        if self._target is not None:
            raise argument_error(
                "target", "a class index or class weights for Ablation-CAM",
                shown(repr(self._target)),
                "Its ablated passes score logits (N, classes); use Score-CAM or Grad-CAM for "
                "masks, embeddings and boxes.")
        n, c = data.activation.shape[:2]
        original = objective_scores(result.logits, result.targets, self.objective)
        ablated = np.empty(n * c, dtype=np.float64)
        pairs = chunks(n * c, self.batch_size)
        run = self._substituted if self._substitutes else self._scaled
        for index in pairs:
            samples, channels = np.divmod(index, c)
            logits = run(data, samples, channels)
            ablated[index] = objective_scores(logits, result.targets[samples], self.objective)
        self._count("masked_batches", len(pairs))
        self._stats["forward_passes"] = 1 + self._stats["masked_batches"]
        self._stats["batch_size"] = self.batch_size
        self._stats["ablation"] = self.ablation
        self._stats["ablation_path"] = "substituted" if self._substitutes else "scaled"
        return (original[:, None] - ablated.reshape(n, c)) / original[:, None]

    def _substituted(self, data: LayerData, samples: np.ndarray,
                     channels: np.ndarray) -> np.ndarray:
        """Logits of copies of ``A[samples]`` with ``channels`` ablated, continued from the layer."""
        raw = data.result.activations[data.name]
        copies = raw[samples]  # a copy: fancy indexing
        rows = np.moveaxis(copies, data.grid.channel_axis(raw.ndim), 1)  # a view of copies
        values = self._values(raw)[samples]
        rows[np.arange(len(samples)), channels] = values.reshape((-1,) + (1,) * (raw.ndim - 2))
        inputs = data.result.inputs
        one_image = samples[0] == samples[-1]  # the layers before run once for all the copies
        return self.model.forward_substituted(
            inputs[samples[:1]] if one_image else inputs[samples], data.name, copies)

    def _scaled(self, data: LayerData, samples: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Logits with ``channels`` of the layer's output zeroed, the layer run again."""
        masks = np.ones((len(samples), data.activation.shape[1]), dtype=data.activation.dtype)
        masks[np.arange(len(samples)), channels] = 0
        scale = data.grid.channel_scale(masks, data.raw_ndim)
        return self.model.forward_scaled(data.result.inputs[samples], data.name, scale)

    def _values(self, raw: np.ndarray) -> np.ndarray:
        """The ablation value of each image (N,), in the activation's dtype."""
        if self.ablation == "zero":
            return np.zeros(raw.shape[0], dtype=raw.dtype)
        low = raw.reshape(raw.shape[0], -1).min(axis=1)
        return np.where(low == 0, low, low - raw.dtype.type(1e7)).astype(raw.dtype)
