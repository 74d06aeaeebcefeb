"""attrib: gradient-based attribution maps for any PyTorch or JAX/Flax model.

Users import from ``attrib`` only; backends live in plugins (``attrib_torch``,
``attrib_jax``, third parties') that are loaded when first needed.

Examples
--------
>>> import attrib
>>> {"gradcam", "saliency"} <= set(attrib.list_methods())
True
"""

from __future__ import annotations

from . import (
    evaluate,  # sanity checks and metrics of the maps (NumPy; issue 10)
    models,  # pretrained ImageNet classifiers (their packages load on first use)
)
from ._api import explain, list_backends, list_methods, wrap
from ._attributor import Attributor, GradientNeeds, MethodOutput
from ._backend import Backend
from ._dataset import BatchExplainer, MapStore, explain_dataset, open_maps
from ._demo import demo_data, demo_model
from ._errors import AttribError, AttribTypeError, AttribValueError, AttribWarning, BackendError
from ._explanation import Explanation
from ._hooks import hookimpl
from ._model import LAYOUTS, GradientRequest, GradientResult, LayerInfo, Model
from ._registry import Registry
from ._report import write_report
from ._resize import resize_bilinear
from ._rules import RULES, GuidedActivation, get_rule
from ._targets import (
    OBJECTIVES,
    check_target,
    objective_scores,
    resolve_target_weights,
    resolve_targets,
    weighted_scores,
)
from .methods import (
    AblationCAM,
    Deconvnet,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GradientXInput,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from .postprocess import (
    deprocess,
    diverging,
    diverging_to_unit,
    grayscale,
    minmax,
    negative_saliency,
    overlay,
    positive_saliency,
    resize_map,
    to_hwc,
)

__version__ = "0.1.0"

__all__ = [
    # one-call API
    "explain",
    "wrap",
    "list_backends",
    "list_methods",
    # the bundled demo (generated scenes + a small CNN)
    "demo_data",
    "demo_model",
    # methods
    "Saliency",
    "GradientXInput",
    "Deconvnet",
    "GuidedBackprop",
    "GradCAM",
    "GuidedGradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "HiResCAM",
    "ScoreCAM",
    "EigenCAM",
    "AblationCAM",
    "IntegratedGradients",
    "SmoothGrad",
    "Occlusion",
    # results
    "Explanation",
    # post-processing for display (NumPy; attrib.preprocess / attrib.plotting for more)
    "grayscale",
    "positive_saliency",
    "negative_saliency",
    "minmax",
    "diverging",
    "diverging_to_unit",
    "deprocess",
    "resize_map",
    "to_hwc",
    "overlay",
    # interfaces for backends and methods
    "Model",
    "GradientRequest",
    "GradientResult",
    "GuidedActivation",
    "Attributor",
    "GradientNeeds",
    "MethodOutput",
    "Backend",
    "Registry",
    "hookimpl",
    "get_rule",
    "RULES",
    "LAYOUTS",
    "OBJECTIVES",
    "check_target",
    "resolve_targets",
    "objective_scores",
    "resolve_target_weights",
    "weighted_scores",
    "LayerInfo",
    "resize_bilinear",
    # errors
    "AttribError",
    "AttribValueError",
    "AttribTypeError",
    "BackendError",
    "AttribWarning",
    # can I trust this map? (attrib.evaluate)
    "evaluate",
    "models",
    # a whole dataset: streamed into a Zarr store (attrib.ray runs it on a Ray cluster)
    "explain_dataset",
    "BatchExplainer",
    "MapStore",
    "open_maps",
    "write_report",
]


def __getattr__(name: str) -> object:
    """``attrib.ray``, imported on first use (it imports ray only when called)."""
    if name == "ray":
        import importlib

        return importlib.import_module(".ray", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
