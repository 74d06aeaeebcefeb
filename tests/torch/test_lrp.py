"""LRP on unmodified torch models: gradient × input, zennit, conservation, errors (issue 23).

zennit (LGPL, a test-only dependency) is the reference for the composites; it
needs its canonizer (BatchNorm merged into the model's copy by hand), which
leaves each BatchNorm dividing by √(1 + eps): the comparison therefore runs
on copies with eps folded into ``running_var`` and eps = 0 (the same
function), while attrib gets the unmodified model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib.rules import lrp_rule_set

from .conftest import assert_unchanged, snapshot
from .lrp_models import eps_folded, informative

pytest.importorskip("torchvision")
zennit = pytest.importorskip("zennit")

TARGETS = [1, 7]


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute value."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


class _Functional(nn.Module):
    """ReLU / max-pool net with biases: functional relu, one reused ReLU, ``+`` in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act(self.conv1(x)), 2)
        y = self.act(self.conv2(x))
        x = torch.relu(self.conv3(y) + x)  # a residual "+" written in forward
        x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model.double().eval()


@pytest.mark.parametrize("net", ["functional", "sequential"])
def test_lrp_zero_equals_gradient_times_input(net: str) -> None:
    model = _seeded(_Functional() if net == "functional" else nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3),
        nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 5)).double())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = snapshot(model)
    lrp = attrib.explain(model, x, method="lrp", composite="zero", target=[0, 3])
    gxi = attrib.explain(model, x, method="gradient_x_input", target=[0, 3])
    assert _rel(lrp.attribution, gxi.attribution) <= 1e-10
    assert lrp.stats["rules"]["convolution"] == 3 if net == "functional" else 2
    assert_unchanged(model, before)


class _Residual(nn.Module):
    """``a + b`` then ``a`` rectified: out of place, in place after the sum (the sum's term
    changes after it was taken), or the sum written in place into a view."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x), self.conv2(x)
        if self.form == "view":
            rectified = torch.relu(a)
            y = a.view(a.shape)
            y += b  # a view: the sum is copied into it
            a = rectified
        else:
            y = a + b
            a = torch.relu(a) if self.form == "out of place" else a.relu_()
        return self.fc(torch.flatten(torch.relu(y) + a, 1))


def test_a_term_changed_in_place_after_its_addition_gives_the_same_map() -> None:
    """An addition keeps its terms by reference; one changed in place later is caught and the
    map computed again from copies, equal to the map of the out-of-place model."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    maps = {}
    for form in ("out of place", "in place later", "view"):
        model = _seeded(_Residual(form))
        before = snapshot(model)
        maps[form] = attrib.explain(model, x, method="lrp", target=[0, 3]).attribution
        assert_unchanged(model, before)
    np.testing.assert_array_equal(maps["in place later"], maps["out of place"])
    np.testing.assert_array_equal(maps["view"], maps["out of place"])


def test_layer_gradients_beside_lrp_are_true_and_leave_the_relevance_as_alone() -> None:
    """A request for LRP and a layer's gradient: rectifiers keep their masks for the true
    pass (in-place ReLU copied, not rectified in place) and the relevance is unchanged."""
    model = _seeded(_Functional())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    wrapped, rules, targets = attrib.wrap(model), lrp_rule_set(), np.array([0, 3])
    both = wrapped.gradients(attrib.GradientRequest(inputs=x, targets=targets, rule=rules,
                                                    layers=("conv2",), layer_gradients=True))
    alone = wrapped.gradients(attrib.GradientRequest(inputs=x, targets=targets, rule=rules))
    true = wrapped.gradients(attrib.GradientRequest(inputs=x, targets=targets, layers=("conv2",),
                                                    layer_gradients=True))
    assert both.stats["backward_passes"] == 2
    np.testing.assert_array_equal(both.input_gradient, alone.input_gradient)
    np.testing.assert_array_equal(both.layer_gradients["conv2"], true.layer_gradients["conv2"])


def _zennit(model: nn.Module, x: torch.Tensor, composite: str, canonizer: type) -> np.ndarray:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat

    canonizers = [canonizer()]
    if composite == "epsilon_gamma_box":
        low = torch.full((1, *x.shape[1:]), -3.0, dtype=x.dtype)
        comp = EpsilonGammaBox(low=low, high=-low, canonizers=canonizers)
    else:
        comp = {"epsilon_plus_flat": EpsilonPlusFlat,
                "epsilon_alpha2_beta1": EpsilonAlpha2Beta1}[composite](canonizers=canonizers)
    rows = torch.arange(len(x))
    with torch.no_grad():
        out = model(x)
    seed = torch.zeros_like(out)
    seed[rows, TARGETS] = out[rows, TARGETS]  # each logit's relevance is its value
    with Gradient(model=model, composite=comp) as attributor:
        _, relevance = attributor(x.clone(), seed)
    return relevance.numpy()


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    return informative("vgg16", size=32)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return informative("resnet18", size=48)


COMPOSITES = ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]


def _ours(model: nn.Module, x: torch.Tensor, composite: str) -> np.ndarray:
    bounds = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
    return attrib.explain(model, x, method="lrp", composite=composite, target=TARGETS,
                          **bounds).attribution


@pytest.mark.parametrize("composite", COMPOSITES)
def test_equal_to_zennit_on_vgg16(vgg16: nn.Module, composite: str) -> None:
    from zennit.torchvision import VGGCanonizer

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    before = snapshot(vgg16)
    ours = _ours(vgg16, x, composite)
    assert _rel(ours, _zennit(vgg16, x, composite, VGGCanonizer)) <= 1e-6
    assert_unchanged(vgg16, before)


@pytest.mark.parametrize("composite", COMPOSITES)
def test_equal_to_zennit_on_resnet18(resnet18: nn.Module, composite: str) -> None:
    from zennit.torchvision import ResNetCanonizer

    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    before = snapshot(resnet18)
    ours = _ours(resnet18, x, composite)  # the unmodified model: BatchNorm merged on the fly
    assert _rel(ours, _zennit(eps_folded(resnet18), x, composite, ResNetCanonizer)) <= 1e-6
    # the same function with eps folded: attrib's merge is exact, eps included
    assert _rel(ours, _ours(eps_folded(resnet18), x, composite)) <= 1e-12
    assert_unchanged(resnet18, before)


def test_zennit_default_eps_leaves_a_batchnorm_behind(resnet18: nn.Module) -> None:
    """zennit's merge keeps eps in a BatchNorm of unit statistics: x / √(1 + eps) per block."""
    from zennit.torchvision import ResNetCanonizer

    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = _ours(resnet18, x, "epsilon_plus_flat")
    default = _rel(ours, _zennit(resnet18, x, "epsilon_plus_flat", ResNetCanonizer))
    assert 1e-6 < default < 1e-2  # measured 5.9e-5 at eps = 1e-5


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
@pytest.mark.parametrize("composite", ["zero", "epsilon_plus_flat"])
def test_conservation_with_zero_biases(name: str, composite: str) -> None:
    model = informative(name, size=32, zero_bias=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    e = attrib.explain(model, x, method="lrp", composite=composite, epsilon=0.0, stabilizer=0.0,
                       target=TARGETS)
    logits = e.logits[np.arange(2), TARGETS]
    sums = e.attribution.reshape(2, -1).sum(axis=1)
    assert np.abs(sums - logits).max() <= 1e-8 * np.abs(logits).max()


def test_a_layer_rule_by_name_equals_the_first_layer_rule() -> None:
    model = _seeded(_Functional())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    by_name = attrib.explain(model, x, method="lrp", composite="epsilon", rules={"conv1": "flat"})
    by_kind = attrib.explain(model, x, method="lrp", composite="epsilon", rules={"first": "flat"})
    plain = attrib.explain(model, x, method="lrp", composite="epsilon")
    np.testing.assert_array_equal(by_name.attribution, by_kind.attribution)
    assert _rel(by_name.attribution, plain.attribution) > 1e-3


class _Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.gelu(self.conv(x)).mean((2, 3)))


class _PreActivation(nn.Module):
    """A BatchNorm that follows no convolution (DenseNet's pre-activation)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(torch.relu(self.bn(x))).mean((2, 3)))


@pytest.mark.parametrize(("model", "named"), [(_Gelu, "gelu"), (_PreActivation, "batch_norm")])
def test_an_operation_without_a_rule_is_named_and_the_model_left_as_found(
        model: type[nn.Module], named: str) -> None:
    net = model().eval()
    before = snapshot(net)
    with pytest.raises(attrib.AttribError, match=named):
        attrib.explain(net, torch.randn(1, 3, 6, 6), method="lrp")
    assert_unchanged(net, before)


@pytest.mark.parametrize(("options", "match"), [
    ({"composite": "epsilon_plus_flatt"}, "Did you mean 'epsilon_plus_flat'"),
    ({"rules": {"convolution": "zplush"}}, "zplus"),
    ({"rules": {"conv9": "flat"}}, "Did you mean 'conv3'"),
    ({"rules": {"act": "flat"}}, "without a weight"),
    ({"composite": "epsilon_gamma_box"}, "low= and high="),
    ({"composite": "epsilon_gamma_box", "low": np.zeros((5, 1, 1)), "high": 1.0}, r"\(5, 1, 1\)"),
    ({"composite": "epsilon_gamma_box", "low": 1.0, "high": 0.0}, "low <= high"),
    ({"objective": "softmax"}, "objective"),
])
def test_bad_lrp_options_get_clear_errors(options: dict, match: str) -> None:
    net = _seeded(_Functional())
    before = snapshot(net)
    with pytest.raises(attrib.AttribError, match=match):
        attrib.explain(net, torch.randn(1, 3, 8, 8, dtype=torch.float64), method="lrp", **options)
    assert_unchanged(net, before)
