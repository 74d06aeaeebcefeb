"""Several inputs in jax: ``apply(params, image, table)`` explained per input, equal to Captum's.

The Flax twin of the torch two-input network (``tests/support/two_inputs.py``,
image channels last) in float64: saliency and integrated gradients per input
equal Captum's tuple-input results on the torch network (≤ 1e-6); an
``(apply_fn, params)`` pair takes the tuple the same way; bad tuples raise a
clear error naming ``inputs``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
captum_attr = pytest.importorskip("captum.attr")

import attrib  # noqa: E402
from support.two_inputs import TARGETS, flax_twin, torch_two_inputs, two_inputs  # noqa: E402


def _close(ours: tuple, theirs: tuple, what: str) -> None:
    assert isinstance(ours, tuple) and len(ours) == 2, what
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = b.detach().numpy()
        if b.ndim == 4:
            a = a.transpose(0, 3, 1, 2)  # channels last in jax
        assert a.shape == b.shape and np.any(b != 0), f"{what}[{i}]"
        assert float(np.abs(a - b).max()) <= 1e-6 * float(np.abs(b).max()), f"{what}[{i}]"


def test_saliency_and_integrated_gradients_per_input_equal_captum() -> None:
    net = torch_two_inputs()
    image, table = two_inputs()
    pair = (torch.from_numpy(image), torch.from_numpy(table))
    with jax.enable_x64(True):
        module, variables = flax_twin(net)
        x = (np.ascontiguousarray(image.transpose(0, 2, 3, 1)), table)
        maps = attrib.explain((module, variables), x, method=["saliency", "integrated_gradients"],
                              target=TARGETS, options={"integrated_gradients": {"steps": 8}})
        apply_fn = (lambda p, a, b: module.apply(p, a, b), variables)
        plain = attrib.explain(apply_fn, x, method="saliency", target=TARGETS)
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    _close(maps["saliency"].attribution,
           captum_attr.Saliency(net).attribute(pair, target=TARGETS, abs=False), "saliency")
    _close(maps["integrated_gradients"].attribution, captum_attr.IntegratedGradients(net).attribute(
        pair, target=TARGETS, n_steps=8, method="gausslegendre"), "integrated gradients")
    for a, b in zip(plain.attribution, maps["saliency"].attribution):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, message", [
    (lambda i, t: (i, t[:1]), r"inputs: expected arrays with the same batch size"),
    (lambda i, t: (i,), r"inputs: expected inputs this model accepts, one per argument"),
    (lambda i, t: (i, t, t), r"inputs: expected inputs this model accepts, one per argument"),
    (lambda i, t: (i, t.astype(np.int32)), r"inputs: expected a floating-point array"),
    (lambda i, t: (i, np.full_like(t, np.inf)), r"inputs: expected finite values"),
    (lambda i, t: (i, "table.csv"), r"inputs: expected a NumPy or JAX array"),
])
def test_bad_several_inputs_raise_clear_errors(make: object, message: str) -> None:
    module, variables = flax_twin(torch_two_inputs())
    image, table = two_inputs()
    x = make(image.transpose(0, 2, 3, 1).astype(np.float32), table.astype(np.float32))  # type: ignore[operator]
    with pytest.raises(attrib.AttribError, match=message):
        attrib.explain((module, variables), x, method="saliency")


def test_occlusion_refuses_several_inputs_in_jax() -> None:
    module, variables = flax_twin(torch_two_inputs())
    image, table = two_inputs()
    with pytest.raises(attrib.AttribError, match="inputs: expected one array for 'occlusion'"):
        attrib.explain((module, variables), (image.transpose(0, 2, 3, 1), table),
                       method="occlusion")
