"""Eigen-CAM: the activations' first principal component, gradient-free."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData


class EigenCAM(CAM):
    """Eigen-CAM: the projection of each position's channel vector on the first principal component.

    For each sample, ``X`` (h·w, C) holds the activation's channel vectors,
    centred over positions (as pytorch-grad-cam does)::

        X        = A[n].reshape(C, h*w).T - mean over positions
        v        = first right singular vector of X
        cam[n]   = relu(X @ v)  reshaped to (h, w)

    The SVD leaves the sign of ``v`` arbitrary (pytorch-grad-cam keeps
    whatever LAPACK returns); here it is fixed so that the projection
    correlates positively with the activation summed over channels. Needs no
    gradient and no target: one capture-only pass (no backward pass).

    References
    ----------
    Muhammad, Yeasin (2020). Eigen-CAM: class activation map using principal
    components. IJCNN 2020.
    """

    name = "eigencam"
    uses_gradients = False

    def layer_map(self, data: LayerData) -> np.ndarray:
        return principal_projection(data.activation)


def principal_projection(activation: np.ndarray) -> np.ndarray:
    """The sign-fixed first-principal-component projection (N, h, w) of (N, C, h, w).

    Any number of spatial axes: (N, C, *spatial) gives (N, *spatial).
    """
    n, c = activation.shape[:2]
    spatial = activation.shape[2:]
    positions = int(np.prod(spatial))
    x = activation.reshape(n, c, positions).transpose(0, 2, 1)
    x = x - x.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    projection = np.einsum("npc,nc->np", x, vt[:, 0, :])
    total = activation.sum(axis=1).reshape(n, positions)
    total = total - total.mean(axis=1, keepdims=True)
    sign = np.where((projection * total).sum(axis=1) < 0, -1.0, 1.0).astype(projection.dtype)
    return (projection * sign[:, None]).reshape(n, *spatial)
