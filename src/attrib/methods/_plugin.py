"""Registers the built-in methods through the same hook a third party uses."""

from __future__ import annotations

from collections.abc import Callable

from .._hooks import hookimpl
from . import Deconvnet, GradCAM, GradientXInput, GuidedBackprop, GuidedGradCAM, Saliency
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .smoothgrad import SmoothGrad


@hookimpl
def attrib_register_methods(register: Callable[[type], None]) -> None:
    for method in (Saliency, GradientXInput, Deconvnet, GuidedBackprop, GradCAM, GuidedGradCAM):
        register(method)
    for multipass in (IntegratedGradients, SmoothGrad, Occlusion):
        register(multipass)
