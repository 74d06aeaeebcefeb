"""Standalone rules, lazy imports, the supported JAX range, the Flax ResNets and from_torch."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from packaging.requirements import Requirement

import attrib
import attrib_jax
from attrib_jax import _rewrite


def test_guided_relu_blocks_negative_incoming_gradients() -> None:
    """The JAX seed's check: grad of sum(sin(guided_relu(x))) is 0 where cos(x) < 0 or x <= 0."""
    x = jnp.linspace(-6.0, 6.0, 101)
    grad = np.asarray(jax.grad(lambda x: jnp.sum(jnp.sin(attrib_jax.guided_relu(x))))(x))
    incoming = np.cos(np.asarray(x))
    assert np.all(grad[incoming < 0] == 0)
    keep = (np.asarray(x) > 0) & (incoming > 0)
    np.testing.assert_allclose(grad[keep], incoming[keep], rtol=1e-6)
    assert np.all(grad[np.asarray(x) <= 0] == 0)
    np.testing.assert_array_equal(attrib_jax.guided_relu(x), jax.nn.relu(x))


@pytest.mark.parametrize("rule, fn", [("guided", "guided_relu"), ("deconvnet", "deconvnet_relu")])
def test_standalone_rules_match_the_core_reference(rule: str, fn: str) -> None:
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(50,)).astype(np.float32), rng.normal(size=(50,)).astype(np.float32)
    _, vjp = jax.vjp(getattr(attrib_jax, fn), jnp.asarray(x))
    np.testing.assert_allclose(vjp(jnp.asarray(g))[0], attrib.get_rule(rule).reference(x, g))
    from attrib_jax._rules import rectifier

    _, vjp6 = jax.vjp(rectifier(rule, 6.0), jnp.asarray(7 * x))
    np.testing.assert_allclose(vjp6(jnp.asarray(g))[0],
                               attrib.get_rule(rule).reference(7 * x, g, upper=6.0))


def test_importing_attrib_jax_does_not_import_jax() -> None:
    code = (
        "import sys, attrib, attrib_jax, attrib_jax._plugin\n"
        "assert 'jax' not in sys.modules and 'flax' not in sys.modules, 'imported jax'\n"
        "attrib_jax.guided_relu\n"
        "assert 'jax' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_installed_jax_and_flax_are_in_the_declared_range() -> None:
    """The rewrite uses semi-internal jaxpr APIs; attrib declares the range it is tested on."""
    requirements = [Requirement(r) for r in metadata.requires("attrib") or []]
    declared = {r.name: r.specifier for r in requirements if r.name in ("jax", "flax")}
    assert set(declared) == {"jax", "flax"}
    for name, specifier in declared.items():
        assert specifier.contains(metadata.version(name)), (name, metadata.version(name), specifier)
    _rewrite.check_supported()  # this JAX's jax.nn.relu is recognised


def test_unrecognised_relu_structure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a JAX release changed how jax.nn.relu is traced, guided maps fail loudly, not silently."""
    _rewrite._relu_is_recognised.cache_clear()
    monkeypatch.setattr(_rewrite, "match_rectifier", lambda eqn: None)
    try:
        with pytest.raises(attrib.AttribError, match="jax>=0.10,<0.11"):
            _rewrite.check_supported()
    finally:
        _rewrite._relu_is_recognised.cache_clear()


def test_detection_claims_each_jax_model_kind() -> None:
    from flax import nnx

    from attrib_jax._plugin import _is_jax_model

    from .jax_testnets import function_net, linen_net

    module, variables = linen_net()
    assert _is_jax_model((module, variables))
    assert _is_jax_model(function_net())
    assert _is_jax_model(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    assert not _is_jax_model((module, "variables"))
    assert not _is_jax_model(np.zeros(3))
    assert attrib.wrap((module, variables)).backend == "jax"


def test_resnet_names_mirror_torchvision() -> None:
    module = attrib_jax.resnet18(num_classes=7)
    variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    names = attrib.wrap((module, variables), backend="jax").layer_names()
    for name in ("conv1", "bn1", "layer1", "layer1/0", "layer2/0/downsample/0", "layer3",
                 "layer4", "layer4/1/conv2", "fc"):
        assert name in names
    assert "layer1/0/downsample" not in names  # torchvision's layer1.0 has no downsample either
    r50 = attrib_jax.resnet50(num_classes=7)
    v50 = jax.eval_shape(r50.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert v50["params"]["layer1"]["0"]["conv3"]["kernel"].shape == (1, 1, 64, 256)
    assert v50["params"]["layer1"]["0"]["downsample"]["0"]["kernel"].shape == (1, 1, 64, 256)


def test_from_torch_rejects_other_models() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(attrib.AttribError, match="torchvision ResNet"):
        attrib_jax.from_torch(torch.nn.Linear(2, 2))
