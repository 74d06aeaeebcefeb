"""Grad-CAM: class activation maps weighted by the spatial mean of the layer gradient."""

from __future__ import annotations

import numpy as np

from ._cam import CAM, LayerData, positions


def spatial_axes(layout: str) -> tuple[tuple[int, int], int]:
    """((h axis, w axis), channel axis) of a 4-D array in ``layout``."""
    return ((2, 3), 1) if layout == "NCHW" else ((1, 2), 3)


class GradCAM(CAM):
    """Grad-CAM: activation channels weighted by the spatial mean of their gradient.

    With ``A`` the layer's activation and ``G`` the gradient of the score at
    it, both read as (N, C, h, w)::

        weights[n, c] = mean over (h, w) of G[n, c]
        cam[n]        = relu(sum_c weights[n, c] * A[n, c])        # (N, h, w)

    and ``cam`` is resized bilinearly (half-pixel centres) to the input's
    (H, W). Not normalised: the raw map is the result.

    Parameters
    ----------
    layer : str, list of str, None or "auto"
        The layer, in the framework's own naming (``"layer4"``, ``"features.29"``);
        ``None`` picks the last spatial layer.

    Notes
    -----
    Attributes of the result: ``attribution`` (N, H, W); ``layer_attribution``
    (N, h, w).

    References
    ----------
    Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra (2017). Grad-CAM: visual
    explanations from deep networks via gradient-based localization.
    """

    name = "gradcam"

    def weights(self, data: LayerData) -> np.ndarray:
        assert data.gradient is not None
        return data.gradient.mean(axis=positions(data.gradient))

