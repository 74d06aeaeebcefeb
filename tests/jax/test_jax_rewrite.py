"""Guided and deconvnet rules through the program rewrite equal models that apply them explicitly.

Each model under test calls ``jax.nn.relu`` / ``relu6`` inside a jitted
helper, ``remat`` / ``jax.checkpoint``, ``scan`` and ``lax.cond``; its
reference is the same network (same weights) built with the test's own
``custom_vjp`` rectifier applying the rule. The rewrite must find every
rectifier, leave LayerNorm's ``max(0, var)`` alone and keep the vanilla
gradient exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attrib
from attrib_jax._rewrite import analyse, match_rectifier, trace

from .jax_testnets import function_net, images, linen_net, nnx_net, score_grad

TARGETS = [0, 3]
RULES = {"guided_backprop": "guided", "deconvnet": "deconvnet", "saliency": "vanilla"}


def _check(model, reference_fn, method: str) -> attrib.Explanation:
    x = images()
    explanation = attrib.explain(model, x, method=method, backend="jax", target=TARGETS)
    expected = score_grad(reference_fn, x, TARGETS)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(explanation.attribution, expected, rtol=1e-5, atol=1e-6)
    return explanation


@pytest.mark.parametrize("method", sorted(RULES))
def test_linen_rewrite_equals_explicit_rule(method: str) -> None:
    module, variables = linen_net()
    reference, _ = linen_net(RULES[method])
    explanation = _check((module, variables), lambda x: reference.apply(variables, x), method)
    assert explanation.stats["rectifiers"] == 5  # jit helper, remat, scan body, cond x 2


def test_linen_rules_differ_from_vanilla() -> None:
    """The test model is one where the rules matter (else the equalities above prove little)."""
    module, variables = linen_net()
    x = images()
    maps = {m: attrib.explain((module, variables), x, method=m, target=TARGETS).attribution
            for m in RULES}
    assert not np.allclose(maps["guided_backprop"], maps["saliency"])
    assert not np.allclose(maps["deconvnet"], maps["guided_backprop"])


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_nnx_rewrite_equals_explicit_rule(method: str) -> None:
    model, reference = nnx_net(), nnx_net(RULES[method])
    explanation = _check(model, reference, method)
    assert explanation.stats["rectifiers"] == 5  # jit, checkpoint, scan, cond x 2


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "saliency"])
def test_apply_fn_rewrite_equals_explicit_rule(method: str) -> None:
    apply_fn, params = function_net()
    reference, _ = function_net(RULES[method])
    _check((apply_fn, params), lambda x: reference(params, x), method)


def test_layernorm_max_is_not_a_rectifier() -> None:
    """LayerNorm computes max(0, var): it has the shape of a relu but must keep its gradient."""
    import flax.linen as nn

    class Norm(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(6)(x.reshape(len(x), -1))
            x = jnp.tanh(nn.LayerNorm()(x))
            x = jnp.maximum(x, 0.0) * 2.0  # a bare max(x, 0): not jax.nn.relu, not rewritten
            return nn.Dense(4)(x)

    module = Norm()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    x = images()
    program = trace(lambda v, x: module.apply(v, x), variables, x)
    maxima = [e for e in program.closed.jaxpr.eqns if e.primitive.name == "max"]
    assert maxima, "the LayerNorm variance clamp should appear as a max"
    assert analyse(program.closed, [False] * 5).rectifiers == 0
    with pytest.warns(attrib.AttribWarning, match="changed no rectifier"):
        guided = attrib.explain((module, variables), x, method="guided_backprop", target=[0, 2])
    expected = score_grad(lambda x: module.apply(variables, x), x, [0, 2])
    np.testing.assert_allclose(guided.attribution, expected, rtol=1e-5, atol=1e-7)
    assert guided.stats["rectifiers"] == 0


def test_rewrite_recognises_flax_relu_spellings() -> None:
    """jax.nn.relu, flax.linen.relu and nnx.relu are all found; relu6 with its bound."""
    import flax.linen as nn
    from flax import nnx

    for relu in (jax.nn.relu, nn.relu, nnx.relu):
        closed = jax.make_jaxpr(relu)(jnp.ones(3))
        assert [match_rectifier(e) for e in closed.jaxpr.eqns][0].upper is None
    closed = jax.make_jaxpr(jax.nn.relu6)(jnp.ones(3))
    assert match_rectifier(closed.jaxpr.eqns[0]).upper == 6.0
    # a bare maximum and other custom_jvp functions are not rectifiers
    for fn in (lambda x: jnp.maximum(x, 0.0), jax.nn.softplus, jax.nn.silu, jax.nn.gelu):
        closed = jax.make_jaxpr(fn)(jnp.ones(3))
        assert all(match_rectifier(e) is None for e in closed.jaxpr.eqns)


def test_vanilla_program_is_the_true_gradient_under_jit_and_vmap() -> None:
    module, variables = linen_net()
    x = jnp.asarray(images())
    program = trace(lambda x: module.apply(variables, x), x[:1])  # one sample, vmapped below
    fn = program.function("guided")
    reference, _ = linen_net("guided")
    per_sample = jax.vmap(jax.grad(lambda xi: fn(xi[None])[0, 1]))(x)
    expected = jax.vmap(jax.grad(lambda xi: reference.apply(variables, xi[None])[0, 1]))(x)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-6)
    program = trace(lambda x: module.apply(variables, x), x)
    jitted = jax.jit(jax.grad(lambda x: program.function("vanilla")(x)[:, 1].sum()))(x)
    np.testing.assert_allclose(jitted, score_grad(lambda x: module.apply(variables, x), x, [1, 1]),
                               rtol=1e-5, atol=1e-6)


def test_while_loop_bodies_are_rewritten_and_keep_their_values() -> None:
    """``while_loop`` has no reverse-mode gradient, but its rectifiers are found and rewritten
    (its forward values unchanged) so that a program containing one still traces."""
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)), jnp.float32)

    def fn(x):
        return jax.lax.while_loop(lambda c: c[1] < 3,
                                  lambda c: (jax.nn.relu(c[0] @ w) - 0.1, c[1] + 1), (x, 0))[0]

    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)), jnp.float32)
    program = trace(fn, x)
    assert analyse(program.closed, [True]).rectifiers == 1
    rewritten = jax.make_jaxpr(program.function("guided"))(x)
    assert "custom_vjp_call" in str(rewritten)
    np.testing.assert_allclose(program.call("guided", x), fn(x), rtol=1e-6)


def test_layers_inside_lifted_transforms_give_a_clear_error() -> None:
    module, variables = linen_net()
    model = attrib.wrap((module, variables), backend="jax")
    with pytest.raises(attrib.AttribError, match="lifted transforms"):
        model.gradients(attrib.GradientRequest(inputs=images(), layers=("remat_block",)))
    with pytest.raises(attrib.AttribError, match="one array"):
        model.gradients(attrib.GradientRequest(inputs=images(), layers=("scan",)))
    result = model.gradients(attrib.GradientRequest(inputs=images(), layers=("fc1",)))
    assert result.layer_gradients["fc1"].shape == (2, 8)
