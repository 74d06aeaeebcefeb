"""Layer-CAM: each position weighted by its own positive gradient."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData


class LayerCAM(CAM):
    """Layer-CAM: ``cam[n] = relu(sum_c relu(G[n, c]) * A[n, c])`` (element-wise weights).

    ``A``, ``G`` (N, C, h, w) are the layer's activation and gradient. Made
    for shallow layers as well as deep ones: pass several layers
    (``layer=["layer2", "layer3", "layer4"]``) to combine them.

    References
    ----------
    Jiang, Zhang, Hou, Cheng, Wei (2021). LayerCAM: exploring hierarchical
    class activation maps for localization. IEEE TIP 30.
    """

    name = "layercam"

    def layer_map(self, data: LayerData) -> np.ndarray:
        assert data.gradient is not None
        return (np.maximum(data.gradient, 0) * data.activation).sum(axis=1)
