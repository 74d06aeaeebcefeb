"""AttnLRP and CP-LRP in both backends on one tiny ViT (float64, ≤ 1e-10 relative).

The torch backend routes ``F.scaled_dot_product_attention``, ``F.layer_norm``
and ``F.gelu`` through its function mode; the jax backend finds the products,
softmax, LayerNorm and GELU in the traced jaxpr of the unmodified Flax linen
twin (flax's ``nn.MultiHeadDotProductAttention``). They share no code past the
rules' NumPy definitions (:class:`attrib.rules.TransformerRules`), so agreement
to rounding says both find the same operations and apply the same rule at
each. Two blocks, patch 8 on 16², batch 2, targets [1, 7]; ε = 0 (lxt's
formulation) and the default ε = 1e-6.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
from support import vit_twins as vt  # noqa: E402


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute value."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def twins() -> dict[str, Any]:
    model = vt.torch_vit()  # the linen params are NumPy float64 arrays
    return {"torch": model, "linen": (vt.linen_vit(), vt.linen_params(model))}


@pytest.fixture(autouse=True)
def _x64() -> Iterator[None]:
    with jax.enable_x64(True):
        yield
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"


@pytest.mark.parametrize("epsilon", [0.0, 1e-6])
@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_torch_equals_jax(twins: dict[str, Any], cp: bool, epsilon: float) -> None:
    x = vt.images()
    theirs = attrib.explain(twins["torch"], torch.from_numpy(x), method="attnlrp",
                            target=vt.TARGETS, cp=cp, epsilon=epsilon)
    ours = attrib.explain(twins["linen"], x.transpose(0, 2, 3, 1), method="attnlrp",
                          target=vt.TARGETS, cp=cp, epsilon=epsilon)
    expected = theirs.attribution.transpose(0, 2, 3, 1)
    assert ours.attribution.dtype == np.float64
    assert _rel(ours.attribution, expected) <= 1e-10
    assert _rel(ours.parts["tokens"], theirs.parts["tokens"]) <= 1e-10  # the token maps too
    np.testing.assert_allclose(ours.logits, theirs.logits, rtol=1e-12)
    rules = ours.stats["rules"]
    torch_rules = theirs.stats["rules"]
    for kind in ("layer_norm", "elementwise", "constant", "addition", "convolution"):
        assert rules[kind] == torch_rules[kind], kind
    # two attentions: each a softmax and two products (torch counts the attention call)
    assert rules["softmax"] == torch_rules["attention"] == vt.DEPTH
    assert rules["product"] == 2 * vt.DEPTH
