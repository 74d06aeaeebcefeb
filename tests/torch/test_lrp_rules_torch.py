"""The torch LRP rules against their NumPy references, on the edge cases of the fast paths.

``attrib_torch._relevance`` computes the stabilised division in place with
as few passes as the signs allow, and skips the all-zero parts of a signed
input; each case here is one branch of that, checked bitwise against
:func:`attrib.rules.stabilized_divide` / the rules' ``reference``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib.rules import AlphaBeta, Epsilon, Gamma, LinearOp, ZPlus, stabilized_divide
from attrib_torch._relevance import _divide, linear_relevance

DENOMINATORS = {
    "non-negative": [0.0, 0.5, 3.0, 1e-300, 0.0],
    "signed": [-2.0, 0.0, 1.5, -1e-300, 4.0],
    "negative zero": [-0.0, -0.0, 1.0, -3.0, 0.0],
    "all zero": [0.0, 0.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 1e-300])
@pytest.mark.parametrize("case", list(DENOMINATORS))
@pytest.mark.parametrize("inplace", [False, True])
def test_divide_is_the_reference_bit_for_bit(dtype: torch.dtype, epsilon: float, case: str,
                                             inplace: bool) -> None:
    r = torch.tensor([1.0, -2.0, 3.0, 0.5, 7.0], dtype=dtype)
    den = torch.tensor(DENOMINATORS[case], dtype=dtype)
    expected = stabilized_divide(r.numpy().astype(np.float64), den.numpy().astype(np.float64),
                                 float(np.asarray(epsilon, dtype=den.numpy().dtype)))
    kept = den.clone()
    out = _divide(r, den, epsilon, inplace=inplace)
    if dtype == torch.float64:
        np.testing.assert_array_equal(out.numpy(), expected)
    else:  # the NumPy reference in float64; torch's float32 ops round once more per step
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=0)
    assert (out.numpy() == 0).sum() == (expected == 0).sum()
    if not inplace:
        assert torch.equal(den, kept)


def test_divide_broadcasts_a_smaller_denominator_without_writing_it() -> None:
    r = torch.arange(6, dtype=torch.float64).reshape(2, 3) - 2.0
    den = torch.tensor([[0.0], [-2.0]], dtype=torch.float64)
    out = _divide(r, den, 0.0, inplace=True)
    np.testing.assert_array_equal(out.numpy(), stabilized_divide(r.numpy(), den.numpy(), 0.0))
    assert den.shape == (2, 1) and den[1, 0] == -2.0


def _dense() -> LinearOp:
    return LinearOp(forward=lambda x, w, b: x @ w.T + (0.0 if b is None else b),
                    transpose=lambda g, w: g @ w)


@pytest.mark.parametrize("sign", ["non-negative", "signed", "non-positive", "zero"])
@pytest.mark.parametrize("rule", [ZPlus(1e-6), AlphaBeta(2.0, 1.0, 1e-6), Gamma(0.25, 1e-6),
                                  Epsilon(0.0)])
def test_signed_inputs_take_every_part(sign: str, rule: object) -> None:
    """x ≥ 0 (after a ReLU) runs one term; signed, non-positive and zero inputs the others."""
    gen = np.random.default_rng(3)
    x = gen.normal(size=(3, 5))
    x = {"non-negative": np.maximum(x, 0), "signed": x, "non-positive": np.minimum(x, 0),
         "zero": np.zeros_like(x)}[sign]
    w, b, r = gen.normal(size=(4, 5)), gen.normal(size=4), gen.normal(size=(3, 4))
    expected = rule.reference(x, w, b, r, _dense())  # type: ignore[attr-defined]
    for scratch in (False, True):
        wt = torch.tensor(w)
        out = linear_relevance(rule, torch.nn.functional.linear, torch.tensor(x), wt,  # type: ignore[arg-type]
                               torch.tensor(b), torch.tensor(r), scratch_weight=scratch)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-300)
        if not scratch:
            assert torch.equal(wt, torch.tensor(w))  # the caller's weights are never written
