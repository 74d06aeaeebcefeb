"""Several inputs, ``model(image, table)``: one map per input, equal to Captum's tuple-input results.

A float64 two-input network (an image branch and a table branch joined before
the head): saliency and integrated gradients per input equal Captum's
``Saliency`` / ``IntegratedGradients`` given the same tuple (≤ 1e-6); gradient ×
input, the guided rules and SmoothGrad give one map per input of that input's
shape; a layer method explains the layer and upsamples to the first input; the
methods that cannot explain several inputs, and inputs whose batch sizes differ,
raise a clear error naming ``inputs``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import attrib  # noqa: E402
from support.two_inputs import TARGETS, torch_two_inputs, two_inputs  # noqa: E402


@pytest.fixture(scope="module")
def net() -> object:
    return torch_two_inputs()


def _close(ours: tuple, theirs: tuple, what: str) -> None:
    assert isinstance(ours, tuple) and len(ours) == len(theirs) == 2, what
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = b.detach().numpy()
        assert a.shape == b.shape and np.any(b != 0), f"{what}[{i}]"
        assert float(np.abs(a - b).max()) <= 1e-6 * float(np.abs(b).max()), f"{what}[{i}]"


def test_saliency_per_input_equals_captum(net: object) -> None:
    image, table = two_inputs()
    ours = attrib.explain(net, (torch.from_numpy(image), table), method="saliency",
                          target=TARGETS)
    theirs = captum_attr.Saliency(net).attribute(
        (torch.from_numpy(image), torch.from_numpy(table)), target=TARGETS, abs=False)
    _close(ours.attribution, theirs, "saliency")
    assert isinstance(ours.inputs, tuple) and len(ours) == 2


def test_integrated_gradients_per_input_equal_captum(net: object) -> None:
    image, table = two_inputs()
    ours = attrib.explain(net, (image, table), method="integrated_gradients", target=TARGETS,
                          steps=8)
    theirs = captum_attr.IntegratedGradients(net).attribute(
        (torch.from_numpy(image), torch.from_numpy(table)), target=TARGETS, n_steps=8,
        method="gausslegendre")
    _close(ours.attribution, theirs, "integrated gradients")
    # completeness over both inputs together: sum of both maps = f(x) - f(baseline)
    assert np.abs(ours.stats["completeness_error"]).max() < 0.05 * np.abs(ours.stats["score"]).max()


def test_every_input_method_gives_one_map_per_input(net: object) -> None:
    image, table = two_inputs()
    maps = attrib.explain(net, (image, table), method=[
        "saliency", "gradient_x_input", "guided_backprop", "deconvnet", "smoothgrad"],
        target=TARGETS, options={"smoothgrad": {"n_samples": 3}})
    saliency = maps["saliency"].attribution
    for name, explanation in maps.items():
        assert [a.shape for a in explanation.attribution] == [image.shape, table.shape], name
    for a, x, g in zip(maps["gradient_x_input"].attribution, (image, table), saliency):
        np.testing.assert_array_equal(a, g * x)


def test_smoothgrad_gives_each_input_its_own_noise(net: object) -> None:
    image, table = two_inputs()
    smooth = attrib.explain(net, (image, table), method="smoothgrad", target=TARGETS,
                            n_samples=2, noise=0.2, seed=5)
    rng = np.random.default_rng(5)
    sigmas = [0.2 * (x.max(axis=tuple(range(1, x.ndim))) - x.min(axis=tuple(range(1, x.ndim))))
              for x in (image, table)]
    want = [np.zeros_like(image), np.zeros_like(table)]
    for _ in range(2):
        noisy = tuple(x + rng.standard_normal(x.shape) * s.reshape((-1,) + (1,) * (x.ndim - 1))
                      for x, s in zip((image, table), sigmas))
        for w, m in zip(want, attrib.explain(net, noisy, method="saliency",
                                             target=TARGETS).attribution):
            w += m / 2
    for a, w in zip(smooth.attribution, want):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-15)


def test_a_layer_method_upsamples_to_the_first_input(net: object) -> None:
    image, table = two_inputs()
    cam = attrib.explain(net, (image, table), method="gradcam", layer="conv", target=TARGETS)
    one = attrib.explain(net.image_only(table), image, method="gradcam", layer="conv",
                         target=TARGETS)
    assert cam.attribution.shape == (2, *image.shape[2:])
    np.testing.assert_allclose(cam.attribution, one.attribution, rtol=1e-12)


@pytest.mark.parametrize("method", ["occlusion", "scorecam", "ablationcam", "guided_gradcam", "lrp"])
def test_methods_without_several_inputs_say_so(net: object, method: str) -> None:
    image, table = two_inputs()
    options = {"layer": "conv"} if "cam" in method else {}
    with pytest.raises(attrib.AttribError, match=rf"inputs: expected one array for '{method}'"):
        attrib.explain(net, (image, table), method=method, **options)


@pytest.mark.parametrize("inputs, message", [
    (lambda i, t: (i, t[:1]), r"inputs: expected arrays with the same batch size"),
    (lambda i, t: (i,), r"inputs: expected as many inputs as the model's forward\(\) takes"),
    (lambda i, t: (i, t, t), r"inputs: expected as many inputs as the model's forward\(\) takes"),
    (lambda i, t: (), r"inputs: expected a non-empty tuple"),
    (lambda i, t: (i, t.astype(np.int64)), r"inputs: expected a floating-point batch"),
    (lambda i, t: (i, np.full_like(t, np.nan)), r"inputs: expected finite values"),
])
def test_bad_several_inputs_raise_clear_errors(net: object, inputs: object, message: str) -> None:
    image, table = two_inputs()
    with pytest.raises(attrib.AttribError, match=message):
        attrib.explain(net, inputs(image, table), method="saliency")  # type: ignore[operator]


def test_several_methods_refuse_several_inputs_before_any_pass(net: object) -> None:
    image, table = two_inputs()
    with pytest.raises(attrib.AttribError, match="inputs: expected one array for 'occlusion'"):
        attrib.explain(net, (image, table), method=["saliency", "occlusion"])
