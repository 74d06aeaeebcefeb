"""The built-in attribution methods, one module each (``"gradcam"`` ↔ ``gradcam.py``)."""

from __future__ import annotations

from .ablationcam import AblationCAM
from .deconvnet import Deconvnet
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .gradcam_pp import GradCAMPlusPlus
from .gradient_x_input import GradientXInput
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .saliency import Saliency
from .scorecam import ScoreCAM
from .xgradcam import XGradCAM

__all__ = ["Saliency", "GradientXInput", "Deconvnet", "GuidedBackprop", "GradCAM", "GuidedGradCAM"]
# the CAM family (issue 8)
__all__ += ["GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM", "ScoreCAM", "EigenCAM",
            "AblationCAM"]
