"""Capture named layers' outputs during one forward pass, through removable forward hooks.

Thread safety: a forward hook sits on a module that other threads may be
running at the same moment (several calls on one model). Each tap therefore
acts only on forward passes made by the thread that installed it, and the
hooks are registered and removed under one lock (torch's handle ids come from
a plain class counter, and the hook dictionaries are shared).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attrib._errors import argument_error, close_matches, shown

__all__ = ["Tap", "tapped"]

# Guards hook registration and removal: ``RemovableHandle`` draws its id from an
# unlocked class counter, so two threads registering at once could share an id.
_HOOKS_LOCK = threading.Lock()


@dataclass
class Tap:
    """One captured layer.

    Attributes
    ----------
    name : str
        The layer's name in ``model.named_modules()``.
    output : Tensor or None
        The tensor the gradient is taken with respect to: the layer's output
        as it flows on (the model continues with a clone of it, so a later
        in-place op cannot overwrite it).
    activation : Tensor or None
        The output's values, detached: the output itself (which nothing
        writes afterwards, see ``output``), or a copy when the output shares
        memory with the layer's inputs.
    rectifiers_before : int
        How many rectifier calls had run when the layer produced its output.
    calls : int
        How many times the layer ran in the forward pass.
    """

    name: str
    output: torch.Tensor | None = None
    activation: torch.Tensor | None = None
    rectifiers_before: int = 0
    calls: int = 0


def check_layers(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The submodules called ``names``; a clear error listing close matches otherwise."""
    modules = []
    for name in names:
        try:
            if not isinstance(name, str) or not name:
                raise AttributeError(name)
            modules.append(model.get_submodule(name))
        except AttributeError:
            known = [n for n, _ in model.named_modules() if n]  # only to explain the error
            near = close_matches(str(name), known)
            hint = (f"Did you mean {' or '.join(repr(n) for n in near)}?" if near
                    else f"Layers near the output: {known[-5:]}")
            raise argument_error("layer", "a layer name of this torch model", name, hint) from None
    return modules


@contextmanager
def tapped(
    model: nn.Module, names: Sequence[str], rectifier_count: Callable[[], int]
) -> Iterator[list[Tap]]:
    """Capture the outputs of the layers ``names`` while the block runs the model once.

    A forward hook on each layer records its output and the current
    ``rectifier_count()``, and hands the rest of the model a clone of the
    output. Every hook is removed in ``finally``. After the block, each layer
    must have run exactly once and returned one tensor.

    A hook acts only on forward passes run by the calling thread, so other
    threads may run (or tap) the same model at the same time.
    """
    modules = check_layers(model, names)
    taps = [Tap(name) for name in names]
    handles = []
    owner = threading.get_ident()
    try:
        for module, tap in zip(modules, taps):
            if isinstance(module, torch.jit.ScriptModule):
                raise argument_error(
                    "layer", "an eager nn.Module to tap",
                    shown(f"{tap.name!r}, a TorchScript {type(module).__name__}"),
                    "TorchScript runs no Python hooks, so its layers cannot be tapped; pass "
                    "the eager model.",
                )
            try:
                with _HOOKS_LOCK:
                    handles.append(
                        module.register_forward_hook(_hook(tap, rectifier_count, owner))
                    )
            except RuntimeError as error:  # TorchScript modules take no Python hooks
                raise argument_error(
                    "layer", "an eager nn.Module to tap",
                    shown(f"{tap.name!r}, a {type(module).__name__}"),
                    "Layers of TorchScript models cannot be tapped; pass the eager model.",
                ) from error
        yield taps
    finally:
        with _HOOKS_LOCK:
            for handle in handles:
                handle.remove()
    for tap in taps:
        if tap.calls != 1:
            raise argument_error(
                "layer",
                "a layer that runs exactly once in the forward pass",
                shown(f"{tap.name!r}, which ran {tap.calls} times"),
                "Choose a layer that is not reused (a reused module such as one ReLU called "
                "several times has no single output)." if tap.calls else
                "This layer is not used by the model's forward pass.",
            )


def _hook(tap: Tap, rectifier_count: Callable[[], int], owner: int) -> Callable[..., Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if threading.get_ident() != owner:  # another thread's forward pass: not ours
            return None
        tap.calls += 1
        if tap.calls > 1:
            return None
        if not isinstance(output, torch.Tensor):
            raise argument_error(
                "layer",
                "a layer whose output is one tensor",
                shown(f"{tap.name!r}, which returns a {type(output).__name__}"),
                "Choose a submodule that returns a tensor (e.g. a convolution or a block).",
            )
        if not output.is_floating_point():
            raise argument_error(
                "layer", "a layer with a floating-point output",
                shown(f"{tap.name!r}, whose output has dtype {output.dtype}"),
            )
        tap.rectifiers_before = rectifier_count()
        flowing = output
        if not flowing.requires_grad and torch.is_grad_enabled():
            # frozen parameters and an input without grad: the layer's gradient still exists
            flowing = output.detach().requires_grad_()
        tap.output = flowing
        # The rest of the model continues with a clone, so the output itself is
        # written by no one: its values are the activation, without a copy,
        # unless it shares memory with the layer's inputs (an identity-like
        # layer returning its input or a view of it), which the caller still
        # holds and may write in place later.
        shared = _shares_memory(output, args)
        tap.activation = output.detach().clone() if shared else output.detach()
        return flowing.clone()

    return hook


def _shares_memory(output: torch.Tensor, args: Any) -> bool:
    """Whether ``output`` lives in the storage of one of the tensors in ``args``."""
    storage = output.untyped_storage().data_ptr()
    stack = list(args) if isinstance(args, (tuple, list)) else [args]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.layout == torch.strided and item.untyped_storage().data_ptr() == storage:
                return True
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False
