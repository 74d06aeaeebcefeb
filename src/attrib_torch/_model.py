"""The torch adapter: an unmodified ``nn.Module`` seen as an :class:`attrib.Model`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attrib import AttribWarning, GradientRequest, GradientResult, Model, resolve_targets
from attrib._errors import AttribError, AttribTypeError, argument_error, shown
from attrib._rules import get_rule
from attrib._targets import check_objective

from ._capture import Tap, check_layers, tapped
from ._convert import as_numpy, as_tensor, check_inputs
from ._rectifiers import RectifierMode, RuleState
from ._state import preserved

__all__ = ["TorchModel"]


class TorchModel(Model):
    """A torch ``nn.Module`` classifier as an :class:`attrib.Model` (layout NCHW).

    The module is used as it is, on the device and in the dtype of its
    parameters, and is left exactly as found after every call, also one that
    raised: no module is replaced, every hook is removed, ``training`` flags,
    ``requires_grad`` and parameters are untouched (no parameter gradient is
    ever computed) and buffers are restored bit for bit.

    Rectifier rules (guided backprop, deconvnet) are applied by a
    ``TorchFunctionMode`` scoped to the forward pass of one call (see
    :mod:`attrib_torch._rectifiers` for the spellings caught). TorchScript
    models and reentrant activation checkpointing are out of its reach; a
    :class:`attrib.AttribWarning` says so when a guided rule found no rectifier.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier mapping a batch (N, C, H, W) to logits (N, classes).

    Examples
    --------
    >>> import torch, attrib
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    >>> attrib.explain(net, torch.ones(2, 1, 2, 2), method="saliency", target=1).attribution.shape
    (2, 1, 2, 2)
    """

    backend = "torch"

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise argument_error(
                "model", "a torch.nn.Module", shown(f"an object of type {type(model).__name__}"),
                kind=AttribTypeError,
            )
        self._model = model

    # -- the Model interface ---------------------------------------------------------
    @property
    def layout(self) -> str:
        return "NCHW"

    @property
    def native(self) -> nn.Module:
        return self._model

    def layer_names(self) -> Sequence[str]:
        return [name for name, _ in self._model.named_modules() if name]

    def input_shape(self, inputs: Any) -> tuple[int, ...]:
        return check_inputs(inputs)

    def to_numpy(self, inputs: Any) -> np.ndarray:
        check_inputs(inputs)
        return as_numpy(inputs) if isinstance(inputs, torch.Tensor) else np.array(inputs, copy=True)

    def forward(self, inputs: Any) -> np.ndarray:
        check_inputs(inputs)
        x = self._tensor(inputs)
        with preserved(self._model), torch.no_grad():
            logits = self._logits(x)
        return as_numpy(logits)

    # -- randomised copies (attrib.evaluate) --------------------------------------------------
    def parameter_layers(self) -> Sequence[str]:
        """Modules owning parameters directly, in definition order (``"conv1"``, ..., ``"fc"``)."""
        return [name for name, module in self._model.named_modules()
                if name and any(True for _ in module.parameters(recurse=False))]

    def randomized(self, layers: Sequence[str], seed: int = 0) -> TorchModel:
        """A :class:`TorchModel` over ``copy.deepcopy`` of the module, ``layers`` re-drawn.

        See :meth:`attrib.Model.randomized` for the distribution. The user's
        module is only read.
        """
        import copy

        from attrib._randomize import check_layers, redrawn

        names = check_layers(layers, list(self.parameter_layers()), self.backend)
        with preserved(self._model):
            clone = copy.deepcopy(self._model)
        modules = dict(clone.named_modules())
        with torch.no_grad():
            for layer in names:
                for pname, param in modules[layer].named_parameters(recurse=False):
                    value = param.detach().cpu().double().numpy()
                    new = redrawn(value, seed=seed, layer=layer, name=pname)
                    param.copy_(torch.from_numpy(new))  # copy_ casts to its dtype and device
        return TorchModel(clone)

    def gradients(self, request: GradientRequest) -> GradientResult:
        """One forward pass and the backward pass(es) ``request`` needs.

        ``stats`` holds ``backward_passes`` (0, 1 or 2), ``rule`` and, when a
        rule other than vanilla was applied, ``rectifiers`` (calls intercepted).
        """
        check_inputs(request.inputs)
        check_objective(request.objective)
        rule = get_rule(request.rule).name
        layers = tuple(request.layers)
        check_layers(self._model, layers)
        with torch.inference_mode(False):  # also when called under torch.inference_mode()
            x = self._tensor(request.inputs).requires_grad_(request.input_gradient)
        ruled = rule != "vanilla" and request.input_gradient
        state = RuleState(rule)
        mode = RectifierMode(state) if ruled else None

        def count() -> int:
            return mode.count if mode is not None else 0

        with preserved(self._model), torch.inference_mode(False), torch.enable_grad():
            with tapped(self._model, layers, count) as taps:
                if mode is not None:
                    with mode:
                        logits = self._logits(x)
                else:
                    logits = self._logits(x)
            targets = resolve_targets(request.targets, as_numpy(logits))
            score = _score(logits, targets, request.objective)
            stats: dict[str, Any] = {"rule": rule}
            if mode is not None:
                stats["rectifiers"] = mode.count
                if mode.count == 0:
                    warnings.warn(
                        f"rule {rule!r} changed nothing: no rectifier (ReLU, ReLU6, hardtanh "
                        "with min 0) ran in the model's forward pass, so the map equals the "
                        "vanilla gradient. Smooth activations (GELU, SiLU, ...), "
                        "clamp(min=0)/maximum, TorchScript and reentrant checkpointing are not "
                        "rectifiers attrib can see.",
                        AttribWarning,
                        stacklevel=4,
                    )
            input_gradient, layer_gradients, passes = self._backward(
                score, x, taps, request, state, count()
            )
        stats["backward_passes"] = passes
        return GradientResult(
            inputs=as_numpy(x),
            logits=as_numpy(logits),
            targets=targets,
            input_gradient=input_gradient,
            activations={tap.name: as_numpy(tap.activation) for tap in taps
                         if tap.activation is not None},
            layer_gradients=layer_gradients,
            stats=stats,
        )

    # -- helpers -----------------------------------------------------------------------
    def _backward(
        self, score: torch.Tensor, x: torch.Tensor, taps: list[Tap], request: GradientRequest,
        state: RuleState, rectifiers: int,
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray], int]:
        """Input and layer gradients; layer gradients are always the true ones.

        ``rectifiers`` is the number of rectifier calls routed through ``state``'s
        rule in the forward pass (0 when no rule was applied).
        """
        rule = state.rule
        wanted_layers = [tap for tap in taps if request.layer_gradients]
        outputs = [tap.output for tap in wanted_layers if tap.output is not None]
        if not request.input_gradient and not outputs:
            return None, {}, 0
        # A rectifier that ran after a layer's output may lie between it and the
        # logits; then the rule would corrupt that layer's gradient: two passes.
        after = any(tap.rectifiers_before < rectifiers for tap in wanted_layers)
        if rule != "vanilla" and outputs and after and request.input_gradient:
            state.rule = "vanilla"
            layer_grads = _grad(score, outputs, retain_graph=True)
            state.rule = rule
            input_grad: torch.Tensor | None = _grad(score, [x])[0]
            passes = 2
        else:
            grads = _grad(score, ([x] if request.input_gradient else []) + outputs)
            input_grad = grads[0] if request.input_gradient else None
            layer_grads = grads[1:] if request.input_gradient else grads
            passes = 1
        return (
            as_numpy(input_grad) if input_grad is not None else None,
            {tap.name: as_numpy(g) for tap, g in zip(wanted_layers, layer_grads)},
            passes,
        )

    def _device_dtype(self) -> tuple[torch.device, torch.dtype | None]:
        tensors = list(self._model.parameters()) + list(self._model.buffers())
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
        return device, dtype

    def _tensor(self, inputs: Any) -> torch.Tensor:
        device, dtype = self._device_dtype()
        return as_tensor(inputs, device, dtype)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        try:
            # a model may rectify its input in place: never in place on the leaf
            logits = self._model(x.clone() if x.requires_grad else x)
        except AttribError:  # ours, e.g. from a layer tap: already clear
            raise
        except (RuntimeError, IndexError, ValueError) as error:  # shapes/dtypes the model rejects
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise argument_error(
                "inputs",
                "a batch this model accepts",
                shown(f"shape {tuple(x.shape)} ({x.dtype}), on which the model raised "
                      f"{type(error).__name__}: {message}"),
                "Check the batch axis, the number of channels, the image size and the layout "
                "(NCHW); the model's own error is chained above.",
            ) from error
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            given = (f"an output of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
                     else f"an output of type {type(logits).__name__}")
            raise argument_error(
                "model",
                f"a classifier returning one tensor of logits, shape ({x.shape[0]}, classes)",
                shown(given),
                "Wrap the model so that it returns the logits (e.g. take the first output, "
                "or call model.eval() for models with auxiliary outputs in training mode).",
            )
        if not logits.is_floating_point():
            raise argument_error("model", "floating-point logits", shown(f"dtype {logits.dtype}"))
        return logits



def _score(logits: torch.Tensor, targets: np.ndarray, objective: str) -> torch.Tensor:
    """Sum over samples of each sample's score (see :mod:`attrib._targets`)."""
    if objective == "log_softmax":
        values = F.log_softmax(logits, dim=1)
    elif objective == "softmax":
        values = F.softmax(logits, dim=1)
    else:
        values = logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    index = torch.as_tensor(targets, dtype=torch.long, device=logits.device)
    return values[rows, index].sum()


def _grad(
    score: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool = False
) -> list[torch.Tensor]:
    """Gradients of ``score`` at ``inputs`` only (never at parameters); zeros where unused."""
    if not inputs:
        return []
    if not score.requires_grad:  # the score does not depend on anything differentiable
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(
        score, inputs, retain_graph=retain_graph, allow_unused=True, materialize_grads=True
    )
    return list(grads)
