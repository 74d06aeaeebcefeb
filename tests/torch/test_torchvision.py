"""Every method on real torchvision architectures (weights=None), with the model's state checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attrib

from .conftest import assert_unchanged, snapshot

torchvision = pytest.importorskip("torchvision")

TARGETS = [7, 420]
# (architecture, Grad-CAM layer, backward passes of guided Grad-CAM at that layer)
ARCHITECTURES = {
    "resnet18": ("layer4", 1),
    "resnet50": ("layer4", 1),
    "vgg16": ("features.29", 2),
    "densenet121": ("features", 2),  # ends in a functional F.relu after `features`
    "mobilenet_v2": ("features.18", 1),  # ReLU6 inside features.18, then pool + classifier
}
INPUT_METHODS = ["saliency", "gradient_x_input", "deconvnet", "guided_backprop"]
LAYER_METHODS = ["gradcam", "guided_gradcam"]


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, dict[str, object]]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, request.param)(weights=None).eval()
    return request.param, model, snapshot(model)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_every_method(arch: tuple[str, torch.nn.Module, dict[str, object]],
                      images: torch.Tensor) -> None:
    name, model, before = arch
    layer, passes = ARCHITECTURES[name]
    maps = {}
    for method in INPUT_METHODS + LAYER_METHODS:
        kwargs = {"layer": layer} if method in LAYER_METHODS else {}
        e = attrib.explain(model, images, method=method, target=TARGETS, **kwargs)
        assert_unchanged(model, before)
        np.testing.assert_array_equal(e.targets, TARGETS)
        assert np.isfinite(e.attribution).all()
        expected_shape = (2, 64, 64) if method == "gradcam" else (2, 3, 64, 64)
        assert e.attribution.shape == expected_shape, method
        maps[method] = e
    assert maps["guided_gradcam"].stats["backward_passes"] == passes
    assert maps["guided_backprop"].stats["rectifiers"] > 0
    vanilla = maps["saliency"].attribution
    for method in ("guided_backprop", "deconvnet"):
        difference = np.abs(maps[method].attribution - vanilla).max()
        assert difference > 1e-2 * np.abs(vanilla).max(), method
    # guided Grad-CAM is made of the exact Grad-CAM and guided backprop maps
    gg = maps["guided_gradcam"]
    np.testing.assert_allclose(gg.parts["gradcam"], maps["gradcam"].attribution, rtol=1e-5,
                               atol=1e-6 * np.abs(maps["gradcam"].attribution).max())
    np.testing.assert_array_equal(gg.parts["guided_backprop"], maps["guided_backprop"].attribution)
    assert maps["gradcam"].attribution.max() > 0


def test_calls_that_raise_leave_the_model_as_found(
    arch: tuple[str, torch.nn.Module, dict[str, object]], images: torch.Tensor
) -> None:
    name, model, before = arch
    layer, _ = ARCHITECTURES[name]
    reused = next(n for n, m in model.named_modules()
                  if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6)) and _calls(model, n, images) > 1) \
        if name in ("resnet18", "resnet50") else None
    attempts = [
        dict(method="guided_backprop", target=[0, 1000]),  # after the forward pass
        dict(method="guided_gradcam", target=[0, 1000], layer=layer),
        dict(method="gradcam", layer=layer + "x"),
    ]
    if reused is not None:
        attempts.append(dict(method="guided_gradcam", layer=reused))  # raises after the forward
    for kwargs in attempts:
        with pytest.raises(attrib.AttribError):
            attrib.explain(model, images, **kwargs)
        assert_unchanged(model, before)
    with pytest.raises(attrib.AttribError, match="a batch this model accepts"):
        attrib.explain(model, images[:, :1], method="guided_backprop")  # fails mid-forward
    assert_unchanged(model, before)


def test_resnet_layer3_needs_two_passes(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    e = attrib.explain(model, images, method="guided_gradcam", target=TARGETS, layer="layer3")
    assert e.stats["backward_passes"] == 2
    cam = attrib.explain(model, images, method="gradcam", target=TARGETS, layer="layer3")
    np.testing.assert_allclose(e.parts["gradcam"], cam.attribution, rtol=1e-5,
                               atol=1e-6 * np.abs(cam.attribution).max())


def _calls(model: torch.nn.Module, name: str, images: torch.Tensor) -> int:
    count = []
    handle = model.get_submodule(name).register_forward_hook(lambda *a: count.append(1))
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        handle.remove()
    return len(count)
