"""The cheap per-call paths of the torch backend stay exact.

- ``preserved`` snapshots buffers as one flat copy per dtype and device; it
  must still undo every kind of write a forward pass can make: in-place ops
  (which bump the version counter), writes through ``.data`` and BatchNorm's
  training kernel (which do not), on float, integer, 0-d and NaN buffers.
- a layer tap keeps the output itself as the activation (no copy) unless the
  output shares memory with the layer's inputs.
- the NaN/inf check of a tensor sums first; a finite batch whose sum
  overflows is still accepted, and one NaN anywhere is still refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib_torch._convert import check_inputs
from attrib_torch._state import preserved


class _Writer(nn.Module):
    """Writes its buffers during the forward pass, in every way a model can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 8 * 8, 4)
        self.register_buffer("steps", torch.tensor(0))  # 0-d int64
        self.register_buffer("cache", torch.zeros(3, 8, 8))  # 3-D float
        self.register_buffer("silent", torch.ones(5, dtype=torch.float64))  # other dtype
        self.register_buffer("nan", torch.tensor([1.0, float("nan")]))
        self.register_buffer("halves", torch.ones(4, dtype=torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1  # in place: the version counter moves
        self.cache.copy_(x[0, :1].detach().expand(3, 8, 8))
        self.silent.data.mul_(2.0)  # through .data: the version counter does not move
        self.nan.data[0] = 7.0
        self.halves.data.add_(1.0)
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.parametrize("train", [False, True])
def test_every_kind_of_buffer_write_is_undone(train: bool) -> None:
    torch.manual_seed(0)
    net = _Writer().train(train)
    before = {k: (id(v), v.detach().clone()) for k, v in net.state_dict(keep_vars=True).items()}
    x = torch.randn(2, 2, 8, 8)
    for method, layer in [("saliency", None), ("guided_gradcam", "conv")]:
        if train:
            with pytest.warns(attrib.AttribWarning, match="training mode"):
                attrib.explain(net, x, method=method, target=[0, 1], layer=layer)
        else:
            attrib.explain(net, x, method=method, target=[0, 1], layer=layer)
        state = net.state_dict(keep_vars=True)
        for name, (identity, values) in before.items():  # bit for bit (NaN included)
            assert id(state[name]) == identity, name
            now = state[name].detach()
            assert now.dtype == values.dtype, name
            assert torch.equal(now.view(-1).view(torch.uint8) if now.dim() else now,
                               values.view(-1).view(torch.uint8) if values.dim() else values), name
        assert torch.isnan(net.nan[1]) and net.nan[0] == 1.0 and net.steps == 0


def test_unchanged_buffers_are_not_rewritten() -> None:
    """No write (no version bump) when nothing changed: another thread's backward may need them."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).eval()
    versions = [b._version for b in net.buffers()]
    with preserved(net):
        net(torch.randn(1, 2, 5, 5))
    assert [b._version for b in net.buffers()] == versions


def test_a_replaced_buffer_is_put_back() -> None:
    net = nn.BatchNorm1d(3).eval()
    mean = net.running_mean
    with preserved(net):
        net.running_mean = torch.full((3,), 5.0)
    assert net.running_mean is mean and torch.equal(mean, torch.zeros(3))


class _Passthrough(nn.Module):
    """``head`` returns its input (as Identity does); the parent then writes it in place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Identity()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        y = self.head(h)
        h.mul_(3.0)  # the caller still holds the layer's input and writes it
        return self.fc(F.relu(y).flatten(1))


def test_tap_copies_an_output_that_aliases_the_input() -> None:
    torch.manual_seed(0)
    net = _Passthrough().eval()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        expected = net.conv(x)  # what the layer returned, before the parent's write
    model = attrib.wrap(net)
    result = model.gradients(attrib.GradientRequest(
        inputs=x, targets=np.array([0, 1]), input_gradient=False, layers=("head",)))
    np.testing.assert_array_equal(result.activations["head"], expected.numpy())


def test_tap_activation_is_the_layer_output() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
                        nn.Linear(3 * 8 * 8, 4)).eval()
    x = torch.randn(2, 2, 8, 8)
    result = attrib.wrap(net).gradients(attrib.GradientRequest(
        inputs=x, targets=np.array([0, 1]), layers=("0",)))
    with torch.no_grad():
        expected = net[0](x)  # the in-place ReLU after it must not show in the activation
    np.testing.assert_array_equal(result.activations["0"], expected.numpy())


def test_finite_check_accepts_an_overflowing_sum_and_refuses_one_nan() -> None:
    big = torch.full((2, 2, 2, 2), 3e38)  # each value finite, their float32 sum is inf
    assert not torch.isfinite(big.sum())
    assert check_inputs(big) == (2, 2, 2, 2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 2)).eval().double()
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(2, 2, 2, 2, dtype=torch.float64)
        x[1, 0, 1, 1] = bad
        with pytest.raises(attrib.AttribError, match="finite values"):
            attrib.explain(net, x, method="saliency", target=0)
    both = torch.zeros(1, 8, dtype=torch.float16)
    both[0, 0], both[0, 1] = float("inf"), -float("inf")  # the sum is NaN, not inf
    with pytest.raises(attrib.AttribError, match="finite values"):
        check_inputs(both)
