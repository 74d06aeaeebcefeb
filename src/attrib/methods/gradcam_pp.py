"""Grad-CAM++: channel weights from positive gradients, each position weighted in closed form."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData, positions


class GradCAMPlusPlus(CAM):
    """Grad-CAM++, in the closed form of the paper's eq. 19 that pytorch-grad-cam uses.

    With ``A``, ``G`` (N, C, h, w) the layer's activation and gradient and
    ``S[n, c] = sum over (h, w) of A[n, c]``::

        alpha[n, c, i, j] = G**2 / (2 G**2 + S[n, c] G**3 + 1e-6)   (0 where G == 0)
        weights[n, c]     = sum over (i, j) of alpha * relu(G)
        cam[n]            = relu(sum_c weights[n, c] * A[n, c])

    The closed form replaces the higher derivatives of the paper's eq. 10 by
    powers of the first one, exact when the score is an exponential of a
    piece-wise linear function (the paper's assumption); the score itself is
    the one ``objective`` names (the logit by default, as pytorch-grad-cam).

    References
    ----------
    Chattopadhyay, Sarkar, Howlader, Balasubramanian (2018). Grad-CAM++:
    generalized gradient-based visual explanations for deep convolutional networks.
    """

    name = "gradcam_pp"
    eps = 1e-6

    def weights(self, data: LayerData) -> np.ndarray:
        grads = data.gradient
        assert grads is not None
        g2 = grads**2
        g3 = g2 * grads
        axes = positions(grads)
        total = data.activation.sum(axis=axes, keepdims=True)
        alpha = g2 / (2 * g2 + total * g3 + self.eps)
        alpha = np.where(grads != 0, alpha, 0)
        return (np.maximum(grads, 0) * alpha).sum(axis=axes)
