"""Attention capture and the attention methods on unmodified Flax ViTs, linen and nnx (issue 22).

The reference attention and its gradient come from a second mechanism: the same
network built with an ``attention_fn`` that computes flax's own
``dot_product_attention_weights`` and adds an explicit zero perturbation (the
gradient with respect to it is the gradient at the attention). Float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import attrib
from attrib import GradientRequest
from attrib.methods.attention_rollout import rollout
from attrib.methods.generic_attention import generic_relevance

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

DIM, HEADS, DEPTH, CLASSES = 16, 2, 2, 5


@pytest.fixture(autouse=True, scope="module")
def _x64() -> Any:
    with jax.enable_x64(True):
        yield


def _probe_fn(store: list, eps: list | None) -> Any:
    """An attention_fn: flax's weights (+ eps[i]) times the values, weights kept in ``store``."""
    def attention(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
        w = nn.dot_product_attention_weights(q, k)
        if eps is not None:
            w = w + eps[len(store)]
        store.append(w)
        return jnp.einsum("...hqk,...khd->...qhd", w, v)
    return attention


class LinenViT(nn.Module):
    attention_fn: Any = None

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.Conv(DIM, (8, 8), strides=(8, 8), padding="VALID", name="embed")(x)
        n = x.shape[0]
        x = x.reshape(n, -1, DIM)
        cls = self.param("cls", nn.initializers.normal(0.5), (1, 1, DIM))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, DIM)), x], 1)
        extra = {} if self.attention_fn is None else {"attention_fn": self.attention_fn}
        for i in range(DEPTH):
            y = nn.LayerNorm(name=f"ln{i}")(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, name=f"attn{i}", **extra)(y)
            x = x + nn.Dense(DIM, name=f"mlp{i}")(nn.gelu(x))
        return nn.Dense(CLASSES, name="head")(x[:, 0])


class NnxViT(nnx.Module):
    def __init__(self, rngs: Any, attention_fn: Any = None) -> None:
        extra = {} if attention_fn is None else {"attention_fn": attention_fn}
        self.embed = nnx.Conv(3, DIM, (8, 8), strides=(8, 8), padding="VALID", rngs=rngs)
        self.cls = nnx.Param(jax.random.normal(jax.random.key(1), (1, 1, DIM)) * 0.5)
        self.blocks = nnx.List([nnx.MultiHeadAttention(num_heads=HEADS, in_features=DIM,
                                                       decode=False, rngs=rngs, **extra)
                                for _ in range(DEPTH)])
        self.head = nnx.Linear(DIM, CLASSES, rngs=rngs)

    def __call__(self, x: Any) -> Any:
        x = self.embed(x)
        n = x.shape[0]
        x = x.reshape(n, -1, DIM)
        x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (n, 1, DIM)), x], 1)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x[:, 0])


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 32, 32, 3))


@pytest.fixture(scope="module")
def linen(x: np.ndarray) -> tuple[Any, Any]:
    net = LinenViT()
    return net, jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                       net.init(jax.random.key(0), x))


def _linen_reference(variables: Any, x: np.ndarray, target: np.ndarray) -> tuple[list, list]:
    shapes: list = []
    LinenViT(_probe_fn(shapes, None)).apply(variables, x)

    def score(eps: list) -> Any:
        store: list = []
        logits = LinenViT(_probe_fn(store, eps)).apply(variables, x)
        return logits[np.arange(len(x)), target].sum(), store

    eps = [jnp.zeros(s.shape) for s in shapes]
    grads, kept = jax.grad(score, has_aux=True)(eps)
    return [np.asarray(a) for a in kept], [np.asarray(g) for g in grads]


def test_linen_capture_and_methods(linen, x):
    net, variables = linen
    target = np.array([1, 3])
    want_a, want_g = _linen_reference(variables, x, target)
    model = attrib.wrap(linen, backend="jax")
    assert model.prefix_tokens() == 1
    result = model.gradients(GradientRequest(inputs=x, targets=target, input_gradient=False,
                                             attention="all", attention_gradients=True))
    assert list(result.attention) == ["attn0", "attn1"]
    for name, a, g in zip(result.attention, want_a, want_g):
        np.testing.assert_allclose(result.attention[name], a, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(result.attention_gradients[name], g, rtol=1e-10, atol=1e-14)
    e = attrib.explain(linen, x, method="generic_attention", target=target)
    np.testing.assert_allclose(e.parts["tokens"], generic_relevance(want_a, want_g)[:, 0],
                               rtol=1e-10)
    r = attrib.explain(linen, x, method="attention_rollout", head_fusion="max",
                       discard_ratio=0.5, attention=["attn1"])
    np.testing.assert_allclose(r.parts["tokens"], rollout(want_a[1:], "max", 0.5)[:, 0],
                               rtol=1e-12)
    assert r.attribution.shape == (2, 32, 32) and r.layer_attribution.shape == (2, 4, 4)


def test_nnx_capture_and_methods(x):
    model = NnxViT(nnx.Rngs(0))
    graph, state = nnx.split(model)
    state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), state)
    model = nnx.merge(graph, state)
    target = np.array([0, 4])
    kept: list = []
    reference = nnx.merge(graph, state)
    for block in reference.blocks:
        block.attention_fn = _probe_fn(kept, None)
    reference(x)
    attn = attrib.wrap(model, backend="jax")
    assert attn.prefix_tokens() == 1
    result = attn.gradients(GradientRequest(inputs=x, targets=target, input_gradient=False,
                                            attention="all", attention_gradients=True))
    assert list(result.attention) == ["attention0", "attention1"]
    # nnx's default attention is jax.nn.dot_product_attention, whose "xla" implementation
    # computes the logits in float32 (preferred_element_type) even for float64 inputs
    for got, want in zip(result.attention.values(), kept):
        np.testing.assert_allclose(got, np.asarray(want), rtol=2e-6, atol=1e-9)
    e = attrib.explain(model, x, method="generic_attention", target=target)
    grads = list(result.attention_gradients.values())
    captured = list(result.attention.values())
    np.testing.assert_allclose(e.parts["tokens"], generic_relevance(captured, grads)[:, 0],
                               rtol=1e-12)
    r = attrib.explain(model, x, method="attention_rollout")
    np.testing.assert_allclose(r.parts["tokens"],
                               rollout([np.asarray(k) for k in kept])[:, 0], rtol=1e-5)


def test_jax_nn_dot_product_attention(x):
    """jax.nn.dot_product_attention (B, T, N, H) in a plain function: (N, heads, T, S) out."""
    rng = np.random.default_rng(1)
    w = {"qkv": rng.normal(size=(3, 3 * 4 * 2)) * 0.5, "head": rng.normal(size=(3, CLASSES))}

    def apply(params: Any, x: Any) -> Any:
        t = x[:, ::8, ::8, :].reshape(x.shape[0], 16, 3)
        q, k, v = jnp.split(t @ params["qkv"], 3, axis=-1)
        shape = (x.shape[0], 16, 2, 4)
        out = jax.nn.dot_product_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape))
        return out.reshape(x.shape[0], 16, 8)[..., :3].mean(1) @ params["head"]

    result = attrib.wrap((apply, w), backend="jax").gradients(GradientRequest(
        inputs=x, input_gradient=False, attention="all"))
    t = x[:, ::8, ::8, :].reshape(2, 16, 3)
    q, k, _ = np.split(t @ w["qkv"], 3, axis=-1)
    q = q.reshape(2, 16, 2, 4).transpose(0, 2, 1, 3)
    k = k.reshape(2, 16, 2, 4).transpose(0, 2, 1, 3)
    from attrib._attention import attention_probabilities
    np.testing.assert_allclose(result.attention["attention0"], attention_probabilities(q, k),
                               rtol=2e-6, atol=1e-9)  # its logits are float32, see above


def test_bad_attention_names(linen, x):
    with pytest.raises(attrib.AttribError, match=r"attention: expected.*'attn9'.*attn0"):
        attrib.explain(linen, x, method="attention_rollout", attention="attn9")
