"""Reach of LRP and DeepLIFT on torchvision classifiers: a map that checks out, or a named refusal.

A small subset of ``benchmarks/reach_rules.py`` (which runs every torchvision
classifier; the table is in docs/methods/lrp.md), chosen for the operations it
covers: ShuffleNet's channel shuffle (``view``/``transpose``/``chunk``/``cat``)
and depthwise convolutions without a ReLU after them, where z⁺ drops relevance
by its definition; RegNet's grouped convolutions; SqueezeNet's concatenated
fire modules and ceil-mode max pooling. Models carry information (seeded
biases, BatchNorm scale/shift, measured statistics; float64, eval mode).

- LRP: ``epsilon_plus_flat`` gives a finite map; with ε = stabiliser = 0 on a
  zero-bias copy every rule conserves, so the map sums to the logit minus what
  z⁺ drops where its denominator is 0, found independently of attrib
  (``lrp_models.zplus_dropped``).
- DeepLIFT: the map sums to ``f(x) − f(x0)`` (a plain forward pass).
- An operation without a rule raises an ``AttribError`` naming it.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import attrib  # noqa: E402

from .lrp_models import informative, zero_bias, zplus_dropped  # noqa: E402

TARGETS = [1, 7]


def _logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()[np.arange(len(x)), TARGETS]


@pytest.mark.parametrize("name,size,drops", [("shufflenet_v2_x0_5", 32, True),
                                             ("regnet_x_400mf", 32, False),
                                             ("squeezenet1_1", 64, False)])
def test_lrp_conserves_and_deeplift_sums_to_delta(name: str, size: int, drops: bool) -> None:
    model = informative(name, size=size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, size, size))
    lrp = attrib.explain(model, x, method="lrp", composite="epsilon_plus_flat", target=TARGETS)
    assert np.isfinite(lrp.attribution).all() and np.abs(lrp.attribution).max() > 0
    zero = zero_bias(model)
    attribution, dropped = zplus_dropped(zero, lambda: attrib.explain(
        zero, x, method="lrp", composite="epsilon_plus_flat", epsilon=0.0, stabilizer=0.0,
        target=TARGETS).attribution)
    logit = _logits(zero, x)
    total = attribution.reshape(2, -1).sum(axis=1)
    assert np.abs(total - (logit - dropped)).max() <= 1e-8 * np.abs(logit).max()
    assert (np.abs(dropped).max() > 1e-3 * np.abs(logit).max()) == drops  # the case is covered

    x0 = 0.3 * rng.normal(size=(1, 3, 1, 1))
    deeplift = attrib.explain(model, x, method="deeplift", target=TARGETS, baseline=x0)
    delta = _logits(model, x) - _logits(model, np.broadcast_to(x0, x.shape).copy())
    assert np.abs(delta).min() > 1e-3
    total = deeplift.attribution.reshape(2, -1).sum(axis=1)
    assert np.abs(total - delta).max() <= 1e-6 * np.abs(delta).max()


class _Rounding(torch.nn.Module):
    """A dense layer whose output is rounded away: ``(h + 1e16) - 1e16`` in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2).double()
        with torch.no_grad():
            self.fc.weight.fill_(0.5)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fc(x) + 1e16) - 1e16


def test_deeplift_warns_where_the_sum_misses_the_delta_by_more_than_rounding() -> None:
    x = np.array([[0.5, -1.0, 2.0, 0.25]])
    with pytest.warns(attrib.AttribWarning, match="summation-to-delta"):
        out = attrib.explain(_Rounding(), x, method="deeplift", target=0, baseline=0.0)
    assert out.stats["delta"][0] == 0.875  # the map sums to w·Δx; the rounded logits are 0
    with pytest.warns(attrib.AttribWarning, match="summation-to-delta"):
        attrib.explain(_Rounding(), x, method="deeplift_shap", target=0,
                       baselines=np.zeros((2, 4)))
