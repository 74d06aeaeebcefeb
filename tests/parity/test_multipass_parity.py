"""Integrated gradients, SmoothGrad, occlusion and GradientSHAP: torch and jax agree on the ResNet twins.

torchvision ``resnet18`` in float64 and its Flax twin (:func:`attrib_jax.from_torch`,
``jax.enable_x64`` scoped to the test) on the same small inputs (NCHW / NHWC):
per-sample relative error ``||a - b|| / ||b||`` below 1e-10 for IG, SmoothGrad, GradientSHAP (same
seed: the noise is drawn in NumPy, in NCHW order on both) and occlusion. The jax
chunks keep one shape, so each program compiles once per input shape
(:func:`attrib_jax.trace_count`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
import attrib_jax  # noqa: E402
from attrib_jax._model import clear_cache, trace_count  # noqa: E402

TARGETS = [5, 8]
#: batch 2, batch_size 4: 6 rows go in chunks of 3 (IG at 3 steps, SmoothGrad), 10 rows in
#: 4, 4 and 2 padded to 4 (IG at 5 steps), 18 occluded rows in 4, 4, 4, 4 and 2 padded
CASES: list[tuple[str, dict[str, Any]]] = [
    ("integrated_gradients", {"steps": 3, "batch_size": 4}),
    ("integrated_gradients", {"steps": 5, "batch_size": 4, "baseline": "uniform", "seed": 3,
                              "rule": "riemann_trapezoid"}),
    ("smoothgrad", {"n_samples": 3, "noise": 0.2, "seed": 11, "batch_size": 4}),
    ("smoothgrad", {"n_samples": 3, "noise": 0.2, "seed": 11, "batch_size": 4,
                    "kind": "variance"}),
    ("occlusion", {"window": 12, "stride": 10, "batch_size": 4}),
    # two baselines (NCHW here, NHWC for jax): forward at 4 rows, gradients at 3 as above
    ("gradient_shap", {"n_samples": 3, "stdevs": 0.2, "seed": 4, "batch_size": 4,
                       "baselines": np.random.default_rng(9).normal(size=(2, 3, 32, 32))}),
]


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def test_torch_and_jax_agree_in_float64_and_jax_compiles_once_per_shape() -> None:
    torch.manual_seed(0)
    torch_model = torchvision.models.resnet18(weights=None, num_classes=10).eval().double()
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    worst: dict[str, float] = {}
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(torch_model)  # float64 parameters under x64
        clear_cache()
        jax_model = attrib.wrap((module, variables), backend="jax", train=False)
        for round_ in range(2):
            before = trace_count()
            for method, options in CASES:
                jax_options = {k: (v.transpose(0, 2, 3, 1) if k == "baselines" else v)
                               for k, v in options.items()}
                ours = attrib.explain(jax_model, x_nhwc, method=method, target=TARGETS,
                                      **jax_options)
                if round_:
                    continue
                theirs = attrib.explain(torch_model, x, method=method, target=TARGETS, **options)
                expected = np.asarray(theirs.attribution).transpose(0, 2, 3, 1)
                assert ours.attribution.dtype == np.float64
                assert np.abs(expected).max() > 0
                key = f"{method}:{options.get('kind', options.get('baseline', ''))}"
                worst[key] = float(_relative(ours.attribution, expected).max())
                if method == "integrated_gradients":
                    np.testing.assert_allclose(ours.stats["completeness_error"],
                                               theirs.stats["completeness_error"], rtol=1e-8,
                                               atol=1e-10)
            traced = trace_count() - before
            # round 0: forward at N=2, forward at 4 rows (occlusion), gradient programs at 3
            # rows (shared by IG and SmoothGrad's saliency) and 4 rows; round 1: nothing new
            assert traced == (4 if round_ == 0 else 0), traced
    assert not jax.config.jax_enable_x64
    print("\nresnet18 float64 torch vs jax, worst relative error:", worst)
    bad = {k: v for k, v in worst.items() if not v < 1e-10}
    assert not bad, bad
