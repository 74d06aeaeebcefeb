"""DeepLIFT (rescale rule) on torch: summation-to-delta, Captum, and the rules' NumPy references.

Models carry information (``lrp_models.informative``: seeded biases, BatchNorm
scale/shift and statistics measured on random images, eval mode, float64).
``f(x) - f(x0)`` is computed by a plain forward pass of the unmodified model.
Captum's ``DeepLift`` is exact on ``vgg16`` only with a copy between each ReLU
and the max-pool after it (captum#1104); attrib is given the model as it is.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import attrib  # noqa: E402
from attrib.rules import (  # noqa: E402
    DEEPLIFT,
    max_pool_multipliers,
    product_multipliers,
    rescale,
)

from .lrp_models import informative  # noqa: E402

TARGETS = [1, 7]


def _delta(model: nn.Module, x: np.ndarray, x0: np.ndarray, bound: float = np.inf) -> np.ndarray:
    """``f(x) - f(x0)`` at the targets; every logit of both within ``bound``."""
    with torch.no_grad():
        out, reference = model(torch.from_numpy(x)), model(torch.from_numpy(x0))
    assert max(out.abs().max(), reference.abs().max()) < bound
    return (out - reference).numpy()[np.arange(len(x)), TARGETS]


@pytest.mark.parametrize("name,size", [("resnet18", 48), ("vgg16", 32), ("densenet121", 32),
                                       ("mobilenet_v3_small", 48), ("efficientnet_b0", 32)])
def test_summation_to_delta_on_torchvision_classifiers(name: str, size: int,
                                                       vggs: tuple[nn.Module, nn.Module]) -> None:
    model = vggs[0] if name == "vgg16" else informative(name, size=size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, size, size))
    x0 = 0.3 * rng.normal(size=(1, 3, 1, 1))  # one colour per channel: max-pool ties everywhere
    # the seeded model neither explodes on the input nor on the baseline (BatchNorm statistics
    # from noise alone: efficientnet_b0 logits 3.5e4, densenet121 101) nor loses its input
    delta = _delta(model, x, np.broadcast_to(x0, x.shape).copy(), bound=20.0)
    assert np.abs(delta).min() > 1e-4  # the network does not lose its input (1e-13 before seeding)
    out = attrib.explain(model, x, method="deeplift", target=TARGETS, baseline=x0)
    total = out.attribution.reshape(2, -1).sum(axis=1)
    assert np.abs(total - delta).max() <= 1e-6 * np.abs(delta).max(), (total, delta)
    assert np.abs(out.stats["delta"]).max() <= 1e-6 * np.abs(delta).max()
    # not gradient x input in disguise
    gxi = attrib.explain(model, x - x0, method="gradient_x_input", target=TARGETS).attribution
    assert np.abs(out.attribution - gxi).max() > 1e-3 * np.abs(out.attribution).max()


class _Copy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@pytest.fixture(scope="module")
def vggs() -> tuple[nn.Module, nn.Module]:
    """vgg16 (32² inputs) and, for Captum, the same function with a copy before each max-pool."""
    vgg = informative("vgg16", size=32)
    fixed = copy.deepcopy(vgg)
    layers: list[nn.Module] = []
    for i, layer in enumerate(fixed.features):
        if isinstance(layer, nn.MaxPool2d) and isinstance(fixed.features[i - 1], nn.ReLU):
            layers.append(_Copy())
        layers.append(layer)
    fixed.features = nn.Sequential(*layers)
    return vgg, fixed


def test_equals_captum_on_vgg16_with_a_copy_before_each_max_pool(vggs: tuple[nn.Module, nn.Module]) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    vgg, fixed = vggs
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 32, 32))
    x0 = np.full_like(x, 0.1)
    theirs = captum_attr.DeepLift(fixed).attribute(torch.from_numpy(x), torch.from_numpy(x0),
                                                   target=TARGETS).detach().numpy()
    ours = attrib.explain(vgg, x, method="deeplift", target=TARGETS, baseline=x0).attribution
    assert np.abs(ours - theirs).max() <= 1e-6 * np.abs(theirs).max()


class _Tiny(nn.Module):
    """max-pool (overlapping windows) -> tanh, gated by sigmoid(mean) (a product) -> dense."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace
        self.gate = nn.Linear(1, 1).double()
        self.dense = nn.Linear(9, 8).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.max_pool2d(x, 3, stride=2, padding=1)
        s = torch.sigmoid(self.gate(z.mean((2, 3))))[:, :, None, None]
        if self.inplace:
            a = z.clone().tanh_()
            a *= s
            return self.dense(a.flatten(1))
        return self.dense((torch.tanh(z) * s).flatten(1))


def _windows() -> np.ndarray:
    """Flat positions of each 3x3 window, stride 2, padding 1, over a 6x6 map (padding dropped)."""
    out = []
    for i in range(3):
        for j in range(3):
            out.append([r * 6 + c for r in range(2 * i - 1, 2 * i + 2)
                        for c in range(2 * j - 1, 2 * j + 2) if 0 <= r < 6 and 0 <= c < 6])
    width = max(len(w) for w in out)
    return np.array([w + [w[0]] * (width - len(w)) for w in out])  # repeats change no max


def _reference_multipliers(model: _Tiny, x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """The multipliers at the input from attrib.rules' NumPy references, layer by layer."""
    windows = _windows()
    flat, flat0 = x.reshape(len(x), 36), x0.reshape(len(x), 36)
    z, z0 = flat[:, windows].max(axis=2), flat0[:, windows].max(axis=2)  # (N, 9)
    wg, bg = float(model.gate.weight), float(model.gate.bias)
    u, u0 = wg * z.mean(1, keepdims=True) + bg, wg * z0.mean(1, keepdims=True) + bg
    s, s0 = 1 / (1 + np.exp(-u)), 1 / (1 + np.exp(-u0))
    a, a0 = np.tanh(z), np.tanh(z0)
    m_h = model.dense.weight.detach().numpy()[TARGETS]  # (N, 9)
    m_a, m_s = product_multipliers(a, a0, np.broadcast_to(s, a.shape), np.broadcast_to(s0, a.shape))
    m_s = (m_h * m_s).sum(axis=1, keepdims=True)
    m_u = m_s * rescale(u - u0, s - s0, s0 * (1 - s0))
    m_z = m_h * m_a * rescale(z - z0, a - a0, 1 - a0 ** 2) + m_u * wg / 9
    return max_pool_multipliers(flat, flat0, windows, m_z).reshape(x.shape)


@pytest.mark.parametrize("inplace", [False, True])
def test_rules_equal_their_numpy_references(inplace: bool) -> None:
    torch.manual_seed(0)
    model = _Tiny(inplace).eval()
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, size=(2, 1, 6, 6)).astype(np.float64)  # ties in every window
    x0 = np.zeros_like(x)
    x0[0, 0, 0, 0] = x[0, 0, 0, 0] = 1.5  # no change at one position: the fallback
    wrapped = attrib.wrap(model)
    result = wrapped.gradients(attrib.GradientRequest(
        inputs=x, targets=np.array(TARGETS), rule=DEEPLIFT, reference=x0))
    want = _reference_multipliers(model, x, x0)
    assert result.input_gradient is not None
    np.testing.assert_allclose(result.input_gradient, want, rtol=0, atol=1e-12)
    total = (result.input_gradient * (x - x0)).reshape(2, -1).sum(1)
    np.testing.assert_allclose(total, _delta(model, x, x0), rtol=1e-12, atol=1e-12)
    assert dict(result.stats["rules"]) == {"max_pool": 1, "nonlinearity": 2, "product": 1}


class _Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm([4, 6, 6])
        self.fc = nn.Linear(144, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(F.relu(self.conv(x))).flatten(1))


def test_an_operation_without_a_rule_raises_naming_it_and_the_model_is_left_as_found() -> None:
    model = _Normed().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(attrib.AttribError, match="layer_norm"):
        attrib.explain(model, x, method="deeplift", target=[0, 1])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                   for m in model.modules())
    with pytest.raises(attrib.AttribError, match="baseline"):
        attrib.explain(model, x, method="deeplift", baseline=np.zeros((2, 3, 4, 4)))
    with pytest.raises(attrib.AttribError, match="objective"):
        attrib.DeepLIFT(model, objective="softmax")
    with pytest.warns(attrib.AttribWarning), pytest.raises(attrib.AttribError, match="eval"):
        attrib.explain(nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(72, 3)).train(), x,
                       method="deeplift", target=[0, 1])


def test_deeplift_shap_is_the_mean_of_deeplift_and_equals_captum_on_vgg16(
        vggs: tuple[nn.Module, nn.Module]) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    vgg, fixed = vggs
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 32, 32))
    baselines = 0.5 * rng.normal(size=(3, 3, 32, 32))
    # pairs run baseline-major, two per pass: the passes of DeepLIFT at batch 2, bit for bit
    out = attrib.explain(vgg, x, method="deeplift_shap", target=TARGETS, baselines=baselines,
                         batch_size=2)
    each = [attrib.explain(vgg, x, method="deeplift", target=TARGETS,
                           baseline=b[None]).attribution for b in baselines]
    np.testing.assert_array_equal(out.attribution, np.mean(each, axis=0))
    other = attrib.explain(vgg, x, method="deeplift_shap", target=TARGETS, baselines=baselines,
                           batch_size=5).attribution  # other batches: float rounding only
    assert np.abs(other - out.attribution).max() <= 1e-12 * np.abs(out.attribution).max()
    theirs = captum_attr.DeepLiftShap(fixed).attribute(
        torch.from_numpy(x), torch.from_numpy(baselines), target=TARGETS).detach().numpy()
    assert np.abs(out.attribution - theirs).max() <= 1e-6 * np.abs(theirs).max()
    delta = np.mean([_delta(vgg, x, np.broadcast_to(b, x.shape).copy()) for b in baselines], 0)
    np.testing.assert_allclose(out.attribution.reshape(2, -1).sum(1), delta, rtol=1e-9)
