"""Guided Grad-CAM: the upsampled Grad-CAM map times the guided-backprop gradient."""

from __future__ import annotations

from typing import Any

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._model import GradientResult
from .gradcam import GradCAM
from .guided_backprop import GuidedBackprop


class GuidedGradCAM(Attributor):
    """Guided Grad-CAM: ``gradcam[:, None] * guided_backprop`` (channel axis per layout).

    Holds a :class:`GradCAM` and a :class:`GuidedBackprop` and serves both from
    one gradient pass: the backend runs one backward pass when no rectifier
    lies between ``layer`` and the logits, and a second (rule off) otherwise,
    so the Grad-CAM part is always exact. The result has the input's shape;
    ``parts`` keeps both maps.

    References
    ----------
    Selvaraju et al. (2017). Grad-CAM: visual explanations from deep networks
    via gradient-based localization.
    """

    name = "guided_gradcam"
    needs_layer = True

    def __init__(self, model: Any, *, layer: str | None = None, reshape: Any = None,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self.gradcam = GradCAM(self.model, layer=layer, reshape=reshape, objective=objective,
                               registry=self.registry)
        self.guided_backprop = GuidedBackprop(self.model, objective=objective, registry=self.registry)

    @property
    def layer(self) -> str | None:
        """The Grad-CAM part's layer (``layer=None``: the default layer, once chosen)."""
        return self.gradcam.layer

    @property
    def layers(self) -> tuple[str, ...]:
        return self.gradcam.layers

    def _prepare(self, inputs: Any) -> None:
        self.gradcam._prepare(inputs)

    def needs(self) -> GradientNeeds:
        return self.gradcam.needs().merge(self.guided_backprop.needs())

    def compute(self, result: GradientResult) -> MethodOutput:
        cam = self.gradcam.compute(result)
        if cam.layer_attribution is None:
            from .._errors import argument_error

            raise argument_error("layer", "one layer for guided Grad-CAM", self.layer,
                                 "Pass one layer name (several layers are for the CAM methods).")
        guided = self.guided_backprop.compute(result).attribution
        channel_axis = 1 if self.model.layout == "NCHW" else 3
        weight = cam.attribution.astype(guided.dtype)
        attribution = guided * (weight[:, None] if channel_axis == 1 else weight[..., None])
        return MethodOutput(
            attribution=attribution,
            layer_attribution=cam.layer_attribution,
            parts={"gradcam": cam.attribution, "guided_backprop": guided},
            stats=cam.stats,
        )
