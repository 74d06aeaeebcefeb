"""HiResCAM: the element-wise product of gradient and activation, summed over channels."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData


class HiResCAM(CAM):
    """HiResCAM: ``cam[n] = relu(sum_c G[n, c] * A[n, c])``.

    ``A``, ``G`` (N, C, h, w) are the layer's activation and gradient. Unlike
    Grad-CAM, the gradient is not averaged over positions, so the map shows
    the locations the score actually used when the layer is followed by
    global average pooling and one linear layer (where it equals the class
    activation map of Zhou et al.).

    References
    ----------
    Draelos, Carin (2020). Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks. arXiv:2011.08891.
    """

    name = "hirescam"

    def layer_map(self, data: LayerData) -> np.ndarray:
        assert data.gradient is not None
        return (data.gradient * data.activation).sum(axis=1)
