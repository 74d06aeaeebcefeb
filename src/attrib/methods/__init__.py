"""The built-in attribution methods, one module each (``"gradcam"`` ↔ ``gradcam.py``)."""

from __future__ import annotations

from .deconvnet import Deconvnet
from .gradcam import GradCAM
from .gradient_x_input import GradientXInput
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .saliency import Saliency

# the CAM family (issue 8)
from .ablationcam import AblationCAM  # noqa: E402
from .eigencam import EigenCAM  # noqa: E402
from .gradcam_pp import GradCAMPlusPlus  # noqa: E402
from .hirescam import HiResCAM  # noqa: E402
from .layercam import LayerCAM  # noqa: E402
from .scorecam import ScoreCAM  # noqa: E402
from .xgradcam import XGradCAM  # noqa: E402

__all__ = ["Saliency", "GradientXInput", "Deconvnet", "GuidedBackprop", "GradCAM", "GuidedGradCAM"]
CAM_METHODS = ["GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM", "ScoreCAM", "EigenCAM",
               "AblationCAM"]
__all__ += CAM_METHODS
