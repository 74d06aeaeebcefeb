"""Many threads calling attrib on one Flax model, or on several, get the sequential maps.

The program caches are shared by every thread; the tests start from an empty
cache (so the threads trace and insert at once) and also with a cache so small
that the threads evict each other's programs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attrib
import attrib_jax._model as jax_model
from support.threads import run_in_threads

METHODS: list[tuple[str, str | None]] = [
    ("saliency", None),
    ("guided_backprop", None),
    ("gradcam", "block"),
    ("guided_gradcam", "block"),
    ("lrp", None),
]
CALLS = 3


class Block(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        return jax.nn.relu(nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = jax.nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x))
        x = Block(name="block")(x)
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


def _model(seed: int) -> tuple[nn.Module, Any]:
    return Net(), Net().init(jax.random.key(seed), jnp.zeros((1, 8, 8, 3)))


MODELS = [_model(0), _model(1)]
X = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype(np.float32)


def _explain(model: Any, method: str, layer: str | None) -> np.ndarray:
    return attrib.explain(model, X, method=method, layer=layer, target=[1, 4],
                          backend="jax").attribution


@pytest.mark.parametrize("cache", ["empty cache", "tiny cache"])
@pytest.mark.parametrize("sharing", ["same model", "different models"])
def test_threads_get_the_sequential_maps(
    sharing: str, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = [(MODELS[0] if sharing == "same model" else MODELS[i % 2], *METHODS[i])
            for i in range(len(METHODS))]
    expected = [_explain(model, method, layer) for model, method, layer in plan]
    kept = [jax.tree_util.tree_map(np.array, variables) for _, variables in MODELS]
    jax_model.clear_cache()
    if cache == "tiny cache":  # every thread evicts the others' programs and shapes
        monkeypatch.setattr(jax_model, "_CACHE_SIZE", 1)

    def job(i: int) -> Callable[[], list[np.ndarray]]:
        model, method, layer = plan[i]
        return lambda: [_explain(model, method, layer) for _ in range(CALLS)]

    results = run_in_threads([job(i) for i in range(len(plan))])
    for (_, method, _), maps, reference in zip(plan, results, expected):
        for got in maps:
            np.testing.assert_array_equal(got, reference, err_msg=method)
    for (_, variables), before in zip(MODELS, kept):
        jax.tree_util.tree_map(np.testing.assert_array_equal, variables, before)


def test_nnx_and_function_models_in_threads() -> None:
    # the other two kinds of model: an nnx module (merged afresh on every call) and a
    # plain (apply_fn, params) pair, each in two threads with two methods at once
    from .jax_testnets import function_net, images, nnx_net

    x = images()
    nnx_model, function_model = nnx_net(), function_net()
    plan = [(nnx_model, "saliency"), (nnx_model, "guided_backprop"),
            (function_model, "saliency"), (function_model, "deconvnet")]

    def run(model: Any, method: str) -> np.ndarray:
        return attrib.explain(model, x, method=method, target=[0, 3], backend="jax").attribution

    expected = [run(model, method) for model, method in plan]
    jax_model.clear_cache()
    results = run_in_threads([lambda m=m, k=k: [run(m, k) for _ in range(CALLS)]
                              for m, k in plan])
    for (_, method), maps, reference in zip(plan, results, expected):
        for got in maps:
            np.testing.assert_array_equal(got, reference, err_msg=method)
