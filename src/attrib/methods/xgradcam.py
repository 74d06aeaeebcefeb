"""XGrad-CAM: gradients weighted by the activation's share of its channel's total."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData, positions


class XGradCAM(CAM):
    """XGrad-CAM (axiom-based Grad-CAM).

    With ``A``, ``G`` (N, C, h, w)::

        weights[n, c] = sum over (h, w) of G[n, c] * A[n, c] / (sum over (h, w) of A[n, c] + 1e-7)
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])

    as the paper's eq. 11 and pytorch-grad-cam (whose ``1e-7`` keeps an
    all-zero channel at weight 0).

    References
    ----------
    Fu, Hu, Dong, Zhang, Li, Pei, Qian (2020). Axiom-based Grad-CAM: towards
    accurate visualization and explanation of CNNs.
    """

    name = "xgradcam"
    eps = 1e-7

    def weights(self, data: LayerData) -> np.ndarray:
        grads, acts = data.gradient, data.activation
        assert grads is not None
        axes = positions(acts)
        total = acts.sum(axis=axes, keepdims=True)
        return (grads * acts / (total + self.eps)).sum(axis=axes)
