"""``Model.randomized`` beyond the conformance nets: nnx modules, plain functions, ResNet twins.

The torch ResNet-18 and its Flax twin (``attrib_jax.from_torch``) must get
the same randomised weights from the same seed (layer names ``layer4.1.conv2``
and ``layer4/1/conv2`` are the same layer), so their randomised copies
compute the same logits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import attrib
from attrib._randomize import redrawn

from .jax_testnets import nnx_net


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_nnx_module_randomized_copy() -> None:
    net = nnx_net()
    before = _leaves(nnx.state(net))
    model = attrib.wrap(net)
    layers = list(model.parameter_layers())
    assert set(layers) == {"conv", "blocks/0", "blocks/1", "head"}
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
    copy = model.randomized(["head"], seed=5)
    assert copy.native is not net
    # exactly the head re-drawn, as the core's draw says (Flax kernel (in, out))
    kernel = np.asarray(net.head.kernel[...])
    np.testing.assert_array_equal(
        np.asarray(copy.native.head.kernel[...]),
        redrawn(kernel.astype(np.float64), seed=5, layer="head", name="kernel",
                channels_last=True).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(copy.native.conv.kernel[...]),
                                  np.asarray(net.conv.kernel[...]))
    assert not np.allclose(copy.forward(x), model.forward(x))
    np.testing.assert_array_equal(model.randomized(["head"], seed=5).forward(x), copy.forward(x))
    after = _leaves(nnx.state(net))
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_function_params_randomized_copy() -> None:
    params = {"dense": {"kernel": jnp.arange(12.0).reshape(4, 3) / 10, "bias": jnp.ones(3)}}

    def apply_fn(p: Any, x: Any) -> Any:
        return x.reshape(len(x), -1) @ p["dense"]["kernel"] + p["dense"]["bias"]

    model = attrib.wrap((apply_fn, params), backend="jax")
    assert list(model.parameter_layers()) == ["dense"]
    copy = model.randomized(["dense"], seed=1)
    assert copy.native[1] is not params
    assert float(params["dense"]["bias"][0]) == 1.0
    # a constant parameter has std 0: its draw is all zeros
    np.testing.assert_array_equal(np.asarray(copy.native[1]["dense"]["bias"]), np.zeros(3))
    with pytest.raises(attrib.AttribError, match="layers"):
        model.randomized(["dens"], seed=1)


@pytest.mark.parametrize("batchnorm", ["reset", "redraw"])
def test_resnet18_and_its_flax_twin_get_the_same_randomised_copy(batchnorm: str) -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import attrib_jax

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # BatchNorm as trained: γ, β and running statistics away from 1 and 0
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    t, j = attrib.wrap(net), attrib.wrap(attrib_jax.from_torch(net))
    torch_layers = list(t.parameter_layers())
    assert [name.replace(".", "/") for name in torch_layers] == list(j.parameter_layers())
    chosen = torch_layers[-4:]  # fc, layer4.1.bn2, layer4.1.conv2, layer4.1.bn1
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    x_t = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    rt = t.randomized(chosen, seed=2, batchnorm=batchnorm)
    rj = j.randomized([name.replace(".", "/") for name in chosen], seed=2, batchnorm=batchnorm)
    a, b = rt.forward(x_t), rj.forward(x)
    assert not np.allclose(a, t.forward(x_t), atol=1e-3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))
    # only the chosen layers' parameters differ; buffers (running statistics) are kept
    copied = rt.native.state_dict()
    for key, value in state.items():
        layer, name = key.rsplit(".", 1)
        is_parameter = name in ("weight", "bias")
        norm = "bn" in layer.rsplit(".", 1)[-1]
        if batchnorm == "reset" and norm and is_parameter and layer in chosen:
            # Adebayo et al.'s code re-runs the initialisers: γ = 1, β = 0 (in both backends)
            expected = 1.0 if name == "weight" else 0.0
            assert bool((copied[key] == expected).all()), key
            flax = rj.native[1]["params"]
            for part in layer.split("."):
                flax = flax[part]
            leaf = np.asarray(flax["scale" if name == "weight" else "bias"])
            np.testing.assert_array_equal(leaf, np.full(leaf.shape, expected, leaf.dtype))
            continue
        assert (not torch.equal(copied[key], value)) == (layer in chosen and is_parameter), key
        assert torch.equal(net.state_dict()[key], value), f"the user's {key} changed"
    with pytest.raises(attrib.AttribError, match=r"batchnorm: expected one of \['reset', 'redraw'\]"):
        t.randomized(chosen, seed=2, batchnorm="zero")


class _NormNet(linen.Module):
    """conv -> BatchNorm -> relu6 -> conv -> relu -> dense: the shape of a cascade's model."""

    @linen.compact
    def __call__(self, x: Any) -> Any:
        x = linen.Conv(4, (3, 3), name="conv1")(x)
        x = jax.nn.relu6(linen.BatchNorm(use_running_average=True, name="bn1")(x))
        x = jax.nn.relu(linen.Conv(4, (3, 3), name="conv2")(x))
        return linen.Dense(5, name="head")(x.mean(axis=(1, 2)))


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_randomised_copies_reuse_the_compiled_programs(kind: str) -> None:
    """A cascade (model_randomization) explains one copy per step: the copies' variables are
    program arguments of the same structure, so no copy traces or compiles a program again
    (counted by attrib's trace counter and by JAX's own compile events)."""
    from attrib_jax._model import trace_count

    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    if kind == "linen":
        variables = _NormNet().init(jax.random.key(0), x)
        stats = jax.tree_util.tree_map(lambda a: a + 0.5, variables["batch_stats"])
        model = attrib.wrap((_NormNet(), {**variables, "batch_stats": stats}), backend="jax")
        layer = "conv2"
    else:
        model, layer = attrib.wrap(nnx_net()), "conv"
    targets = np.array([1, 3])
    runs = {"gradcam": {"layer": layer}, "guided_backprop": {}, "saliency": {}}

    def explain(m: Any) -> list[np.ndarray]:
        return [np.asarray(attrib.explain(m, x, method=name, target=targets, **options).attribution)
                for name, options in runs.items()]

    events: list[str] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.endswith("backend_compile_duration"):
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        previous = explain(model)  # traces and compiles each method's program once
        assert events, "the listener does listen"
        traced = trace_count()
        chosen: list[str] = []
        for seed, layer_name in enumerate(reversed(list(model.parameter_layers()))):
            chosen.append(layer_name)
            copy = model.randomized(chosen, seed=seed, batchnorm="reset")
            events.clear()
            maps = explain(copy)
            assert trace_count() == traced, f"after randomising {chosen}"
            assert events == [], f"after randomising {chosen}"
            assert not np.array_equal(maps[2], previous[2])  # a new copy, new saliency
            previous = maps
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
