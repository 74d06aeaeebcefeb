"""The CAM methods' default layer (``layer=None`` / ``"auto"``).

The rule: **the last layer, in the order the forward pass produces outputs,
whose output is a spatial grid larger than 1×1, skipping layers that only pool
or resample** (``LayerInfo.resamples``: pooling modules, ``Flatten``,
``Identity``, and containers whose output is such a module's output). It
comes from :meth:`attrib.Model.probe_layers`, so any backend gets it. A layer
is spatial when :func:`attrib.methods._grid.find_grid` reads it as a grid:
4-D in either layout, or tokens with an unambiguous grid; for signals and
volumes, an output with as many spatial axes as the input (``Conv1d`` /
``Conv3d`` outputs; pooling modules of any dimension are skipped).

So ResNets get ``layer4``; DenseNet ``features`` (its last child is a
normalisation); VGG ``features.29`` (``features`` itself and ``avgpool`` only
pool); Swin (torchvision) its ``permute`` (the channels-first view of the
last stage). In a ViT the head reads only the class token, so the gradient at
the other tokens of the last block's output is zero: when the last spatial
layer has a class token, the latest such layer whose gradient on the grid is
not all zero is taken (one extra gradient pass over the candidates; for
torchvision ``vit_b_16`` that is ``encoder.layers.encoder_layer_11.ln_1``,
the layer pytorch-grad-cam recommends).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import AttribError, argument_error
from .._inputs import first_shape
from .._model import GradientRequest, Model
from ._grid import Grid, find_grid, input_hw

__all__ = ["default_layer"]

#: class-token candidates checked for a non-zero gradient (latest first)
_TOKEN_CANDIDATES = 32




def default_layer(model: Model, inputs: Any, reshape: Any, method: str) -> str:
    """The default layer of ``model`` for ``inputs`` (see the module's rule)."""
    size = input_hw(first_shape(model, inputs, method, True), model.layout, method)
    spatial: list[tuple[str, Grid]] = []
    for info in reversed(model.probe_layers(inputs)):
        if info.resamples:
            continue
        try:
            grid = find_grid(info.shape, model.layout, size, reshape, info.name, method)
        except AttribError:
            continue
        if grid.cells > 1:
            spatial.append((info.name, grid))
    if not spatial:
        names = list(model.layer_names())
        hint = (f"No layer of this model has a spatial output (a grid larger than 1x1) on these "
                f"inputs; pass layer= explicitly. Layers near the output: {names[-5:]}")
        if not names:
            hint = ("This model exposes no named layers (in the jax backend an (apply_fn, params) "
                    "pair has none: pass the Flax module, as (module, variables) or an nnx module).")
        raise argument_error("layer", f"a layer for {method!r}", None, hint)
    name, grid = spatial[0]
    if grid.kind != "tokens" or grid.extra == 0:
        return name
    candidates = [(n, g) for n, g in spatial if g.kind == "tokens" and g.extra > 0]
    candidates = candidates[:_TOKEN_CANDIDATES]
    result = model.gradients(GradientRequest(
        inputs=inputs, input_gradient=False, layers=tuple(n for n, _ in candidates),
        layer_gradients=True))
    for cand, g in candidates:
        if np.any(g.to_nchw(np.asarray(result.layer_gradients[cand])) != 0):
            return cand
    return name
