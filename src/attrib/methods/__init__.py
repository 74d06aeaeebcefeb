"""The built-in attribution methods, one module each (``"gradcam"`` ↔ ``gradcam.py``)."""

from __future__ import annotations

from .deconvnet import Deconvnet
from .gradcam import GradCAM
from .gradient_x_input import GradientXInput
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .saliency import Saliency

# multi-pass methods (issue 9)
from .integrated_gradients import IntegratedGradients  # noqa: E402
from .occlusion import Occlusion  # noqa: E402
from .smoothgrad import SmoothGrad  # noqa: E402

__all__ = ["Saliency", "GradientXInput", "Deconvnet", "GuidedBackprop", "GradCAM", "GuidedGradCAM"]
__all__ += ["IntegratedGradients", "SmoothGrad", "Occlusion"]
