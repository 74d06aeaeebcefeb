"""The CAM family on both backends: torchvision ResNet-18 and its Flax twin agree in float64.

The torch model (random weights, BatchNorm perturbed, ``.double()``) and
:func:`attrib_jax.from_torch` of it explain the same inputs (NCHW / NHWC);
every new CAM method's map must agree within 1e-10 relative per sample
(``jax.enable_x64`` scoped to the test). Float32 maps may legitimately
differ where a pre-activation rounds across 0, so parity is asserted in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
import attrib_jax  # noqa: E402

from .test_resnet_parity import _relative, _torch_resnet  # noqa: E402

TARGETS = [3, 9]  # classes whose maps are not all zero after the relu, for every method
#: (method, layer, options): gradient methods at layer4 and layer3; the perturbation methods
#: (N * C masked inputs, the costly part in float64) at layer1 (64 channels; at layer2's 128
#: they took 4 s more), on the first image, in one call each. Inputs 33x33: layer1 9x9,
#: layer3 3x3, layer4 2x2.
CASES = [(m, layer, {}) for m in ("gradcam_pp", "xgradcam", "layercam", "hirescam", "eigencam")
         for layer in ("layer4", "layer3")]
CASES += [("scorecam", "layer1", {"batch_size": 64}), ("ablationcam", "layer1", {"batch_size": 64}),
          ("gradcam", ["layer3", "layer4"], {}), ("gradcam", None, {})]


def test_float64_parity_of_the_cam_family() -> None:
    with jax.enable_x64(True):
        torch_model = _torch_resnet("resnet18", torch.float64)
        module, variables = attrib_jax.from_torch(torch_model)
        jax_model = attrib.wrap((module, variables), backend="jax", train=False)
        images = np.random.default_rng(2).normal(size=(2, 3, 33, 33))
        worst: dict[str, float] = {}
        for method, layer, options in CASES:
            n = 1 if options else 2
            x, targets = images[:n], TARGETS[:n]
            x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            ours = attrib.explain(jax_model, x_nhwc, method=method, layer=layer, target=targets,
                                  **options)
            theirs = attrib.explain(torch_model, torch.from_numpy(x), method=method, layer=layer,
                                    target=targets, **options)
            assert ours.attribution.dtype == np.float64
            assert ours.layers == theirs.layers  # the same default layer in both backends
            norms = np.linalg.norm(theirs.attribution.reshape(n, -1), axis=1)
            assert norms.min() > 0, f"{method}: an all-zero map makes a meaningless test"
            key = f"{method}@{theirs.layer}"
            worst[key] = float(_relative(ours.attribution, theirs.attribution).max())
            if method in ("scorecam", "ablationcam"):
                assert ours.stats["forward_passes"] == theirs.stats["forward_passes"] == 2
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    print(f"\nresnet18 float64 CAM parity, worst relative error per map: {worst}")
    bad = {key: value for key, value in worst.items() if not value < 1e-10}
    assert not bad, f"relative error above 1e-10: {bad}"
