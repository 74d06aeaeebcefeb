"""Signals (N, C, L) and volumes (N, C, D, H, W): every method against Captum and pytorch-grad-cam.

A ``Conv1d`` and a ``Conv3d`` network in float64 (``tests/support/signal_nets.py``):
the gradient methods, integrated gradients and occlusion (same windows) equal
Captum's; Grad-CAM at a strided layer equals Captum's ``LayerGradCam`` upsampled
by ``LayerAttribution.interpolate`` (linear / trilinear), and on the volume
pytorch-grad-cam's 3-D Grad-CAM after its min-max; every other CAM gives a finite
map of the input's spatial shape at the default layer.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import attrib  # noqa: E402
from support.signal_nets import inputs, torch_net  # noqa: E402

TARGETS = [1, 3]
TOL = 1e-6


@pytest.fixture(scope="module", params=[1, 3], ids=["conv1d", "conv3d"])
def case(request: pytest.FixtureRequest) -> tuple[int, object, np.ndarray]:
    k = request.param
    return k, torch_net(k), inputs(k)


def _close(ours: np.ndarray, theirs: object, what: str, tol: float = TOL) -> None:
    theirs = np.asarray(theirs.detach().numpy() if hasattr(theirs, "detach") else theirs)
    assert ours.shape == theirs.shape, what
    scale = max(float(np.abs(theirs).max()), 1e-12)
    assert float(np.abs(ours - theirs).max()) <= tol * scale, what


def _minmax(maps: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    return (maps - low) / (maps.max(axis=axes, keepdims=True) - low)


@pytest.mark.parametrize("method, captum_cls", [
    ("saliency", "Saliency"), ("gradient_x_input", "InputXGradient"),
    ("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution"),
])
def test_gradient_methods_equal_captum(case: tuple, method: str, captum_cls: str) -> None:
    k, net, x = case
    ours = attrib.explain(net, x, method=method, target=TARGETS).attribution
    explainer = getattr(captum_attr, captum_cls)(net)
    extra = {"abs": False} if method == "saliency" else {}
    theirs = explainer.attribute(torch.from_numpy(x).requires_grad_(), target=TARGETS, **extra)
    assert np.any(ours != 0)
    _close(ours, theirs, f"{method} k={k}")


def test_integrated_gradients_equal_captum(case: tuple) -> None:
    k, net, x = case
    ours = attrib.explain(net, x, method="integrated_gradients", target=TARGETS, steps=8)
    theirs = captum_attr.IntegratedGradients(net).attribute(
        torch.from_numpy(x), target=TARGETS, n_steps=8, method="gausslegendre")
    _close(ours.attribution, theirs, f"integrated gradients k={k}")


def test_occlusion_equals_captum_with_the_same_windows(case: tuple) -> None:
    k, net, x = case
    window, stride = ((5,), (3,)) if k == 1 else ((2, 4, 3), (2, 2, 3))
    ours = attrib.explain(net, x, method="occlusion", target=TARGETS, window=window,
                          stride=stride).attribution
    theirs = captum_attr.Occlusion(net).attribute(
        torch.from_numpy(x), sliding_window_shapes=(x.shape[1], *window),
        strides=(x.shape[1], *stride), target=TARGETS, baselines=0.0)
    _close(ours, theirs, f"occlusion k={k}")


def test_gradcam_equals_captum_layergradcam_interpolated(case: tuple) -> None:
    k, net, x = case
    ours = attrib.explain(net, x, method="gradcam", layer="conv2", target=TARGETS)
    layer = captum_attr.LayerGradCam(net, net.conv2).attribute(
        torch.from_numpy(x), target=TARGETS, relu_attributions=True)
    assert tuple(ours.layer_attribution.shape) == tuple(layer.shape[:1] + layer.shape[2:])
    up = captum_attr.LayerAttribution.interpolate(
        layer, x.shape[2:], interpolate_mode="linear" if k == 1 else "trilinear")[:, 0]
    _close(ours.attribution, up, f"gradcam k={k}", tol=1e-12)
    _close(_minmax(ours.attribution), _minmax(up.detach().numpy()), f"gradcam min-max k={k}")


def test_gradcam_on_a_volume_equals_pytorch_grad_cam() -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net, x = torch_net(3), inputs(3)
    # conv1 keeps the volume's size: pytorch-grad-cam's scipy zoom (a cubic spline) is then the
    # identity, and both maps are the layer's own Grad-CAM
    ours = attrib.explain(net, x, method="gradcam", layer="conv1", target=TARGETS).attribution
    with pgc.GradCAM(model=net, target_layers=[net.conv1]) as cam:
        theirs = cam(input_tensor=torch.from_numpy(x),
                     targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(_minmax(ours), theirs, atol=1e-5)


CAMS = ["gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam", "ablationcam",
        "guided_gradcam", "gradcam"]


def test_every_cam_runs_at_the_default_layer(case: tuple) -> None:
    k, net, x = case
    maps = attrib.explain(net, x, method=CAMS, target=TARGETS)
    for method, explanation in maps.items():
        want = x.shape if method == "guided_gradcam" else (x.shape[0], *x.shape[2:])
        assert explanation.attribution.shape == want, method
        assert np.all(np.isfinite(explanation.attribution)), method
        assert explanation.layer == "relu2", method  # the last spatial layer that is no pooling
        assert np.any(explanation.attribution != 0), method


def test_smoothgrad_of_a_signal_averages_saliency_maps() -> None:
    net, x = torch_net(1), inputs(1)
    smooth = attrib.explain(net, x, method="smoothgrad", target=TARGETS, n_samples=4, noise=0.1,
                            seed=3)
    rng = np.random.default_rng(3)
    sigma = 0.1 * (x.max(axis=(1, 2)) - x.min(axis=(1, 2)))
    want = np.zeros_like(x)
    for _ in range(4):
        noisy = x + rng.standard_normal(x.shape) * sigma[:, None, None]
        want += attrib.explain(net, noisy, method="saliency", target=TARGETS).attribution / 4
    np.testing.assert_allclose(smooth.attribution, want, rtol=1e-12, atol=1e-14)
