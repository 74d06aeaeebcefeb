"""AttnLRP and CP-LRP on unmodified Flax ViTs: linen, nnx, ``jax.nn.dot_product_attention`` (issue 22).

The maps are checked against torch in ``tests/parity/test_attnlrp_parity.py``;
here: CP-LRP conserves relevance (Σ R = the target logit with zero biases and
ε = 0: Ali et al. 2022), the nnx and ``jax.nn`` spellings of the same ViT give
the linen twin's map, a jitted and a rematerialised spelling give the same map,
and the parameters are left as found. Float64, the tiny ViT of
``support.vit_twins`` (two blocks, patch 8 on 16², batch 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import attrib

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")
torch = pytest.importorskip("torch")

from support import vit_twins as vt  # noqa: E402


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(autouse=True)
def _x64() -> Iterator[None]:
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return vt.linen_params(vt.torch_vit())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return vt.images().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def linen_explanation(params: dict[str, Any], images: np.ndarray) -> Any:
    with jax.enable_x64(True):
        return attrib.explain((vt.linen_vit(), params), images, method="attnlrp",
                              target=vt.TARGETS)


@pytest.fixture(scope="module")
def linen_map(linen_explanation: Any) -> np.ndarray:
    return linen_explanation.attribution


def test_cp_lrp_conserves_relevance(images: np.ndarray) -> None:
    params = vt.linen_params(vt.torch_vit(seed=1, zero_biases=True))
    model = vt.linen_vit()
    e = attrib.explain((model, params), images, method="attnlrp", target=vt.TARGETS, cp=True,
                       epsilon=0.0)
    logits = np.asarray(model.apply(params, jnp.asarray(images)))[[0, 1], vt.TARGETS]
    np.testing.assert_allclose(e.attribution.reshape(2, -1).sum(axis=1), logits, rtol=1e-8)
    # and at the tokens entering the first block (class token + 2x2 grid)
    assert e.parts["tokens"].shape == (2, 5) and e.layer_attribution.shape == (2, 2, 2)
    np.testing.assert_allclose(e.parts["tokens"].sum(axis=1), logits, rtol=1e-8)
    # AttnLRP's softmax rule does not conserve: relevance enters the logits of the attention
    full = attrib.explain((model, params), images, method="attnlrp", target=vt.TARGETS,
                          epsilon=0.0)
    assert np.abs(full.attribution.reshape(2, -1).sum(axis=1) - logits).min() \
        > 1e-3 * np.abs(logits).max()
    # but from the tokens to the pixels it does (a bias-free patch embedding, no position
    # embedding, a zero class token): Σ tokens = Σ pixels
    np.testing.assert_allclose(full.parts["tokens"].sum(axis=1),
                               full.attribution.reshape(2, -1).sum(axis=1), rtol=1e-8)


def test_nnx_and_jax_nn_attention(params: dict[str, Any], images: np.ndarray,
                                  linen_explanation: Any) -> None:
    """nnx with flax's attention is the linen model; nnx's default attention is
    ``jax.nn.dot_product_attention``, which runs its softmax in float32. The token maps
    follow (the tokens are found in every spelling)."""
    kept = jax.tree_util.tree_map(np.array, params)
    linen_map, linen_tokens = linen_explanation.attribution, linen_explanation.parts["tokens"]
    same = attrib.explain(vt.nnx_vit(params, attention="flax"), images, method="attnlrp",
                          target=vt.TARGETS)
    assert _rel(same.attribution, linen_map) <= 1e-10
    assert _rel(same.parts["tokens"], linen_tokens) <= 1e-10
    default = attrib.explain(vt.nnx_vit(params), images, method="attnlrp", target=vt.TARGETS)
    jax_nn = attrib.explain((vt.linen_vit("jax"), params), images, method="attnlrp",
                            target=vt.TARGETS)
    assert np.isfinite(default.attribution).all() and np.isfinite(jax_nn.attribution).all()
    for key in ("attribution", "tokens"):
        a, b = ((e.attribution if key == "attribution" else e.parts[key])
                for e in (default, jax_nn))
        assert _rel(a, b) <= 1e-12  # one program, two spellings
    assert 0 < _rel(jax_nn.attribution, linen_map) <= 1e-6  # float32 softmax (measured 6.0e-8)
    assert 0 < _rel(jax_nn.parts["tokens"], linen_tokens) <= 1e-6
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, kept)


def test_jit_and_remat_spellings(params: dict[str, Any], images: np.ndarray,
                                 linen_map: np.ndarray) -> None:
    module = vt.linen_vit()
    jitted = jax.jit(jax.checkpoint(module.apply))
    ours = attrib.explain((lambda p, x: jitted(p, x), params), images, method="attnlrp",
                          target=vt.TARGETS)
    assert _rel(ours.attribution, linen_map) <= 1e-12
    # the tokens are searched outside remat / scan bodies only: said, not guessed
    assert "tokens" not in ours.parts and "remat" in ours.stats["token_relevance"]
