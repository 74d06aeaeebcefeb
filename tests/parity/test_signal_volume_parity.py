"""Signals and volumes on both backends: a Conv1d and a Conv3d network and their Flax twins.

In float64 (``jax.enable_x64`` scoped to the test) every method's map agrees
within 1e-10 relative per sample between torch (channels first, (N, C, L) /
(N, C, D, H, W)) and jax (channels last, (N, L, C) / (N, D, H, W, C)): the
gradient methods, integrated gradients, SmoothGrad (the same seeded noise in
both layouts), occlusion with 1-D / 3-D windows and the CAM family at ``conv2``
(the twin's default layer).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
from support.signal_nets import channels_last, flax_twin, inputs, torch_net  # noqa: E402

TARGETS = [1, 3]
INPUT_METHODS = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet",
                 "integrated_gradients", "smoothgrad", "occlusion"]
CAMS = ["gradcam", "gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam",
        "ablationcam", "guided_gradcam"]
OPTIONS = {"integrated_gradients": {"steps": 6}, "smoothgrad": {"n_samples": 3, "seed": 1},
           "occlusion": {"window": 3, "stride": 2}}


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(b)
    diff = np.linalg.norm((a - b).reshape(n, -1), axis=1)
    return diff / np.maximum(np.linalg.norm(b.reshape(n, -1), axis=1), 1e-300)


@pytest.mark.parametrize("k", [1, 3], ids=["conv1d", "conv3d"])
def test_float64_parity_on_signals_and_volumes(k: int) -> None:
    with jax.enable_x64(True):
        net = torch_net(k)
        twin = attrib.wrap(flax_twin(net), backend="jax")
        x = inputs(k)
        worst: dict[str, float] = {}
        methods = INPUT_METHODS + CAMS
        # jax: the CAMs' default layer (the twin's last spatial layer, conv2); torch: conv2
        # named (its default is the ReLU module after it, which the twin does not have)
        ours = attrib.explain(twin, channels_last(x), method=methods, target=TARGETS,
                              options=OPTIONS)
        theirs = attrib.explain(net, torch.from_numpy(x), method=methods, target=TARGETS,
                                options={**OPTIONS, **{m: {"layer": "conv2"} for m in CAMS}})
        for method in methods:
            a, b = ours[method].attribution, theirs[method].attribution
            if b.ndim == x.ndim:  # input-space maps: channels last in jax
                a = np.moveaxis(a, -1, 1)
            assert a.dtype == np.float64 and a.shape == b.shape, method
            assert np.any(b != 0), method  # (a relu may zero one sample's CAM)
            assert ours[method].layer == theirs[method].layer, method
            worst[method] = float(_relative(a, b).max())
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    bad = {key: value for key, value in worst.items() if not value < 1e-10}
    assert not bad, bad
