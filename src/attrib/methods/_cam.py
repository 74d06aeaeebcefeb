"""The CAM family's shared base: layer(s) → per-channel weights → weighted sum → relu → upsample.

A CAM method states whether it needs the layer gradient (:attr:`CAM.uses_gradients`)
and turns one layer's activation ``A`` and gradient ``G``, both read as
(N, C, h, w) whatever the layer's layout (see :mod:`attrib.methods._grid`),
into a map (N, h, w) before the relu: most only through :meth:`CAM.weights`
(N, C), as pytorch-grad-cam's ``get_cam_weights``; the others override
:meth:`CAM.layer_map`. The base handles the rest once for all of them:

- the layer: a name, a list of names (one map per layer, from one gradient
  pass, and their mean), or ``None`` / ``"auto"`` (the default layer, see
  :mod:`attrib.methods._default_layer`);
- relu, and bilinear upsampling (half-pixel centres) to the input's (H, W);
- transformer token layouts (``reshape=``);
- signals and volumes: inputs (N, C, L) or (N, C, D, H, W) (channels last in
  a channels-last model) and layers with as many spatial axes (``Conv1d``,
  ``Conv3d``); ``A`` and ``G`` are then (N, C, l) or (N, C, d, h, w), the
  maps (N, l) or (N, d, h, w), upsampled linearly or trilinearly
  (:func:`attrib.resize_linear`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import AttribTypeError, argument_error, check_choice
from .._inputs import as_tuple, first_shape
from .._model import GradientResult
from .._resize import resize_linear
from ._default_layer import default_layer
from ._grid import Grid, check_reshape, find_grid, input_hw

__all__ = ["CAM", "LayerData", "COMBINES", "input_hw", "positions"]

#: how the maps of several layers are combined
COMBINES: tuple[str, ...] = ("mean", "minmax_mean")
AUTO = "auto"


@dataclass(frozen=True)
class LayerData:
    """One tapped layer, as a CAM method sees it.

    Attributes
    ----------
    name : str
    activation : ndarray, shape (N, C, h, w)
    gradient : ndarray, shape (N, C, h, w), or None when the method uses no gradient
    grid : Grid
        How the layer's own output maps to (N, C, h, w).
    raw_ndim : int
        The number of axes of the layer's own output.
    result : GradientResult
        The whole pass (inputs, logits, targets), for the perturbation methods.
    """

    name: str
    activation: np.ndarray
    gradient: np.ndarray | None
    grid: Grid
    raw_ndim: int
    result: GradientResult


#: the counters (masked batches, forward passes) of the CAM ``compute()`` in progress:
#: call-local, as the target is (see attrib._attributor.call_target)
_CALL_STATS: ContextVar[dict[str, Any] | None] = ContextVar("attrib_cam_stats", default=None)


class CAM(Attributor):
    """Base of the class-activation-map methods (Grad-CAM and its family).

    Parameters
    ----------
    model : a framework model or an :class:`attrib.Model`
    layer : str, sequence of str, None or ``"auto"``
        The layer(s), in the framework's own naming (``"layer4"``,
        ``"features.29"``). Several layers give one map each (in ``parts``,
        keyed by layer) from one gradient pass, and ``attribution`` combines
        them by ``combine``. ``None`` or ``"auto"`` picks the last layer
        with a spatial output (see :mod:`attrib.methods._default_layer`),
        recorded in the Explanation's ``layer`` (``stats["default_layer"]``
        is then ``True``).
    reshape : None, (h, w) or callable
        How a transformer layer's output maps to a grid when it is not
        unambiguous: ``(h, w)`` takes the last ``h * w`` tokens of
        (N, T, C) (or picks the axes of a 4-D output); a callable maps the
        layer's output (NumPy) to (N, C, h, w). Detected when ``None``.
    combine : {"mean", "minmax_mean"}
        Several layers: the mean of the raw maps, or, as pytorch-grad-cam's
        ``target_layers`` list, the mean of the maps each min-max normalised
        per image.
    backend, objective
        As every method (see :class:`attrib.Attributor`).

    Notes
    -----
    ``attribution`` (N, H, W) is the raw map, upsampled bilinearly (half-pixel
    centres) to the input; never normalised. ``layer_attribution`` (N, h, w)
    is the map at the layer's resolution (one layer only).
    """

    needs_layer = True
    #: several inputs: the map explains the layer, upsampled to the first input's size
    several_inputs = True
    #: whether the method needs the gradient at the layer (else a capture-only pass)
    uses_gradients: ClassVar[bool] = True

    def __init__(self, model: Any, *, layer: str | Sequence[str] | None = None,
                 reshape: Any = None, combine: str = "mean", backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self._reshape = check_reshape(reshape)
        self._combine = check_choice("combine", combine, COMBINES)
        self._requested = self._check_layers(layer)
        self._layers: tuple[str, ...] = self._requested or ()
        self._defaults: dict[tuple[int, ...], str] = {}

    # -- layers ------------------------------------------------------------------------
    def _check_layers(self, layer: object) -> tuple[str, ...] | None:
        if layer is None or layer == AUTO:
            return None
        if isinstance(layer, str):
            return (self._check_layer(layer),)
        if isinstance(layer, Sequence) and layer and all(isinstance(n, str) for n in layer):
            names = tuple(self._check_layer(n) for n in layer)
            if len(set(names)) != len(names):
                raise argument_error("layer", "distinct layer names", list(layer))
            return names
        raise argument_error("layer", "a layer name, a non-empty list of names, None or 'auto'",
                             layer, kind=AttribTypeError)

    @property
    def layer(self) -> str | None:
        """The tapped layer (several joined by ``"+"``); ``None`` until a default is chosen."""
        return "+".join(self._layers) if self._layers else None

    @property
    def layers(self) -> tuple[str, ...]:
        return self._layers

    def _prepare(self, inputs: Any) -> None:
        if self._requested is not None:
            return
        shape = first_shape(self.model, inputs, self.name, self.several_inputs)
        if shape not in self._defaults:
            reshape = self._reshape if not callable(self._reshape) else None
            self._defaults[shape] = default_layer(self.model, inputs, reshape, self.name)
        self._layers = (self._defaults[shape],)

    # -- the method ----------------------------------------------------------------------
    def needs(self) -> GradientNeeds:
        if not self._layers:
            raise argument_error("layer", f"a layer for {self.name!r}", None,
                                 "Call attribute(), which picks the default layer, or pass layer=.")
        return GradientNeeds(layers=self._layers, layer_gradients=self.uses_gradients)

    def weights(self, data: LayerData) -> np.ndarray:
        """Per-channel weights (N, C) of the weighted sum of activation channels."""
        raise NotImplementedError

    def layer_map(self, data: LayerData) -> np.ndarray:
        """The map (N, h, w) before the relu: ``sum_c weights[n, c] * A[n, c]``."""
        weights = self.weights(data).astype(data.activation.dtype, copy=False)
        if data.activation.ndim == 4:
            return np.einsum("nc,nchw->nhw", weights, data.activation)
        return np.einsum("nc,nc...->n...", weights, data.activation)

    @property
    def _stats(self) -> dict[str, Any]:
        """The counters of the :meth:`compute` in progress (call-local, so threads can share
        the instance); an empty throwaway dict outside one."""
        stats = _CALL_STATS.get()
        return {} if stats is None else stats

    def compute(self, result: GradientResult) -> MethodOutput:
        token = _CALL_STATS.set({})
        try:
            return self._compute(result)
        finally:
            _CALL_STATS.reset(token)

    def _compute(self, result: GradientResult) -> MethodOutput:
        layout = self.model.layout
        size = input_hw(as_tuple(result.inputs)[0].shape, layout, self.name)
        maps: dict[str, np.ndarray] = {}
        small: np.ndarray | None = None
        for name in self._layers:
            raw = result.activations[name]
            grid = find_grid(tuple(raw.shape), layout, size, self._reshape, name, self.name)
            activation = grid.to_nchw(raw)
            gradient = None
            if self.uses_gradients:
                gradient = grid.to_nchw(result.layer_gradients[name])
            data = LayerData(name, activation, gradient, grid, raw.ndim, result)
            small = np.maximum(self.layer_map(data), 0)
            maps[name] = resize_linear(small, size)
        stats = {"default_layer": self._requested is None, **self._stats}
        if len(maps) == 1:
            (attribution,) = maps.values()
            return MethodOutput(attribution=attribution, layer_attribution=small, stats=stats)
        stack = np.stack(list(maps.values()))
        if self._combine == "minmax_mean":
            axes = tuple(range(2, stack.ndim))
            low = stack.min(axis=axes, keepdims=True)
            stack = (stack - low) / (stack.max(axis=axes, keepdims=True) - low + 1e-7)
        return MethodOutput(attribution=stack.mean(axis=0), parts=maps, stats=stats)

    def _count(self, key: str, value: int) -> None:
        self._stats[key] = self._stats.get(key, 0) + value

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ", layer='auto'"
        return f"{type(self).__name__}(backend={self.model.backend!r}{layer}, objective={self.objective!r})"


def positions(array: np.ndarray) -> tuple[int, ...]:
    """The spatial axes of a layer array read as (N, C, *spatial): ``(2, 3)`` for (N, C, h, w)."""
    return tuple(range(2, array.ndim))


def chunks(total: int, batch_size: int) -> list[np.ndarray]:
    """Indices 0..total-1 in consecutive chunks of at most ``batch_size``."""
    return [np.arange(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise argument_error("batch_size", "a positive int (masked inputs per model call)",
                             batch_size, kind=AttribTypeError)
    return batch_size
