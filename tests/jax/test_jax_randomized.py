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
from flax import nnx

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


def test_resnet18_and_its_flax_twin_get_the_same_randomised_copy() -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import attrib_jax

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    t, j = attrib.wrap(net), attrib.wrap(attrib_jax.from_torch(net))
    torch_layers = list(t.parameter_layers())
    assert [name.replace(".", "/") for name in torch_layers] == list(j.parameter_layers())
    chosen = torch_layers[-4:]  # fc, layer4.1.bn2, layer4.1.conv2, layer4.1.bn1
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    x_t = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    rt = t.randomized(chosen, seed=2)
    rj = j.randomized([name.replace(".", "/") for name in chosen], seed=2)
    a, b = rt.forward(x_t), rj.forward(x)
    assert not np.allclose(a, t.forward(x_t), atol=1e-3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))
    # only the chosen layers' parameters differ; buffers (running statistics) are kept
    copied = rt.native.state_dict()
    for key, value in state.items():
        layer = key.rsplit(".", 1)[0]
        is_parameter = key.rsplit(".", 1)[1] in ("weight", "bias")
        changed = not torch.equal(copied[key], value)
        constant = bool((value == value.flatten()[0]).all())  # std 0: drawn as zeros
        if constant and is_parameter and layer in chosen:
            assert not copied[key].any(), key
            continue
        assert changed == (layer in chosen and is_parameter), key
        assert torch.equal(net.state_dict()[key], value), f"the user's {key} changed"
