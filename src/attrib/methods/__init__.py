"""The built-in attribution methods, one module each (``"gradcam"`` ↔ ``gradcam.py``)."""

from __future__ import annotations

from .deconvnet import Deconvnet
from .gradcam import GradCAM
from .gradient_x_input import GradientXInput
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .saliency import Saliency
from .smoothgrad import SmoothGrad

__all__ = ["Saliency", "GradientXInput", "Deconvnet", "GuidedBackprop", "GradCAM", "GuidedGradCAM"]
__all__ += ["IntegratedGradients", "SmoothGrad", "Occlusion"]
