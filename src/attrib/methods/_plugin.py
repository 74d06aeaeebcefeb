"""Registers the built-in methods through the same hook a third party uses."""

from __future__ import annotations

from collections.abc import Callable

from .._hooks import hookimpl
from . import Deconvnet, GradCAM, GradientXInput, GuidedBackprop, GuidedGradCAM, Saliency


@hookimpl
def attrib_register_methods(register: Callable[[type], None]) -> None:
    for method in (Saliency, GradientXInput, Deconvnet, GuidedBackprop, GradCAM, GuidedGradCAM):
        register(method)


@hookimpl(specname="attrib_register_methods")
def attrib_register_cam_methods(register: Callable[[type], None]) -> None:
    """The CAM family (issue 8)."""
    from . import AblationCAM, EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM

    for method in (GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, EigenCAM,
                   AblationCAM):
        register(method)
