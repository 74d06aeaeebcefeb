"""Every method through ``attrib.explain(..., backend="jax")`` against values computed here.

The two-stage models let the test compute a layer's activation and gradient
independently: the stage before the layer is applied on its own, and the
rest of the network is written as a separate function of that activation.
Grad-CAM is then done by hand in NumPy.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import attrib
from attrib_jax._model import clear_cache, trace_count

from .jax_testnets import acts, function_net, score_grad

N, SIZE = 2, 8


def _x(seed: int = 1, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, SIZE, SIZE, 3)).astype(dtype)


# -- a linen model in two stages -------------------------------------------------------------


class Features(nn.Module):
    act: Any = jax.nn.relu

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = self.act(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x))
        return nn.Conv(6, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="conv2")(x)


class Block(nn.Module):
    act: Any = jax.nn.relu

    @nn.compact
    def __call__(self, x: Any) -> Any:
        return self.act(nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), name="conv")(self.act(x)))


class TwoStage(nn.Module):
    """features (pre-relu output) -> block (relu, conv, relu) -> mean -> fc."""

    act: Any = jax.nn.relu

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = Features(self.act, name="features")(x)
        x = Block(self.act, name="block")(x)
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


VARIABLES = TwoStage().init(jax.random.key(7), jnp.zeros((1, SIZE, SIZE, 3)))
P = VARIABLES["params"]


def _after(layer: str, rule: str | None = None):
    """The network after ``layer`` as a function of that layer's output, with ``rule``'s relus."""
    act = acts(rule)[0]
    if layer == "features":
        return lambda a: _fc(Block(act).apply({"params": P["block"]}, a))
    return _fc


def _fc(a: Any) -> Any:
    return nn.Dense(5).apply({"params": P["fc"]}, jnp.mean(a, axis=(1, 2)))


def _activation(layer: str, x: np.ndarray) -> Any:
    a = Features().apply({"params": P["features"]}, x)
    return a if layer == "features" else Block().apply({"params": P["block"]}, a)


def _gradcam_by_hand(layer: str, x: np.ndarray, targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    a = _activation(layer, x)
    g = score_grad(_after(layer), a, targets)
    a = np.asarray(a)
    weights = g.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * a).sum(axis=3), 0)
    return cam, attrib.resize_bilinear(cam, (SIZE, SIZE))


MODEL = (TwoStage(), VARIABLES)
TARGETS = [1, 4]


def _guided_reference(rule: str, x: np.ndarray, targets: list[int]) -> np.ndarray:
    return score_grad(lambda x: TwoStage(acts(rule)[0]).apply(VARIABLES, x), x, targets)


def test_saliency_and_gradient_x_input() -> None:
    x = _x()
    expected = score_grad(lambda x: TwoStage().apply(VARIABLES, x), x, TARGETS)
    saliency = attrib.explain(MODEL, x, method="saliency", backend="jax", target=TARGETS)
    np.testing.assert_allclose(saliency.attribution, expected, rtol=1e-5, atol=1e-7)
    assert saliency.layout == "NHWC" and saliency.stats["backward_passes"] == 1
    gxi = attrib.explain(MODEL, x, method="gradient_x_input", backend="jax", target=TARGETS)
    np.testing.assert_allclose(gxi.attribution, expected * x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(saliency.logits, TwoStage().apply(VARIABLES, x), rtol=1e-6)


@pytest.mark.parametrize("method, rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_rule_methods(method: str, rule: str) -> None:
    x = _x()
    result = attrib.explain(MODEL, x, method=method, backend="jax", target=TARGETS)
    expected = _guided_reference(rule, x, TARGETS)
    assert np.abs(expected).reshape(N, -1).max(axis=1).min() > 0
    np.testing.assert_allclose(result.attribution, expected, rtol=1e-5, atol=1e-7)
    assert result.stats["rectifiers"] == 3


@pytest.mark.parametrize("layer", ["features", "block"])
def test_gradcam_by_hand(layer: str) -> None:
    x = _x()
    cam, upsampled = _gradcam_by_hand(layer, x, TARGETS)
    result = attrib.explain(MODEL, x, method="gradcam", layer=layer, backend="jax", target=TARGETS)
    assert cam.reshape(N, -1).max(axis=1).min() > 0, "an all-zero CAM would prove little"
    np.testing.assert_allclose(result.layer_attribution, cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.attribution, upsampled, rtol=1e-5, atol=1e-6)
    assert result.stats["backward_passes"] == 1


@pytest.mark.parametrize("layer, passes", [("features", 2), ("block", 1)])
def test_guided_gradcam_is_exact_with_the_fewest_passes(layer: str, passes: int) -> None:
    """Relus lie after ``features`` (two backward passes), none after ``block`` (one)."""
    x = _x()
    _, upsampled = _gradcam_by_hand(layer, x, TARGETS)
    guided = _guided_reference("guided", x, TARGETS)
    result = attrib.explain(MODEL, x, method="guided_gradcam", layer=layer, backend="jax",
                            target=TARGETS)
    assert result.stats["backward_passes"] == passes
    np.testing.assert_allclose(result.parts["gradcam"], upsampled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.attribution, upsampled[..., None] * guided,
                               rtol=1e-5, atol=1e-7)


def test_guided_rule_would_corrupt_the_early_layer_gradient() -> None:
    """Why two passes: the guided gradient at ``features`` differs from the true one."""
    x = _x()
    a = _activation("features", x)
    true = score_grad(_after("features"), a, TARGETS)
    guided = score_grad(_after("features", "guided"), a, TARGETS)
    assert not np.allclose(true, guided)


@pytest.mark.parametrize("objective", ["logit", "log_softmax", "softmax"])
def test_targets_and_objectives(objective: str) -> None:
    x = _x()
    fn = lambda x: TwoStage().apply(VARIABLES, x)  # noqa: E731
    logits = np.asarray(fn(x))
    for target, expected_targets in ((None, logits.argmax(1)), (2, [2, 2]), ([3, 0], [3, 0])):
        result = attrib.explain(MODEL, x, method="saliency", backend="jax", target=target,
                                objective=objective)
        np.testing.assert_array_equal(result.targets, expected_targets)
        np.testing.assert_allclose(result.attribution,
                                   score_grad(fn, x, list(expected_targets), objective),
                                   rtol=1e-5, atol=1e-8)


def test_jax_array_inputs_and_float64() -> None:
    x = _x()
    from_jax = attrib.explain(MODEL, jnp.asarray(x), method="saliency", target=TARGETS)
    np.testing.assert_allclose(from_jax.attribution,
                               attrib.explain(MODEL, x, method="saliency",
                                              target=TARGETS).attribution, rtol=1e-6)
    with jax.enable_x64(True):
        x64 = _x(dtype=np.float64)
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), VARIABLES)
        result = attrib.explain((TwoStage(), variables), x64, method="guided_gradcam",
                                layer="features", target=TARGETS)
        assert result.attribution.dtype == np.float64 and result.logits.dtype == np.float64
        expected = score_grad(lambda x: TwoStage(acts("guided")[0]).apply(variables, x), x64,
                              TARGETS)
        np.testing.assert_allclose(result.parts["guided_backprop"], expected, rtol=1e-12)
    assert not jax.config.jax_enable_x64


# -- caching ---------------------------------------------------------------------------------


def test_second_identical_call_does_not_trace_or_compile_again() -> None:
    clear_cache()
    x = _x()
    attrib.explain(MODEL, x, method="guided_gradcam", layer="features", target=TARGETS)
    traced = trace_count()
    assert traced >= 1
    # new adapter, same module, new variable values (same structure), other targets
    other = jax.tree_util.tree_map(lambda a: a * 1.5, VARIABLES)
    for variables, target in ((VARIABLES, TARGETS), (other, None), (VARIABLES, 3)):
        attrib.explain((TwoStage(), variables), _x(seed=9), method="guided_gradcam",
                       layer="features", target=target)
    # a None target is a different program signature (argmax inside): at most one more trace
    assert trace_count() <= traced + 1
    before = trace_count()
    attrib.explain(MODEL, x, method="guided_gradcam", layer="features", target=None)
    attrib.explain(MODEL, x, method="guided_gradcam", layer="features", target=[0, 0])
    assert trace_count() == before
    attrib.explain(MODEL, _x()[:1], method="guided_gradcam", layer="features", target=0)
    assert trace_count() == before + 1  # a new batch shape traces once more


def test_no_recompilation_in_jax_either() -> None:
    """Counted by JAX itself (public ``jax.monitoring`` events): the second call compiles nothing."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            events.append(event)

    x = _x()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        attrib.explain(MODEL, x, method="deconvnet", target=TARGETS)
        events.clear()
        attrib.explain(MODEL, x, method="deconvnet", target=TARGETS)
        assert events == []
        attrib.explain(MODEL, _x()[:1], method="deconvnet", target=0)  # the listener does listen
        assert any(e.endswith("backend_compile_duration") for e in events)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# -- nnx --------------------------------------------------------------------------------------


class NNXTwo(nnx.Module):
    def __init__(self, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.features = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(4, 6, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)])
        self.fc = nnx.Linear(6, 5, rngs=rngs)

    def __call__(self, x: Any) -> Any:
        x = self.blocks[0](jax.nn.relu(self.features(x)))
        return self.fc(jnp.mean(jax.nn.relu(x), axis=(1, 2)))


def _snapshot(model: nnx.Module) -> tuple[Any, list[np.ndarray], dict[str, int]]:
    graphdef, state = nnx.split(model)
    ids = {"features": id(model.features), "blocks0": id(model.blocks[0]), "fc": id(model.fc)}
    return graphdef, [np.array(v) for v in jax.tree_util.tree_leaves(state)], ids


def _assert_unchanged(model: nnx.Module, snapshot: Any) -> None:
    graphdef, leaves, ids = _snapshot(model)
    assert graphdef == snapshot[0]
    assert ids == snapshot[2]
    assert type(model.features) is nnx.Conv and type(model.blocks[0]) is nnx.Conv
    for a, b in zip(leaves, snapshot[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_nnx_layer_names_and_gradcam_by_hand_leave_the_module_untouched() -> None:
    model = NNXTwo()
    snapshot = _snapshot(model)
    wrapped = attrib.wrap(model, backend="jax")
    assert {"features", "blocks/0", "fc"} <= set(wrapped.layer_names())
    x = _x()
    targets = [0, 2]
    for layer, rest in (
        ("features", lambda a: model.fc(jnp.mean(jax.nn.relu(model.blocks[0](jax.nn.relu(a))),
                                                 axis=(1, 2)))),
        ("blocks/0", lambda a: model.fc(jnp.mean(jax.nn.relu(a), axis=(1, 2)))),
    ):
        a = model.features(x) if layer == "features" else model.blocks[0](
            jax.nn.relu(model.features(x)))
        g = score_grad(rest, a, targets)
        cam = np.maximum((g.mean(axis=(1, 2), keepdims=True) * np.asarray(a)).sum(3), 0)
        result = attrib.explain(model, x, method="guided_gradcam", layer=layer, target=targets)
        np.testing.assert_allclose(result.layer_attribution, cam, rtol=1e-5, atol=1e-6)
        assert result.stats["backward_passes"] == 2  # a relu follows both layers
        _assert_unchanged(model, snapshot)


def test_nnx_module_unchanged_after_calls_that_raised() -> None:
    model = NNXTwo()
    snapshot = _snapshot(model)
    x = _x()
    bad_calls = [
        lambda: attrib.explain(model, x, method="saliency", target=7),
        lambda: attrib.explain(model, x, method="gradcam", layer="nope"),
        lambda: attrib.explain(model, x[..., :2], method="saliency"),  # wrong channel count
        lambda: attrib.explain(model, np.full_like(x, np.nan), method="saliency"),
    ]
    for call in bad_calls:
        with pytest.raises(attrib.AttribError):
            call()
        _assert_unchanged(model, snapshot)
    attrib.explain(model, x, method="guided_backprop")
    _assert_unchanged(model, snapshot)


# -- bad input and (apply_fn, params) ---------------------------------------------------------


@pytest.mark.parametrize("inputs, words", [
    (np.zeros((N, SIZE, SIZE, 3), np.int64), "floating"),
    (np.full((N, SIZE, SIZE, 3), np.inf, np.float32), "finite"),
    (jnp.full((N, SIZE, SIZE, 3), jnp.nan), "finite"),
    (np.zeros((SIZE, SIZE, 3), np.float32), "batch"),
    (np.zeros((N, 3, SIZE, SIZE), np.float32), "NHWC"),  # NCHW by mistake
    ("cat.png", "array"),
])
def test_bad_inputs_raise_a_clear_error(inputs: Any, words: str) -> None:
    with pytest.raises(attrib.AttribError, match="inputs") as info:
        attrib.explain(MODEL, inputs, method="saliency", backend="jax")
    assert words in str(info.value)


def test_apply_fn_models_have_no_layers() -> None:
    apply_fn, params = function_net()
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    assert list(attrib.wrap((apply_fn, params), backend="jax").layer_names()) == []
    with pytest.raises(attrib.AttribError, match="Flax module"):
        attrib.explain((apply_fn, params), x, method="gradcam", backend="jax")
    with pytest.raises(attrib.AttribError, match="no named layers"):
        attrib.explain((apply_fn, params), x, method="gradcam", layer="w1", backend="jax")
    wrapped = attrib.wrap((apply_fn, params), backend="jax")
    with pytest.raises(attrib.AttribError, match="need a Flax module"):
        wrapped.gradients(attrib.GradientRequest(inputs=x, layers=("w1",)))
    with pytest.raises(attrib.AttribError, match="options"):
        attrib.wrap((apply_fn, params), backend="jax", train=False)
    with pytest.raises(attrib.AttribError, match="model"):
        attrib.wrap(("not a model", 3), backend="jax")


def test_call_kwargs_reach_the_module() -> None:
    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x: Any, scale: float = 1.0) -> Any:
            return nn.Dense(3)(x.reshape(len(x), -1)) * scale

    variables = Scaled().init(jax.random.key(0), jnp.zeros((1, 2, 2, 3)))
    x = np.random.default_rng(0).normal(size=(2, 2, 2, 3)).astype(np.float32)
    plain = attrib.explain((Scaled(), variables), x, method="saliency", target=0)
    scaled = attrib.explain(attrib.wrap((Scaled(), variables), backend="jax", scale=3.0), x,
                            method="saliency", target=0)
    np.testing.assert_allclose(scaled.attribution, 3 * plain.attribution, rtol=1e-6)
