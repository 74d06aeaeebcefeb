"""DeepLIFT on a native Flax network: summation-to-delta through every rule the jaxpr rewrite has.

The network holds each element-wise nonlinearity Flax spells differently
(``relu6``, ``silu``, exact and tanh ``gelu``, ``hard_swish``, ``sigmoid``,
``tanh``), an overlapping max pooling and a squeeze-excitation product of two
activations, with biases everywhere. DeepLIFT's multipliers times ``x - x0``
sum to ``f(x) - f(x0)`` (float64, from a plain forward pass); a gradient times
``x - x0`` does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
flax = pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402

import attrib  # noqa: E402
from attrib._model import GradientRequest  # noqa: E402
from attrib.rules import DEEPLIFT  # noqa: E402


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.relu6(nn.Conv(6, (3, 3))(x))
        x = nn.silu(nn.Conv(6, (3, 3))(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = nn.gelu(nn.Conv(8, (3, 3))(x), approximate=False)
        x = nn.hard_swish(nn.Conv(8, (3, 3))(x))
        gate = nn.sigmoid(nn.Dense(8)(nn.gelu(nn.Dense(4)(jnp.mean(x, axis=(1, 2))))))
        x = nn.tanh(x * gate[:, None, None, :])
        return nn.Dense(5)(nn.relu(jnp.mean(x, axis=(1, 2))))


class _Sine(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        return nn.Dense(3)(jnp.sin(nn.Dense(4)(x.reshape(len(x), -1))))


class _Quotient(nn.Module):
    """``soft_sign`` written out: a quotient of two activations (no rule, not a scaling)."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        h = nn.Dense(4)(x.reshape(len(x), -1))
        return nn.Dense(3)(h / (1.0 + jnp.abs(h)))


@pytest.fixture(scope="module")
def net() -> Any:
    with jax.enable_x64(True):
        x = jnp.zeros((1, 12, 12, 3), jnp.float64)
        variables = _Net().init(jax.random.PRNGKey(0), x)
        variables = jax.tree_util.tree_map(lambda v: v + 0.05, variables)  # nonzero biases
    return _Net(), variables


def test_summation_to_delta_on_a_flax_network(net: Any) -> None:
    module, variables = net
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 12, 3))
    x0 = 0.3 * rng.normal(size=(2, 12, 12, 3))
    targets = np.array([1, 3])
    with jax.enable_x64(True):
        model = attrib.wrap((module.apply, variables), backend="jax")
        out = model.gradients(GradientRequest(inputs=x, targets=targets, rule=DEEPLIFT,
                                              reference=x0))
        plain = model.gradients(GradientRequest(inputs=x, targets=targets))
        ref_logits = np.asarray(module.apply(variables, jnp.asarray(x0)))
    rows = np.arange(2)
    delta = out.logits[rows, targets] - ref_logits[rows, targets]
    assert np.abs(delta).min() > 1e-3
    np.testing.assert_allclose(out.stats["reference_logits"], ref_logits, rtol=1e-12, atol=1e-12)
    total = (out.input_gradient * (x - x0)).reshape(2, -1).sum(1)
    assert np.abs(total - delta).max() <= 1e-6 * np.abs(delta).max(), (total, delta)
    counts = out.stats["rules"]
    assert counts["max_pool"] == 1 and counts["product"] >= 5, counts  # SE gate, silu, gelu, ...
    gradient_total = (plain.input_gradient * (x - x0)).reshape(2, -1).sum(1)
    assert np.abs(gradient_total - delta).max() > 1e-3 * np.abs(delta).max()


def test_op_without_a_rule_is_named() -> None:
    module = _Sine()
    x = np.ones((2, 2, 2, 1), np.float32)
    variables = module.init(jax.random.PRNGKey(0), x)
    model = attrib.wrap((module.apply, variables), backend="jax")
    with pytest.raises(attrib.AttribError, match="'sin'"):
        model.gradients(GradientRequest(inputs=x, targets=np.array([0, 1]), rule=DEEPLIFT,
                                        reference=np.zeros_like(x)))
    quotient = _Quotient()
    wrapped = attrib.wrap((quotient.apply, quotient.init(jax.random.PRNGKey(0), x)),
                          backend="jax")
    with pytest.raises(attrib.AttribError, match="'div'"):  # was a silently wrong map
        wrapped.gradients(GradientRequest(inputs=x, targets=np.array([0, 1]), rule=DEEPLIFT,
                                          reference=np.zeros_like(x)))
    with pytest.raises(attrib.AttribError, match="reference"):
        model.gradients(GradientRequest(inputs=x, targets=np.array([0, 1]), rule=DEEPLIFT))
