"""The CAM family's backend primitives on the jax backend: linen and nnx, and non-array outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import attrib  # noqa: E402

from .jax_testnets import images, nnx_net  # noqa: E402


class Conv(nn.Module):
    """conv(4) -> relu -> conv(6) -> relu -> mean -> dense(5), returning ``kind`` of output."""

    kind: str = "array"

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = jax.nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
        x = jax.nn.relu(nn.Conv(6, (3, 3), name="conv2")(x))
        logits = nn.Dense(5, name="head")(x.mean(axis=(1, 2)))
        if self.kind == "tuple":
            return logits, jnp.zeros(3)
        if self.kind == "dict":
            return {"logits": logits, "features": x}
        if self.kind == "scores":
            return {"scores": logits}
        return logits


@pytest.fixture(scope="module")
def variables() -> Any:
    return Conv().init(jax.random.key(0), jnp.zeros((1, 6, 6, 3)))


def _manual(variables: Any, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The same network by hand, conv2's output scaled."""
    params = variables["params"]

    def conv(p: Any, h: Any) -> Any:
        return jax.lax.conv_general_dilated(h, p["kernel"], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]

    h = jax.nn.relu(conv(params["conv1"], x))
    h = jax.nn.relu(conv(params["conv2"], h)) * scale
    return np.asarray(h.mean(axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"])


def test_linen_forward_scaled_and_probe(variables: Any) -> None:
    x = images(2, size=6)
    before = jax.tree_util.tree_map(np.array, variables)
    model = attrib.wrap((Conv(), variables), backend="jax")
    scale = np.random.default_rng(0).uniform(0, 2, size=(2, 1, 1, 6)).astype(np.float32)
    np.testing.assert_allclose(model.forward_scaled(x, "conv2", scale), _manual(variables, x, scale),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.forward(x), _manual(variables, x, np.ones(6)), rtol=1e-5,
                               atol=1e-6)
    for key, value in jax.tree_util.tree_leaves_with_path(variables):
        np.testing.assert_array_equal(np.asarray(value), _at(before, key))
    infos = model.probe_layers(x)
    assert [i.name for i in infos] == ["conv1", "conv2", "head"]
    assert [i.shape for i in infos] == [(2, 6, 6, 4), (2, 6, 6, 6), (2, 5)]
    e = attrib.explain(model, x, method="ablationcam", target=[1, 3], batch_size=5)
    assert e.layer == "conv2" and e.stats["forward_passes"] == 1 + 3   # ceil(2 * 6 / 5)


def _at(tree: Any, path: Any) -> np.ndarray:
    for key in path:
        tree = tree[key.key]
    return np.asarray(tree)


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_linen_outputs_holding_the_logits(variables: Any, kind: str) -> None:
    x = images(2, size=6)
    plain = attrib.explain((Conv(), variables), x, method="scorecam", target=[0, 4], batch_size=8)
    ours = attrib.explain((Conv(kind), variables), x, method="scorecam", target=[0, 4],
                          batch_size=8)
    np.testing.assert_allclose(ours.attribution, plain.attribution, rtol=1e-6)
    with pytest.raises(attrib.AttribValueError, match=r"output: .*\['scores'\]"):
        attrib.explain((Conv("scores"), variables), x, method="saliency")
    by_key = attrib.explain((Conv("scores"), variables), x, method="gradcam_pp", output="scores",
                            target=[0, 4], layer="conv2")
    by_default = attrib.explain((Conv(), variables), x, method="gradcam_pp", target=[0, 4],
                                layer="conv2")
    np.testing.assert_allclose(by_key.attribution, by_default.attribution, rtol=1e-6)


def test_nnx_forward_scaled_leaves_the_module_alone() -> None:
    net = nnx_net()
    x = images(2)
    state = jax.tree_util.tree_map(np.array, nnx.state(net))
    model = attrib.wrap(net, backend="jax")
    zero = model.forward_scaled(x, "conv", np.zeros((1, 1, 1, 4), np.float32))
    # with conv's output zeroed, the logits no longer depend on the image
    np.testing.assert_allclose(zero[0], zero[1], rtol=1e-6)
    assert not np.allclose(model.forward(x)[0], model.forward(x)[1])
    assert net.conv.__class__ is nnx.Conv
    after = jax.tree_util.tree_map(np.array, nnx.state(net))
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(after)):
        np.testing.assert_array_equal(a, b)


class Concat(nn.Module):
    """conv1 -> conv2, whose output is concatenated with conv1's: one image cannot feed M rows."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        h = nn.Conv(4, (3, 3), name="conv1")(x)
        g = nn.Conv(6, (3, 3), name="conv2")(h)
        return nn.Dense(5, name="head")(jnp.concatenate([h, g], axis=-1).mean(axis=(1, 2)))


def _head(variables: Any, features: np.ndarray) -> np.ndarray:
    head = variables["params"]["head"]
    return np.asarray(features.mean(axis=(1, 2)) @ head["kernel"] + head["bias"])


def test_linen_forward_substituted(variables: Any) -> None:
    x = images(2, size=6)
    model = attrib.wrap((Conv(), variables), backend="jax")
    values = np.random.default_rng(1).normal(size=(3, 6, 6, 6)).astype(np.float32)
    want = _head(variables, np.maximum(values, 0))  # conv2's output replaced, then relu and head
    np.testing.assert_allclose(model.forward_substituted(x[:1], "conv2", values), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.forward_substituted(x[[0, 1, 1]], "conv2", values), want,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(attrib.AttribError, match="activation"):
        model.forward_substituted(x[:1], "conv2", values[..., :4])
    with pytest.raises(attrib.AttribError, match="inputs"):
        model.forward_substituted(x, "conv2", values)
    # zeroing by substitution equals zeroing by scaling; min - 1e7 before the relu as well
    by = {ablation: attrib.explain(model, x, method="ablationcam", layer="conv2", target=[1, 3],
                                   batch_size=5, ablation=ablation)
          for ablation in ("zero", "pytorch-grad-cam")}
    assert by["zero"].stats["ablation_path"] == "substituted"
    for ablation, explanation in by.items():
        assert explanation.stats["ablation"] == ablation
        np.testing.assert_allclose(explanation.layer_attribution, _ablated_by_scaling(model, x),
                                   rtol=1e-4, atol=1e-6)


def _ablated_by_scaling(model: Any, x: np.ndarray) -> np.ndarray:
    """Ablation-CAM at conv2 through forward_scaled, one channel zeroed per call."""
    acts = model.gradients(attrib.GradientRequest(inputs=x, input_gradient=False, layers=("conv2",),
                                                  layer_gradients=False)).activations["conv2"]
    original = model.forward(x)[[0, 1], [1, 3]]
    maps = []
    for n, target in enumerate([1, 3]):
        weights = []
        for c in range(6):
            scale = np.ones((1, 1, 1, 6), np.float32)
            scale[..., c] = 0
            score = model.forward_scaled(x[n:n + 1], "conv2", scale)[0, target]
            weights.append((original[n] - score) / original[n])
        maps.append(np.maximum(np.einsum("c,hwc->hw", np.array(weights), acts[n]), 0))
    return np.array(maps)


def test_linen_substitution_falls_back_to_one_row_per_copy() -> None:
    variables = Concat().init(jax.random.key(1), jnp.zeros((1, 6, 6, 3)))
    x = images(2, size=6)
    model = attrib.wrap((Concat(), variables), backend="jax")
    values = np.random.default_rng(2).normal(size=(3, 6, 6, 6)).astype(np.float32)
    conv1 = variables["params"]["conv1"]
    h = np.asarray(jax.lax.conv_general_dilated(x[:1], conv1["kernel"], (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
                   + conv1["bias"])
    want = _head(variables, np.concatenate([np.repeat(h, 3, axis=0), values], axis=-1))
    for _ in range(2):  # the first call finds the fast path refused, the second knows it
        np.testing.assert_allclose(model.forward_substituted(x[:1], "conv2", values), want,
                                   rtol=1e-5, atol=1e-5)


def test_nnx_forward_substituted_leaves_the_module_alone() -> None:
    net = nnx_net()
    x = images(2)
    state = jax.tree_util.tree_map(np.array, nnx.state(net))
    model = attrib.wrap(net, backend="jax")
    acts = model.gradients(attrib.GradientRequest(inputs=x, input_gradient=False, layers=("conv",),
                                                  layer_gradients=False)).activations["conv"]
    np.testing.assert_allclose(model.forward_substituted(x, "conv", acts), model.forward(x),
                               rtol=1e-5, atol=1e-6)
    one = model.forward_substituted(x[:1], "conv", np.repeat(acts[1:], 2, axis=0))
    np.testing.assert_allclose(one, np.repeat(model.forward(x[1:]), 2, axis=0), rtol=1e-5,
                               atol=1e-6)
    assert net.conv.__class__ is nnx.Conv
    after = jax.tree_util.tree_map(np.array, nnx.state(net))
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(after)):
        np.testing.assert_array_equal(a, b)
