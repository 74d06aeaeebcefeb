"""Several methods in one ``attrib.explain`` call (issue 19), jax backend.

Every map equals, bit for bit, the same method called alone (float32 and
float64); ``stats["plan"]`` counts the calls, forward and backward passes that
ran; the requests of one call are one compiled program, whose forward pass XLA
computes once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attrib

from .test_jax_methods import TwoStage

SEED = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet", "gradcam",
        "guided_gradcam"]


def _assert_same(alone: attrib.Explanation, shared: attrib.Explanation) -> None:
    for name in ("attribution", "layer_attribution", "targets", "logits", "inputs"):
        a, b = getattr(alone, name), getattr(shared, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    for part in alone.parts:
        assert np.array_equal(alone.parts[part], shared.parts[part]), part


@pytest.mark.parametrize("layer, backward, dtype", [
    ("features", 4, jnp.float32),   # relus above: guided Grad-CAM's call runs two backward passes
    ("block", 3, jnp.float32),      # none above: one each
    ("block", 3, jnp.float64),
])
def test_six_seed_methods_in_one_call_equal_each_alone(layer: str, backward: int,
                                                       dtype: Any) -> None:
    with jax.enable_x64(dtype == jnp.float64):
        variables = TwoStage().init(jax.random.key(7), jnp.zeros((1, 8, 8, 3), dtype))
        model = attrib.wrap((TwoStage(), variables), backend="jax")
        x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(dtype)
        methods = [*SEED, "integrated_gradients"]
        options = {"gradcam": {"layer": layer}, "guided_gradcam": {"layer": layer},
                   "integrated_gradients": {"steps": 3}}
        many = attrib.explain(model, x, method=methods, options=options)
        for name in methods:
            alone = attrib.explain(model, x, method=name, **options.get(name, {}))
            _assert_same(alone, many[name])
    plan = many["deconvnet"].stats["plan"]
    assert (plan["gradient_calls"], plan["forward_passes"], plan["backward_passes"]) == \
        (3, 1, backward)
    assert [p["methods"] for p in plan["passes"]] == [
        ("saliency", "gradient_x_input", "gradcam"), ("guided_backprop", "guided_gradcam"),
        ("deconvnet",)]
    assert plan["alone"] == ("integrated_gradients",)


def test_resnet_twin_seed_methods() -> None:
    from attrib_jax import resnet18

    module = resnet18(num_classes=10)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    model = attrib.wrap((module, variables), backend="jax", train=False)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    options = {"gradcam": {"layer": "layer4"}, "guided_gradcam": {"layer": "layer4"}}
    many = attrib.explain(model, x, method=SEED, options=options, target=[1, 4])
    for name in SEED:
        _assert_same(attrib.explain(model, x, method=name, target=[1, 4],
                                    **options.get(name, {})), many[name])
    plan = many["gradcam"].stats["plan"]
    assert (plan["forward_passes"], plan["backward_passes"]) == (1, 3)


def test_one_program_computes_the_forward_pass_once() -> None:
    # the program of the three requests holds the forward convolutions once: as many
    # convolutions as the three programs of the requests alone, less two forward passes
    from attrib import GradientRequest
    from attrib_jax import _model as jax_model

    variables = TwoStage().init(jax.random.key(7), jnp.zeros((1, 8, 8, 3)))
    model = attrib.wrap((TwoStage(), variables), backend="jax")
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    requests = [GradientRequest(inputs=x, rule="vanilla", layers=("block",)),
                GradientRequest(inputs=x, rule="guided", layers=("block",)),
                GradientRequest(inputs=x, rule="deconvnet")]
    results = model.gradients_many(requests)
    assert [r.stats["forward_passes"] for r in results] == [1, 0, 0]
    params, xj = model._forward.params, jnp.asarray(x)
    eps = [model._scored(r, xj, tuple(r.layers))[2] for r in requests]

    def convolutions(config: tuple[Any, ...], *args: Any) -> int:
        entry = next(e for k, e in jax_model._CACHE.items() if k[0] == model._forward.key
                     and k[1:] == config)
        return entry.program.lower(params, xj, *args).compile().as_text().count(" convolution(")

    many = convolutions(("many", tuple((r.rule, tuple(r.layers), "logit", True, True)
                                       for r in requests)), eps, None, None)
    alone = 0
    for request, e in zip(requests, eps):
        alone_result = model.gradients(request)
        assert np.array_equal(alone_result.input_gradient, results[requests.index(request)]
                              .input_gradient)
        alone += convolutions(("gradients", request.rule, tuple(request.layers), "logit",
                               True, True), e, None, None)
    forward = model._entry("forward").program.lower(params, xj).compile().as_text() \
        .count(" convolution(")
    assert forward >= 2 and many == alone - 2 * forward
