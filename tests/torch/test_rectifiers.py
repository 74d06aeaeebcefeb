"""Guided and deconvnet rules on every rectifier spelling, against a hand-built reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib_torch._model import TorchModel
from attrib_torch._rectifiers import RectifierMode, Rectify, RuleState

from .conftest import (
    RELU6_SPELLINGS,
    RELU_SPELLINGS,
    TinyNet,
    assert_unchanged,
    batch,
    input_grad,
    reference_act,
    snapshot,
    tiny_net,
    with_act,
)

SPELLINGS = {**{k: (v, None) for k, v in RELU_SPELLINGS.items()},
             **{k: (v, 6.0) for k, v in RELU6_SPELLINGS.items()}}
TARGETS = [3, 1]


def _inputs(upper: float | None) -> torch.Tensor:
    # relu6 spellings need pre-activations above 6 too, so that the upper bound matters
    return batch(scale=1.0 if upper is None else 12.0)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_rule_equals_explicit_reference(spelling: str, rule: str) -> None:
    act, upper = SPELLINGS[spelling]
    net = tiny_net(act)
    x = _inputs(upper)
    before = snapshot(net)
    result = TorchModel(net).gradients(
        attrib.GradientRequest(inputs=x, targets=np.array(TARGETS), rule=rule)
    )
    assert_unchanged(net, before)
    expected = input_grad(with_act(net, reference_act(rule, upper)), x, TARGETS).numpy()
    np.testing.assert_array_equal(result.input_gradient, expected)
    assert result.stats["rectifiers"] == 3
    vanilla = input_grad(net, x, TARGETS).numpy()
    assert not np.allclose(result.input_gradient, vanilla), "the rule changed nothing"


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_vanilla_equals_plain_autograd(spelling: str) -> None:
    act, upper = SPELLINGS[spelling]
    net = tiny_net(act)
    x = _inputs(upper)
    result = TorchModel(net).gradients(attrib.GradientRequest(inputs=x, targets=np.array(TARGETS)))
    np.testing.assert_array_equal(result.input_gradient, input_grad(net, x, TARGETS).numpy())


def test_upper_bound_matters_for_relu6() -> None:
    """The reference with upper=None differs, so the relu6 tests check the upper mask."""
    net = tiny_net(RELU6_SPELLINGS["F.relu6"])
    x = _inputs(6.0)
    clipped = input_grad(with_act(net, reference_act("guided", 6.0)), x, TARGETS)
    unclipped = input_grad(with_act(net, reference_act("guided", None)), x, TARGETS)
    assert not torch.allclose(clipped, unclipped)


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
def test_rectify_backward_is_the_numpy_reference(rule: str) -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 0.5, 3.0, 6.0, 7.0], dtype=torch.float64)
    grad_out = torch.tensor([1.0, -1.0, 2.0, -3.0, 4.0, -5.0, 6.0], dtype=torch.float64)
    for upper in (None, 6.0):
        leaf = x.clone().requires_grad_()
        out = Rectify.apply(leaf, upper, RuleState(rule))
        (got,) = torch.autograd.grad(out, leaf, grad_out)
        ref = attrib.get_rule(rule).reference(x.numpy(), grad_out.numpy(), upper)
        np.testing.assert_array_equal(got.numpy(), ref)


def test_mode_is_scoped_and_counts() -> None:
    state = RuleState("guided")
    x = torch.randn(4, requires_grad=True)
    with RectifierMode(state) as mode:
        F.relu(x)
        torch.clamp(x, min=0)  # not a rectifier
        torch.maximum(x, torch.zeros(()))  # not a rectifier
        F.hardtanh(x, -1.0, 1.0)  # lower bound not 0: not a rectifier
        F.leaky_relu(x)
        x.relu()
    assert mode.count == 2
    y = F.relu(x)  # outside the mode: the native op
    assert y.grad_fn is not None and "Relu" in type(y.grad_fn).__name__


class _Smooth(nn.Module):
    def __init__(self, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 8 * 8, 4)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.activation == "gelu":
            x = F.gelu(x)
        elif self.activation == "clamp":
            x = x.clamp(min=0)
        else:
            x = F.hardtanh(x)  # min_val=-1: not a rectifier
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("activation", ["gelu", "clamp", "hardtanh(-1, 1)"])
@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_warns_when_the_rule_changed_nothing(activation: str, method: str) -> None:
    torch.manual_seed(0)
    net = _Smooth(activation).double().eval()
    x = batch()
    with pytest.warns(attrib.AttribWarning, match="changed nothing"):
        explanation = attrib.explain(net, x, method=method, target=TARGETS)
    assert explanation.stats["rectifiers"] == 0
    np.testing.assert_array_equal(explanation.attribution, input_grad(net, x, TARGETS).numpy())


def test_no_warning_for_vanilla_without_rectifiers() -> None:
    torch.manual_seed(0)
    net = _Smooth("gelu").double().eval()
    attrib.explain(net, batch(), method="saliency")  # AttribWarning is an error in the suite


def test_tiny_net_spellings_are_distinct() -> None:
    """The reused-module spelling really calls one module three times."""
    net = tiny_net(RELU_SPELLINGS["one nn.ReLU reused"])
    calls = []
    handle = net.relu_inplace.register_forward_hook(lambda *a: calls.append(1))
    try:
        net(batch())
    finally:
        handle.remove()
    assert len(calls) == 3
    assert isinstance(net, TinyNet)


def test_torchscript_is_out_of_reach_and_says_so() -> None:
    net = tiny_net(RELU_SPELLINGS["F.relu"])
    x = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in 2.14
        traced = torch.jit.trace(net, x)
    with pytest.warns(attrib.AttribWarning, match="TorchScript"):
        e = attrib.explain(traced, x, method="guided_backprop", target=TARGETS)
    assert e.stats["rectifiers"] == 0
    np.testing.assert_allclose(e.attribution, input_grad(net, x, TARGETS).numpy(), rtol=1e-12)
    with pytest.raises(attrib.AttribError, match="TorchScript"):
        attrib.explain(traced, x, method="gradcam", layer="conv2")
