"""A map that is zero everywhere warns once per call, naming the likely cause (issue 19).

torchvision's ``vit_b_16(weights=None)`` zero-initialises its classification head,
so its logits are constant and every gradient map of it is exactly zero. Models whose
score does depend on the inputs never warn: the suite runs with
``filterwarnings = error::attrib.AttribWarning``, so a false alarm on any of its
models (the demo model, torchvision ResNets, the tiny test nets) fails it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision

import attrib

LAYER = "encoder.layers.encoder_layer_11"


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vit_b_16(weights=None).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_zero_head_warns_for_the_inputs(vit: torch.nn.Module, image: torch.Tensor) -> None:
    assert not torch.any(vit.heads.head.weight)  # the premise: a zero-initialised head
    with pytest.warns(attrib.AttribWarning, match=r"map of saliency is zero everywhere.*"
                      r"does not depend on the inputs.*vit_b_16\(weights=None\)"):
        e = attrib.explain(vit, image, method="saliency")
    assert not np.any(e.attribution)


def test_zero_head_warns_for_the_layer(vit: torch.nn.Module, image: torch.Tensor) -> None:
    with pytest.warns(attrib.AttribWarning, match=rf"gradcam.*does not depend on layer '{LAYER}'"):
        attrib.explain(vit, image, method="gradcam", layer=LAYER)


def test_several_methods_warn_once(vit: torch.nn.Module, image: torch.Tensor) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = attrib.explain(vit, image, method=["saliency", "gradient_x_input", "gradcam",
                                                  "integrated_gradients"],
                              options={"gradcam": {"layer": LAYER},
                                       "integrated_gradients": {"steps": 2}})
    zero = [w for w in caught if issubclass(w.category, attrib.AttribWarning)]
    assert len(zero) == 1, [str(w.message) for w in zero]
    message = str(zero[0].message)
    assert "gradcam, gradient_x_input, integrated_gradients, saliency" in message
    assert f"the inputs or layer '{LAYER}'" in message
    assert all(not np.any(m.attribution) for m in maps.values())


def test_a_trained_head_does_not_warn(vit: torch.nn.Module, image: torch.Tensor) -> None:
    head = vit.heads.head
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(1))
    try:
        e = attrib.explain(vit, image, method="saliency")  # an AttribWarning would fail here
    finally:
        with torch.no_grad():
            head.weight.zero_()
    assert np.any(e.attribution)


def test_the_demo_model_and_a_resnet_do_not_warn() -> None:
    """Every seed method on the demo model (16 scenes) and a random-weight ResNet-18."""
    seed = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet", "gradcam",
            "guided_gradcam", "integrated_gradients"]
    data = attrib.demo_data(n=16)
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error", attrib.AttribWarning)
        attrib.explain(attrib.demo_model("torch"), x, method=seed,
                       options={"integrated_gradients": {"steps": 4}})
        torch.manual_seed(0)
        resnet = torchvision.models.resnet18(weights=None).eval()
        attrib.explain(resnet, torch.randn(2, 3, 64, 64), method=seed,
                       options={"integrated_gradients": {"steps": 2}}, layer="layer4")
