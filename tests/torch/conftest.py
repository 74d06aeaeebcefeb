"""Shared pieces of the torch backend tests: tiny models, an explicit rule reference, state checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib

# -- an explicit, independent reference of the rules ---------------------------------------


class ReferenceRectifier(torch.autograd.Function):
    """``min(max(x, 0), upper)`` whose backward is the core's NumPy reference of ``rule``.

    The mask comes from the saved *input* and the rule from
    :meth:`attrib.GuidedActivation.backward` applied in NumPy, so it shares no
    code with the backend.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, rule: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.upper, ctx.rule = upper, rule
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        x_np = x.detach().numpy()
        local = (x_np > 0) & (x_np < ctx.upper) if ctx.upper is not None else x_np > 0
        grad = attrib.get_rule(ctx.rule).backward(grad_output.numpy(), local.astype(x_np.dtype))
        return torch.from_numpy(np.ascontiguousarray(grad)), None, None


# -- a tiny CNN whose rectifier is spelled in any of the ways a model may spell it -------

Act = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]

RELU_SPELLINGS: dict[str, Act] = {
    "nn.ReLU": lambda m, t, i: m.relus[i](t),
    "nn.ReLU(inplace=True)": lambda m, t, i: m.relus_inplace[i](t),
    "one nn.ReLU reused": lambda m, t, i: m.relu_inplace(t),
    "F.relu": lambda m, t, i: F.relu(t),
    "F.relu(inplace=True)": lambda m, t, i: F.relu(t, inplace=True),
    "torch.relu": lambda m, t, i: torch.relu(t),
    "torch.relu_": lambda m, t, i: torch.relu_(t),
    "Tensor.relu": lambda m, t, i: t.relu(),
    "Tensor.relu_": lambda m, t, i: t.relu_(),
    "torch.ops.aten.relu": lambda m, t, i: torch.ops.aten.relu(t),
    "torch.ops.aten.relu_": lambda m, t, i: torch.ops.aten.relu_(t),
    "torch.ops.aten.relu.default": lambda m, t, i: torch.ops.aten.relu.default(t),
}
RELU6_SPELLINGS: dict[str, Act] = {
    "nn.ReLU6": lambda m, t, i: m.relu6s[i](t),
    "nn.ReLU6(inplace=True)": lambda m, t, i: m.relu6s_inplace[i](t),
    "F.relu6": lambda m, t, i: F.relu6(t),
    "F.hardtanh(min_val=0, max_val=6)": lambda m, t, i: F.hardtanh(t, min_val=0.0, max_val=6.0),
    "F.hardtanh(0, 6, inplace=True)": lambda m, t, i: F.hardtanh(t, 0.0, 6.0, True),
    "nn.Hardtanh(0, 6)": lambda m, t, i: m.hardtanhs[i](t),
    "torch.ops.aten.hardtanh(0, 6)": lambda m, t, i: torch.ops.aten.hardtanh(t, 0.0, 6.0),
    "torch.ops.aten.relu6": lambda m, t, i: torch.ops.aten.relu6(t),
}


def reference_act(rule: str, upper: float | None) -> Act:
    return lambda m, t, i: ReferenceRectifier.apply(t, upper, rule)


class TinyNet(nn.Module):
    """conv → act → conv → act → maxpool → linear → act → linear, for (N, 2, 8, 8) inputs."""

    def __init__(self, act: Act, classes: int = 5) -> None:
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, classes)
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(3))
        self.relus_inplace = nn.ModuleList(nn.ReLU(inplace=True) for _ in range(3))
        self.relu_inplace = nn.ReLU(inplace=True)
        self.relu6s = nn.ModuleList(nn.ReLU6() for _ in range(3))
        self.relu6s_inplace = nn.ModuleList(nn.ReLU6(inplace=True) for _ in range(3))
        self.hardtanhs = nn.ModuleList(nn.Hardtanh(0.0, 6.0) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self, self.conv1(x), 0)
        x = self.act(self, self.conv2(x), 1)
        x = self.pool(x).flatten(1)
        x = self.act(self, self.fc1(x), 2)
        return self.fc2(x)


def tiny_net(act: Act, seed: int = 0, dtype: torch.dtype = torch.float64) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(act).to(dtype).eval()


def with_act(net: TinyNet, act: Act) -> TinyNet:
    """A copy of ``net`` (same weights) whose rectifiers are ``act``: the hand-built reference."""
    ref = TinyNet(act).to(next(net.parameters()).dtype).eval()
    ref.load_state_dict(net.state_dict())
    return ref


def batch(seed: int = 1, scale: float = 1.0, n: int = 2, dtype: torch.dtype = torch.float64,
          shape: tuple[int, ...] = (2, 8, 8)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((n, *shape), generator=generator) * scale).to(dtype)


def input_grad(model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Plain autograd: gradient of sum_i logits[i, t_i] at x."""
    x = x.detach().clone().requires_grad_()
    logits = model(x)
    score = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad


# -- the model's state, before and after -----------------------------------------------------

_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
    "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
    "_global_backward_pre_hooks", "_global_forward_hooks_always_called",
)


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> np.ndarray:
    """``layer``'s output on ``x`` (N, C, h, w), by a forward hook removed afterwards."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0].numpy()


def _observable(model: nn.Module) -> dict[str, Any]:
    """Module identities, flags, hooks: what a call must leave as it was (tensors aside)."""
    import torch.nn.modules.module as module_mod

    return {
        "modules": [(name, id(m)) for name, m in model.named_modules(remove_duplicate=False)],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "hooks": [
            (name, attr, tuple(getattr(m, attr, {}) or {}))
            for name, m in model.named_modules()
            for attr in _HOOK_DICTS
        ],
        "global_hooks": [tuple(getattr(module_mod, attr, {}) or {}) for attr in _GLOBAL_HOOKS],
        "tensor_hooks": _tensor_hooks(model),
    }


def _tensor_hooks(model: nn.Module) -> list[tuple[str, int, int, int]]:
    """(name, tensor hooks, post-accumulate-grad hooks, grad_fn hooks) of every parameter/buffer."""
    counts = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        node = tensor.grad_fn
        node_hooks = len(node._backward_hooks or {}) if node is not None and hasattr(
            node, "_backward_hooks") else 0
        counts.append((name, len(tensor._backward_hooks or {}),
                       len(getattr(tensor, "_post_accumulate_grad_hooks", None) or {}),
                       node_hooks))
    return counts


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything a call must leave as it was."""
    return {
        **_observable(model),
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "tensor_ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
    }


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    """``model`` is as :func:`snapshot` saw it (tensors compared in place, bit for bit)."""
    after = _observable(model)
    for key, value in after.items():
        assert value == before[key], key
    assert all(not hooks for _, attr, hooks in after["hooks"] if "_forward" in attr or
               "_backward" in attr), "a hook was left on the model"
    assert all(sum(counts[1:]) == 0 for counts in after["tensor_hooks"]), "a tensor hook was left"
    state = model.state_dict(keep_vars=True)
    assert {k: id(v) for k, v in state.items()} == before["tensor_ids"]
    for name, value in before["state"].items():
        now = state[name].detach()
        assert now.dtype == value.dtype and torch.equal(now, value), f"{name} changed"


@pytest.fixture
def relu_net() -> TinyNet:
    return tiny_net(RELU_SPELLINGS["nn.ReLU"])
