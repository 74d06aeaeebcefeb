"""LRP on unmodified JAX models (issue 23): the three kinds of model, transforms, errors.

The composites themselves are checked against the NumPy reference by the
conformance case ``rule_sets`` (linen) and against the torch backend by
``tests/parity/test_lrp_parity.py``. Here: LRP-0 equals gradient × input on a
ReLU / max-pool network with biases, BatchNorm and a residual ``+``; the same
network inside ``jit`` / ``remat`` / ``scan`` / ``cond`` gives the maps of the
plain one; linen, nnx and ``(apply_fn, params)`` spellings of one network give
one map, a layer rule by name included; and operations without a rule raise.
All in float64 (``jax.enable_x64`` scoped to each test).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import attrib
from attrib.rules import RuleSet

TARGETS = [0, 3]
_PAD = ((1, 1), (1, 1))


@pytest.fixture(autouse=True)
def x64() -> Iterator[None]:
    with jax.enable_x64(True):
        yield
    assert not jax.config.jax_enable_x64


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _params(seed: int = 0) -> dict[str, Any]:
    """Nested float64 parameters: conv1 + BatchNorm, two repeated convs, conv2, conv3, fc."""
    rng = np.random.default_rng(seed)

    def conv(cin: int, cout: int) -> dict[str, Any]:
        return {"kernel": jnp.asarray(0.4 * rng.normal(size=(3, 3, cin, cout))),
                "bias": jnp.asarray(0.1 * rng.normal(size=cout))}

    return {
        "conv1": conv(3, 6),
        "bn": {"scale": jnp.asarray(1 + 0.2 * rng.normal(size=6)),
               "bias": jnp.asarray(0.1 * rng.normal(size=6)),
               "mean": jnp.asarray(0.1 * rng.normal(size=6)),
               "var": jnp.asarray(0.5 + rng.random(6))},
        "rep": {k: jnp.stack([conv(6, 6)[k] for _ in range(2)]) for k in ("kernel", "bias")},
        "conv2": conv(6, 6), "conv3": conv(6, 6),
        "fc": {"kernel": jnp.asarray(0.3 * rng.normal(size=(24, 5))),
               "bias": jnp.asarray(0.1 * rng.normal(size=5))},
        "flag": jnp.asarray(1.0),
    }


def _conv(x: Any, p: Any) -> Any:
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), _PAD,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def _bn(x: Any, p: Any) -> Any:
    return (x - p["mean"]) / jnp.sqrt(p["var"] + 1e-5) * p["scale"] + p["bias"]


def _maxpool(x: Any) -> Any:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _avgpool(x: Any) -> Any:
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0


def _head(x: Any, p: Any) -> Any:
    x = _avgpool(x)
    return x.reshape(x.shape[0], -1) @ p["fc"]["kernel"] + p["fc"]["bias"]


def plain(p: Any, x: Any) -> Any:
    """conv1+BN -> relu -> max-pool -> 2 convs -> conv2 -> conv3 + residual -> avg-pool -> fc."""
    x = _maxpool(jax.nn.relu(_bn(_conv(x, p["conv1"]), p["bn"])))
    for i in range(2):
        x = jax.nn.relu(_conv(x, {k: v[i] for k, v in p["rep"].items()}))
    y = jax.nn.relu(_conv(x, p["conv2"]))
    x = jax.nn.relu(_conv(y, p["conv3"]) + x)
    return _head(x, p)


def transformed(p: Any, x: Any) -> Any:
    """:func:`plain` with its stages inside jit, lax.scan, jax.checkpoint and lax.cond."""
    x = jax.jit(lambda x, c, b: _maxpool(jax.nn.relu(_bn(_conv(x, c), b))))(x, p["conv1"], p["bn"])
    x, _ = jax.lax.scan(lambda c, q: (jax.nn.relu(_conv(c, q)), None), x, p["rep"])
    y = jax.checkpoint(lambda y, q: jax.nn.relu(_conv(y, q)))(x, p["conv2"])
    x = jax.lax.cond(p["flag"] > 0, lambda z: jax.nn.relu(_conv(y, p["conv3"]) + z),
                     lambda z: z, x)
    return _head(x, p)


def _x() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(2, 8, 8, 3))


def _lrp(model: Any, composite: str = "zero", **options: Any) -> attrib.Explanation:
    return attrib.explain(model, _x(), method="lrp", composite=composite, target=TARGETS,
                          backend="jax", **options)


@pytest.mark.parametrize("fn", [plain, transformed], ids=["plain", "jit-scan-remat-cond"])
def test_lrp_zero_equals_gradient_times_input(fn: Callable[..., Any]) -> None:
    model = (fn, _params())
    lrp = _lrp(model)
    gxi = attrib.explain(model, _x(), method="gradient_x_input", target=TARGETS, backend="jax")
    assert lrp.attribution.dtype == np.float64
    assert _rel(lrp.attribution, gxi.attribution) <= 1e-10
    sites = 5 if fn is plain else 4  # a loop body counts once
    assert lrp.stats["rules"] == {"convolution": sites, "normalisation": 1, "dense": 1,
                                  "pooling": 1, "addition": 1, "rectifier": sites}


@pytest.mark.parametrize("composite,options", [
    ("epsilon_plus_flat", {}), ("epsilon_gamma_box", {"low": -3.0, "high": 3.0}),
    ("epsilon_alpha2_beta1", {})])
def test_rules_reach_inside_jit_scan_remat_and_cond(composite: str, options: Any) -> None:
    want = _lrp((plain, _params()), composite, **options)
    got = _lrp((transformed, _params()), composite, **options)
    assert _rel(got.attribution, want.attribution) <= 1e-12
    assert _rel(want.attribution, _lrp((plain, _params())).attribution) > 1e-3  # not LRP-0


# -- the same network as linen and nnx modules ---------------------------------------------
class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.Conv(6, (3, 3), padding=_PAD, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn")(x)
        x = _maxpool(nn.relu(x))
        for i in range(2):
            x = nn.relu(nn.Conv(6, (3, 3), padding=_PAD, name=f"rep{i}")(x))
        y = nn.relu(nn.Conv(6, (3, 3), padding=_PAD, name="conv2")(x))
        x = nn.relu(nn.Conv(6, (3, 3), padding=_PAD, name="conv3")(y) + x)
        x = _avgpool(x)
        return nn.Dense(5, name="fc")(x.reshape(x.shape[0], -1))


def _linen(p: Any) -> tuple[Any, Any]:
    params = {name: p[name] for name in ("conv1", "conv2", "conv3", "fc")}
    params |= {f"rep{i}": {k: v[i] for k, v in p["rep"].items()} for i in range(2)}
    params["bn"] = {"scale": p["bn"]["scale"], "bias": p["bn"]["bias"]}
    return LinenNet(), {"params": params,
                        "batch_stats": {"bn": {"mean": p["bn"]["mean"], "var": p["bn"]["var"]}}}


class NNXNet(nnx.Module):
    def __init__(self, p: Any) -> None:
        rngs = nnx.Rngs(0)

        def conv(q: Any, cin: int) -> nnx.Conv:
            layer = nnx.Conv(cin, 6, (3, 3), padding=_PAD, param_dtype=jnp.float64, rngs=rngs)
            layer.kernel[...], layer.bias[...] = q["kernel"], q["bias"]
            return layer

        self.conv1 = conv(p["conv1"], 3)
        self.bn = nnx.BatchNorm(6, epsilon=1e-5, use_running_average=True,
                                param_dtype=jnp.float64, rngs=rngs)
        self.bn.scale[...], self.bn.bias[...] = p["bn"]["scale"], p["bn"]["bias"]
        self.bn.mean = nnx.BatchStat(p["bn"]["mean"])  # nnx makes float32 statistics
        self.bn.var = nnx.BatchStat(p["bn"]["var"])
        self.rep0, self.rep1 = (conv({k: v[i] for k, v in p["rep"].items()}, 6) for i in range(2))
        self.conv2, self.conv3 = conv(p["conv2"], 6), conv(p["conv3"], 6)
        self.fc = nnx.Linear(24, 5, param_dtype=jnp.float64, rngs=rngs)
        self.fc.kernel[...], self.fc.bias[...] = p["fc"]["kernel"], p["fc"]["bias"]

    def __call__(self, x: Any) -> Any:
        x = _maxpool(nnx.relu(self.bn(self.conv1(x))))
        x = nnx.relu(self.rep1(nnx.relu(self.rep0(x))))
        y = nnx.relu(self.conv2(x))
        x = nnx.relu(self.conv3(y) + x)
        x = _avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


def test_linen_nnx_and_function_models_give_one_map_with_a_layer_rule() -> None:
    p = _params()
    rules = {"conv2": "wsquare", "dense": "zplus"}
    want = _lrp((plain, p), "epsilon_alpha2_beta1", rules=rules)
    without = _lrp((plain, p), "epsilon_alpha2_beta1", rules={"dense": "zplus"})
    assert _rel(want.attribution, without.attribution) > 1e-3  # the layer rule acts
    for model in (_linen(p), NNXNet(p)):
        got = _lrp(model, "epsilon_alpha2_beta1", rules=rules)
        assert _rel(got.logits, want.logits) <= 1e-12
        assert _rel(got.attribution, want.attribution) <= 1e-10, type(model).__name__
        assert got.stats["rules"] == want.stats["rules"]


def test_a_layer_rule_naming_no_layer_suggests_one() -> None:
    with pytest.raises(attrib.AttribError, match=r"rules: .*'conv_2'.*Did you mean 'conv2'"):
        _lrp(_linen(_params()), "epsilon", rules={"conv_2": "flat"})


def test_non_strict_rule_set_keeps_true_derivatives() -> None:
    """A user rule set without ``strict``: an op with no rule (GELU) takes its true derivative.

    With every rule the true derivative and the seed the target logit, the map
    is logit × d logit / dx.
    """
    wrapped = attrib.wrap((_gelu, _params()), backend="jax")
    rules = RuleSet("logit-weighted", rectifier="vanilla", seed="relevance")
    result = wrapped.gradients(attrib.GradientRequest(inputs=_x(), targets=np.array(TARGETS),
                                                      rule=rules))
    grad = wrapped.gradients(attrib.GradientRequest(inputs=_x(), targets=np.array(TARGETS)))
    logit = result.logits[np.arange(2), TARGETS]
    np.testing.assert_allclose(result.input_gradient,
                               logit[:, None, None, None] * grad.input_gradient, rtol=1e-12)


# -- operations without a rule ---------------------------------------------------------------
def _tail(x: Any, p: Any) -> Any:
    return _head(_maxpool(x), p)


def _after_relu_bn(p: Any, x: Any) -> Any:
    return _tail(_bn(jax.nn.relu(_conv(x, p["conv1"])), p["bn"]), p)


def _bare_max(p: Any, x: Any) -> Any:
    return _tail(jnp.maximum(_conv(x, p["conv1"]), 0.0), p)


def _gelu(p: Any, x: Any) -> Any:
    return _tail(jax.nn.gelu(_conv(x, p["conv1"])), p)


def _product(p: Any, x: Any) -> Any:
    y = jax.nn.relu(_conv(x, p["conv1"]))
    return _tail(y * jax.nn.relu(_conv(y, p["conv2"])), p)  # a gate: two activations


def _while(p: Any, x: Any) -> Any:
    y = jax.lax.while_loop(lambda c: c[1] < 2, lambda c: (jax.nn.relu(c[0]), c[1] + 1),
                           (_conv(x, p["conv1"]), 0))[0]
    return _tail(y, p)


@pytest.mark.parametrize("fn,match", [
    (_after_relu_bn, r"primitive 'sub' at test_jax_lrp.py:\d+ of an activation and a constant "
                     r"that follows no convolution"),
    (_bare_max, r"primitive 'max' at test_jax_lrp.py:\d+ applied to an activation"),
    (_gelu, r"primitive 'integer_pow' at test_jax_lrp.py:\d+ via 'gelu' applied to an activation"),
    (_product, r"primitive 'mul' at test_jax_lrp.py:\d+ applied to an activation"),
    (_while, r"while_loop carrying an activation at test_jax_lrp.py:\d+"),
], ids=["batchnorm after a relu", "bare maximum", "gelu", "product of activations", "while"])
def test_an_operation_without_a_rule_is_named(fn: Callable[..., Any], match: str) -> None:
    p = _params()
    kept = jax.tree_util.tree_map(np.array, p)
    with pytest.raises(attrib.AttribError, match=r"model: expected operations rule set") as info:
        _lrp((fn, p), "epsilon_plus_flat")
    assert re.search(match, str(info.value)), str(info.value)
    jax.tree_util.tree_map(np.testing.assert_array_equal, p, kept)
