"""Forward passes with every layer observed or one layer scaled, through hooks scoped to the call.

- :func:`probe` runs the model once under ``no_grad`` with a forward hook on
  every submodule, recording each one's output shape in the order outputs are
  produced, and which only pool or resample (:class:`attrib.LayerInfo`);
- :func:`scaled` holds a forward hook on one layer that returns its output
  multiplied by a mask (Ablation-CAM's primitive);
- :func:`substituted` holds hooks on one layer that replace its output by a
  given tensor, and may run the layer itself on an empty batch (its result is
  dropped anyway), as pytorch-grad-cam's ``AblationLayer`` does by swapping
  the module.

Every hook is removed in ``finally``; the model is never edited. The hooks of
:func:`scaled` and :func:`substituted` act only on forward passes made by the
thread that installed them, so other threads may run the same model meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from attrib._errors import argument_error, shown
from attrib._model import LayerInfo

from ._capture import _HOOKS_LOCK

__all__ = ["probe", "scaled", "substituted", "RESAMPLING"]

#: modules that only pool, resample, reshape or pass their input on
RESAMPLING: tuple[type[nn.Module], ...] = (
    nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd, nn.Upsample, nn.Flatten, nn.Unflatten, nn.Identity,
    nn.modules.dropout._DropoutNd,
)


def probe(model: nn.Module, run: Callable[[], Any]) -> list[LayerInfo]:
    """The submodules that ran once while ``run()`` ran the model, in output order."""
    records: dict[str, list[Any]] = {}
    order: list[str] = []
    resampled: set[tuple[int, int]] = set()
    handles = []

    def hook_for(name: str, module: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if name in records:
                records[name][1] += 1
                return
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            # a pooling module's output, or a container passing such an output on unchanged
            # (an in-place activation after an Identity, as in timm's BatchNormAct2d, returns
            # the same tensor with new values: its version counter tells them apart)
            tensor = isinstance(output, torch.Tensor)
            passes_on = tensor and (id(output), output._version) in resampled
            resamples = isinstance(mod, RESAMPLING) or passes_on
            if resamples and tensor:
                resampled.add((id(output), output._version))
            records[name] = [shape, 1, resamples, output if resamples else None]  # alive: ids stay unique
            order.append(name)
        return hook

    try:
        for name, module in model.named_modules():
            if name and not isinstance(module, torch.jit.ScriptModule):
                try:
                    handles.append(module.register_forward_hook(hook_for(name, module)))
                except RuntimeError:  # modules that take no Python hooks
                    continue
        run()
    finally:
        for handle in handles:
            handle.remove()
    return [LayerInfo(name, records[name][0], bool(records[name][2])) for name in order
            if records[name][0] is not None and records[name][1] == 1]


@contextmanager
def _output_replaced(model: nn.Module, layer: str,
                     replace: Callable[[torch.Tensor], torch.Tensor],
                     skip: bool = False) -> Iterator[None]:
    """While the block runs, ``layer``'s output ``o`` becomes ``replace(o)`` in this thread.

    Forward passes of other threads are left alone; the hooks are removed
    after the block, and the layer must have run exactly once in it. With
    ``skip``, a forward pre-hook hands the layer its tensor arguments cut to
    an empty batch (``[:0]``), so the layer costs next to nothing (``replace``
    then ignores its values); a layer that cannot run on an empty batch raises.
    """
    module = model.get_submodule(layer)
    calls = [0]
    owner = threading.get_ident()

    def empty_batch(mod: nn.Module, args: Any, kwargs: Any) -> Any:
        if threading.get_ident() != owner or calls[0]:
            return None
        cut = tuple(a[:0] if isinstance(a, torch.Tensor) and a.ndim else a for a in args)
        return cut, {k: v[:0] if isinstance(v, torch.Tensor) and v.ndim else v
                     for k, v in kwargs.items()}

    def hook(mod: nn.Module, args: Any, output: Any) -> Any:
        if threading.get_ident() != owner:  # another thread's forward pass: not ours
            return None
        calls[0] += 1
        if not isinstance(output, torch.Tensor):
            raise argument_error("layer", "a layer whose output is one tensor",
                                 shown(f"{layer!r}, which returns a {type(output).__name__}"))
        return replace(output)

    with _HOOKS_LOCK:
        handles = [module.register_forward_hook(hook)]
        if skip:
            handles.append(module.register_forward_pre_hook(empty_batch, with_kwargs=True))
    try:
        yield
    finally:
        with _HOOKS_LOCK:
            for handle in handles:
                handle.remove()
    if calls[0] != 1:
        raise argument_error("layer", "a layer that runs exactly once in the forward pass",
                             shown(f"{layer!r}, which ran {calls[0]} times"))


def scaled(model: nn.Module, layer: str, scale: torch.Tensor) -> ContextManager[None]:
    """While the block runs, ``layer``'s output is multiplied by ``scale`` (hook removed after)."""

    def times_scale(output: torch.Tensor) -> torch.Tensor:
        try:
            return output * scale
        except RuntimeError as error:
            raise argument_error(
                "scale", f"a mask that broadcasts against {layer!r}'s output "
                f"{tuple(output.shape)}", shown(f"shape {tuple(scale.shape)}")) from error

    return _output_replaced(model, layer, times_scale)


def substituted(model: nn.Module, layer: str, activation: torch.Tensor,
                skip: bool) -> ContextManager[None]:
    """While the block runs, ``layer``'s output is ``activation`` (hooks removed after).

    With ``skip`` the layer itself runs on an empty batch: its output only
    tells the trailing shape, which must be ``activation``'s; a layer that
    cannot take an empty batch raises, and the caller runs it again without
    ``skip``.
    """

    def the_activation(output: torch.Tensor) -> torch.Tensor:
        if tuple(output.shape[1:]) != tuple(activation.shape[1:]):
            raise argument_error(
                "activation", f"an array (M, {', '.join(map(str, output.shape[1:]))}) laid out "
                f"as {layer!r}'s output", shown(f"shape {tuple(activation.shape)}"))
        return activation

    return _output_replaced(model, layer, the_activation, skip)
