"""The built-in attribution methods, one module each (``"gradcam"`` ↔ ``gradcam.py``)."""

from __future__ import annotations

from .ablationcam import AblationCAM
from .attention_rollout import AttentionRollout
from .attnlrp import AttnLRP
from .deconvnet import Deconvnet
from .deeplift import DeepLIFT
from .deeplift_shap import DeepLIFTSHAP
from .eigencam import EigenCAM
from .generic_attention import GenericAttention
from .gradcam import GradCAM
from .gradcam_pp import GradCAMPlusPlus
from .gradient_shap import GradientSHAP
from .gradient_x_input import GradientXInput
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .hirescam import HiResCAM
from .integrated_gradients import IntegratedGradients
from .layercam import LayerCAM
from .lrp import LRP
from .occlusion import Occlusion
from .saliency import Saliency
from .scorecam import ScoreCAM
from .smoothgrad import SmoothGrad
from .xgradcam import XGradCAM

#: the gradient methods of the seeds
SEED_METHODS = (Saliency, GradientXInput, Deconvnet, GuidedBackprop, GradCAM, GuidedGradCAM)
#: the CAM family (pytorch-grad-cam's methods)
CAM_METHODS = (GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, EigenCAM, AblationCAM)
#: methods that run many passes in chunks (Captum's methods)
MULTIPASS_METHODS = (IntegratedGradients, SmoothGrad, Occlusion, GradientSHAP)
#: methods of rule sets beyond rectifiers (zennit's family)
RULE_METHODS = (LRP, AttnLRP, DeepLIFT, DeepLIFTSHAP)
#: methods computed from captured attention (vision transformers)
ATTENTION_METHODS = (AttentionRollout, GenericAttention)

__all__ = [cls.__name__ for cls in (*SEED_METHODS, *CAM_METHODS, *MULTIPASS_METHODS, *RULE_METHODS,
                                     *ATTENTION_METHODS)]
