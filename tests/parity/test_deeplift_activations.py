"""DeepLIFT through smooth activations: torch = JAX (float64, ≤ 1e-10) on SiLU, GELU, hardswish.

Torch rescales ``F.silu``, ``F.gelu`` and ``F.hardswish`` as one element-wise
nonlinearity each. The JAX backend sees ``jax.nn.silu`` as ``x * logistic(x)``
and rescales it primitive by primitive (a product of two activations and a
logistic); for a function of one value that is the same multiplier
``Δy/Δz`` up to rounding, which this checks. The activations whose primitives
have no rule (``select_n`` in ELU, SELU, softplus, Mish, leaky ReLU, hard
tanh, log-sigmoid; a quotient in soft sign) are kept whole as one ``jit``
call each. The network: a hardswish stem, a SiLU convolution with a
squeeze-excitation gate (a product of two activations), tanh and exact GELU
convolutions, and a dense head through the activations kept whole, biases
everywhere; its torch twin holds the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from flax import linen as nn  # noqa: E402

import attrib  # noqa: E402

HEAD = [  # (jax, torch) activations of the dense head
    (jax.nn.elu, F.elu), (jax.nn.selu, F.selu), (jax.nn.softplus, F.softplus),
    (jax.nn.mish, F.mish), (jax.nn.leaky_relu, F.leaky_relu), (jax.nn.hard_tanh, F.hardtanh),
    (jax.nn.log_sigmoid, F.logsigmoid), (jax.nn.soft_sign, F.softsign),
]
TARGETS = [1, 3]


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        pad = ((1, 1), (1, 1))
        x = jax.nn.hard_swish(nn.Conv(8, (3, 3), padding=pad, name="stem")(x))
        x = jax.nn.silu(nn.Conv(8, (3, 3), padding=pad, name="conv")(x))
        gate = jax.nn.silu(nn.Dense(4, name="se1")(jnp.mean(x, axis=(1, 2))))
        x = x * jax.nn.sigmoid(nn.Dense(8, name="se2")(gate))[:, None, None, :]
        x = jax.nn.gelu(nn.Conv(8, (1, 1), name="pw1")(x), approximate=True)
        x = jax.nn.gelu(nn.Conv(8, (3, 3), padding=pad, name="pw2")(x), approximate=False)
        h = jnp.mean(x, axis=(1, 2))
        for k, (act, _) in enumerate(HEAD):
            h = act(nn.Dense(8, name=f"head{k}")(h))
        return nn.Dense(5, name="out")(h)


class _Twin(torch.nn.Module):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleDict()
        for name, p in params.items():
            kernel = torch.from_numpy(p["kernel"])
            if kernel.ndim == 4:  # HWIO -> OIHW
                layer: Any = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0],
                                             padding=kernel.shape[0] // 2)
                layer.weight.data = kernel.permute(3, 2, 0, 1).contiguous()
            else:
                layer = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
                layer.weight.data = kernel.T.contiguous()
            layer.bias.data = torch.from_numpy(p["bias"])
            self.layers[name] = layer
        self.double()

    def forward(self, x: Any) -> Any:
        L = self.layers
        x = F.hardswish(L["stem"](x))
        x = F.silu(L["conv"](x))
        gate = F.silu(L["se1"](x.mean((2, 3))))
        x = x * torch.sigmoid(L["se2"](gate))[:, :, None, None]
        x = F.gelu(L["pw1"](x), approximate="tanh")
        x = F.gelu(L["pw2"](x))
        h = x.mean((2, 3))
        for k, (_, act) in enumerate(HEAD):
            h = act(L[f"head{k}"](h))
        return L["out"](h)


SHAPES = {"stem": (3, 3, 3, 8), "conv": (3, 3, 8, 8), "se1": (8, 4), "se2": (4, 8),
          "pw1": (1, 1, 8, 8), "pw2": (3, 3, 8, 8), **{f"head{k}": (8, 8) for k in range(8)},
          "out": (8, 5)}


@pytest.fixture(scope="module")
def nets() -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(1)  # weights 1.5x LeCun's scale, biases of both signs
    params = {name: {"kernel": 1.5 / np.sqrt(np.prod(shape[:-1])) * rng.normal(size=shape),
                     "bias": 0.3 * rng.normal(size=shape[-1])} for name, shape in SHAPES.items()}
    return _Net(), {"params": params}, _Twin(params).eval()


def test_deeplift_equals_torch_through_smooth_activations(nets: Any) -> None:
    module, variables, twin = nets
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 10, 10))
    x0 = 0.5 * rng.normal(size=(2, 3, 10, 10))
    theirs = attrib.explain(twin, torch.from_numpy(x), method="deeplift", baseline=x0,
                            target=TARGETS)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with jax.enable_x64(True):
        ours = attrib.explain((module.apply, variables), nhwc, method="deeplift",
                              baseline=np.ascontiguousarray(x0.transpose(0, 2, 3, 1)),
                              target=TARGETS, backend="jax")
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    expected = theirs.attribution.transpose(0, 2, 3, 1)
    scale = np.abs(expected).max()
    assert np.abs(ours.logits - theirs.logits).max() <= 1e-12 * np.abs(theirs.logits).max()
    assert np.abs(ours.attribution - expected).max() <= 1e-10 * scale
    delta = ours.stats["score"] - ours.stats["baseline_score"]  # summation-to-delta on JAX
    assert np.abs(delta).min() > 1e-2
    total = ours.attribution.reshape(2, -1).sum(1)
    assert np.abs(total - delta).max() <= 1e-12 * np.abs(delta).max()
