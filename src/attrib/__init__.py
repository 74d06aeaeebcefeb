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

from typing import TYPE_CHECKING

from ._errors import AttribError, AttribTypeError, AttribValueError, AttribWarning, BackendError
from ._version import __version__ as __version__

if TYPE_CHECKING:  # every name loaded on first use (below), for type checkers and editors
    from . import evaluate as evaluate
    from . import methods as methods
    from . import models as models
    from . import plotting as plotting
    from . import postprocess as postprocess
    from . import preprocess as preprocess
    from . import ray as ray
    from . import rules as rules
    from . import targets as targets
    from . import testing as testing
    from ._api import explain, list_backends, list_methods, wrap
    from ._attributor import Attributor, GradientNeeds, MethodOutput
    from ._backend import Backend
    from ._dataset import BatchExplainer, MapStore, explain_dataset, open_maps
    from ._demo import demo_data, demo_model
    from ._explanation import Explanation
    from ._hooks import hookimpl
    from ._model import LAYOUTS, GradientRequest, GradientResult, LayerInfo, Model
    from ._registry import Registry
    from ._report import write_report
    from ._resize import resize_bilinear, resize_linear
    from ._rules import RULES, GuidedActivation
    from ._targets import (
        OBJECTIVES,
        check_target,
        objective_scores,
        resolve_target_weights,
        resolve_targets,
        weighted_scores,
    )
    from .methods import (
        LRP,
        AblationCAM,
        AttentionRollout,
        AttnLRP,
        Deconvnet,
        DeepLIFT,
        DeepLIFTSHAP,
        EigenCAM,
        GenericAttention,
        GradCAM,
        GradCAMPlusPlus,
        GradientSHAP,
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
    from .rules import RuleSet, get_rule

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
    "GradientSHAP",
    "LRP",
    "AttnLRP",
    "AttentionRollout",
    "GenericAttention",
    "DeepLIFT",
    "DeepLIFTSHAP",
    # rule sets: what the backward pass does per kind of operation (attrib.rules)
    "rules",
    # targets beyond a class index: Mask, Weights, Cosine, Boxes (attrib.targets)
    "targets",
    "RuleSet",
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
    "resize_linear",
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


#: every public name but the errors, imported on first use: ``import attrib`` loads no
#: NumPy, no pluggy and no optional area (the dataset store, the report, the metrics)
#: until a name is used (PEP 562, as SciPy and scikit-image load their subpackages)
_LAZY: dict[str, str] = {
    "explain": "._api",
    "list_backends": "._api",
    "list_methods": "._api",
    "wrap": "._api",
    "Attributor": "._attributor",
    "GradientNeeds": "._attributor",
    "MethodOutput": "._attributor",
    "Backend": "._backend",
    "demo_data": "._demo",
    "demo_model": "._demo",
    "Explanation": "._explanation",
    "hookimpl": "._hooks",
    "LAYOUTS": "._model",
    "GradientRequest": "._model",
    "GradientResult": "._model",
    "LayerInfo": "._model",
    "Model": "._model",
    "Registry": "._registry",
    "resize_bilinear": "._resize",
    "resize_linear": "._resize",
    "RULES": "._rules",
    "GuidedActivation": "._rules",
    "get_rule": ".rules",
    "OBJECTIVES": "._targets",
    "check_target": "._targets",
    "objective_scores": "._targets",
    "resolve_target_weights": "._targets",
    "resolve_targets": "._targets",
    "weighted_scores": "._targets",
    "AblationCAM": ".methods",
    "Deconvnet": ".methods",
    "EigenCAM": ".methods",
    "GradCAM": ".methods",
    "GradCAMPlusPlus": ".methods",
    "GradientXInput": ".methods",
    "GuidedBackprop": ".methods",
    "GuidedGradCAM": ".methods",
    "HiResCAM": ".methods",
    "IntegratedGradients": ".methods",
    "LayerCAM": ".methods",
    "Occlusion": ".methods",
    "Saliency": ".methods",
    "ScoreCAM": ".methods",
    "SmoothGrad": ".methods",
    "XGradCAM": ".methods",
    "LRP": ".methods",
    "AttnLRP": ".methods",
    "AttentionRollout": ".methods",
    "GenericAttention": ".methods",
    "GradientSHAP": ".methods",
    "DeepLIFT": ".methods",
    "DeepLIFTSHAP": ".methods",
    "RuleSet": ".rules",
    "deprocess": ".postprocess",
    "diverging": ".postprocess",
    "diverging_to_unit": ".postprocess",
    "grayscale": ".postprocess",
    "minmax": ".postprocess",
    "negative_saliency": ".postprocess",
    "overlay": ".postprocess",
    "positive_saliency": ".postprocess",
    "resize_map": ".postprocess",
    "to_hwc": ".postprocess",
    "explain_dataset": "._dataset",
    "BatchExplainer": "._dataset",
    "MapStore": "._dataset",
    "open_maps": "._dataset",
    "write_report": "._report",
}
#: subpackages and modules reachable as ``attrib.<name>`` without importing them first
_SUBMODULES: tuple[str, ...] = ("evaluate", "plotting", "preprocess", "ray", "testing", "methods",
                                "postprocess", "rules", "models", "targets")


def __getattr__(name: str) -> object:
    """Optional areas on first use: ``attrib.evaluate``, ``attrib.explain_dataset``, ``attrib.ray``, ...

    Module ``__getattr__`` (PEP 562), as SciPy and scikit-image load their
    subpackages; the value is cached in the module, so this runs once per name.
    """
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not (autocompletion sees the lazy ones too)."""
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
