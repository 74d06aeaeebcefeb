"""What every figure module shares: panel titles, the diverging colour map, pyplot.

Kept apart from :mod:`attrib.plotting` so that the figure modules it re-exports
(:mod:`attrib._signal_plots`) import these without importing it back.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Panel titles of the built-in methods (a test checks that every one has a title).
METHOD_LABELS: dict[str, str] = {
    "saliency": "Vanilla gradient",
    "gradient_x_input": "Gradient × input",
    "deconvnet": "Deconvnet",
    "guided_backprop": "Guided backprop",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "gradcam_pp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "Layer-CAM",
    "hirescam": "HiResCAM",
    "scorecam": "Score-CAM",
    "eigencam": "Eigen-CAM",
    "ablationcam": "Ablation-CAM",
    "integrated_gradients": "Integrated gradients",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
    "gradient_shap": "GradientSHAP",
    "lrp": "LRP",
    "attnlrp": "AttnLRP",  # also CP-LRP (cp=True): one method name
    "deeplift": "DeepLIFT",
    "deeplift_shap": "DeepLIFT-SHAP",
    "attention_rollout": "Attention rollout",
    "generic_attention": "Generic attention",
}

_DIVERGING_CMAP = "RdBu_r"


def _pyplot() -> Any:
    """``matplotlib.pyplot``, choosing Agg first when there is no display."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") \
            and sys.platform.startswith("linux") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
