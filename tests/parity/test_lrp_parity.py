"""LRP in both backends: every composite's map agrees on the same model (float64, ≤ 1e-10).

The torch backend routes calls through a function mode; the jax backend
rewrites the traced jaxpr of the Flax twin from :func:`attrib_jax.from_torch`.
The two mechanisms share no code past the rules' definitions, so agreement to
rounding says each finds the same layers, merges BatchNorm the same way, and
applies the same rule at each. torchvision ``resnet18`` (random BatchNorm
statistics, scale and shift, a random ``fc`` bias) at 32², and attrib's demo
CNN (biases on every layer, max pooling), batch 2 with different targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
import attrib_jax  # noqa: E402
from support.batchnorm import perturb_batchnorm  # noqa: E402

TARGETS = [1, 7]
#: (composite, options for both backends)
COMPOSITES: list[tuple[str, dict[str, Any]]] = [
    ("zero", {}), ("epsilon", {}), ("epsilon_plus", {}), ("epsilon_plus_flat", {}),
    ("epsilon_gamma_box", {"low": -3.0, "high": 3.0}), ("epsilon_alpha2_beta1", {}),
]


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute value."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def resnet18() -> Any:
    torch.manual_seed(0)
    model = perturb_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10)).double()
    with torch.no_grad():
        model.fc.bias.copy_(0.1 * torch.randn(10, generator=torch.Generator().manual_seed(3)))
    return model


@pytest.fixture(scope="module")
def demo() -> Any:
    from attrib_torch._demo import DemoCNN

    torch.manual_seed(0)
    return DemoCNN(classes=10).double().eval()


def _both(model: Any, size: int, composite: str, **options: Any) -> tuple[Any, Any]:
    x = np.random.default_rng(2).normal(size=(2, 3, size, size))
    torch_rules, jax_rules = options.pop("torch_options", {}), options.pop("jax_options", {})
    theirs = attrib.explain(model, torch.from_numpy(x), method="lrp", composite=composite,
                            target=TARGETS, **torch_rules, **options)
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(model)
        ours = attrib.explain(attrib.wrap((module, variables), backend="jax", train=False)
                              if hasattr(module, "bn_eps") else (module, variables),
                              np.ascontiguousarray(x.transpose(0, 2, 3, 1)), method="lrp",
                              composite=composite, target=TARGETS, **jax_rules, **options)
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    assert ours.attribution.dtype == np.float64
    assert ours.stats["rules"] == theirs.stats["rules"]  # the same layers got the same rules
    return ours, theirs


_RESNET_MAPS: dict[str, np.ndarray] = {}


@pytest.mark.parametrize("composite", [c for c, _ in COMPOSITES])
def test_resnet18_composites_agree(resnet18: Any, composite: str) -> None:
    ours, theirs = _both(resnet18, 32, composite, **dict(COMPOSITES)[composite])
    assert _rel(ours.logits, theirs.logits) <= 1e-12
    assert _rel(ours.attribution, theirs.attribution.transpose(0, 2, 3, 1)) <= 1e-10
    _RESNET_MAPS[composite] = ours.attribution


def test_resnet18_layer_rule_by_name_agrees(resnet18: Any) -> None:
    """A rule for one named layer: torch's ``layer1.0.conv1`` is jax's ``layer1/0/conv1``."""
    ours, theirs = _both(resnet18, 32, "epsilon",
                         torch_options={"rules": {"layer1.0.conv1": "flat"}},
                         jax_options={"rules": {"layer1/0/conv1": "flat"}})
    assert _rel(ours.attribution, theirs.attribution.transpose(0, 2, 3, 1)) <= 1e-10
    plain = _RESNET_MAPS.get("epsilon")
    if plain is None:  # run alone
        plain = _both(resnet18, 32, "epsilon")[0].attribution
    assert _rel(ours.attribution, plain) > 1e-3  # the layer rule did something


@pytest.mark.parametrize("composite", [c for c, _ in COMPOSITES])
def test_demo_cnn_composites_agree(demo: Any, composite: str) -> None:
    ours, theirs = _both(demo, 16, composite, **dict(COMPOSITES)[composite])
    assert _rel(ours.attribution, theirs.attribution.transpose(0, 2, 3, 1)) <= 1e-10


def _deeplift_both(model: Any, method: str, torch_options: dict[str, Any],
                   jax_options: dict[str, Any]) -> tuple[Any, Any]:
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32))
    theirs = attrib.explain(model, torch.from_numpy(x), method=method, target=TARGETS,
                            **torch_options)
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(model)
        ours = attrib.explain(attrib.wrap((module, variables), backend="jax", train=False),
                              np.ascontiguousarray(x.transpose(0, 2, 3, 1)), method=method,
                              target=TARGETS, **jax_options)
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    assert ours.attribution.dtype == np.float64
    return ours, theirs


def test_resnet18_deeplift_agrees(resnet18: Any) -> None:
    """DeepLIFT: a jaxpr rewrite and a torch function mode give the same multipliers."""
    ours, theirs = _deeplift_both(resnet18, "deeplift", {"baseline": "blur"}, {"baseline": "blur"})
    assert _rel(ours.attribution, theirs.attribution.transpose(0, 2, 3, 1)) <= 1e-10
    assert np.abs(ours.stats["delta"] - theirs.stats["delta"]).max() <= 1e-10
    total = ours.attribution.reshape(2, -1).sum(1)  # summation-to-delta
    delta = ours.stats["score"] - ours.stats["baseline_score"]
    assert np.abs(delta).min() > 1e-3
    assert np.abs(total - delta).max() <= 1e-9 * np.abs(delta).max()


def test_resnet18_deeplift_shap_agrees(resnet18: Any) -> None:
    base = np.random.default_rng(4).normal(scale=0.5, size=(2, 3, 32, 32))
    ours, theirs = _deeplift_both(resnet18, "deeplift_shap", {"baselines": base},
                                  {"baselines": np.ascontiguousarray(base.transpose(0, 2, 3, 1))})
    assert _rel(ours.attribution, theirs.attribution.transpose(0, 2, 3, 1)) <= 1e-10
