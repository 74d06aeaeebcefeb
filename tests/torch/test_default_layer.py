"""``layer=None`` on real architectures, transformer token layouts, and non-tensor model outputs."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import attrib

from .conftest import assert_unchanged, snapshot

torchvision = pytest.importorskip("torchvision")

#: architecture -> the default layer (the last spatial layer that is not pooling)
DEFAULTS = {
    "resnet18": "layer4",
    "vgg11": "features.19",        # the last ReLU inside `features`: features.20 and avgpool pool
    "densenet121": "features",     # ends in norm5 (a functional relu and pooling follow)
    "mobilenet_v3_small": "features",
    "efficientnet_b0": "features",
    "convnext_tiny": "features",
    "regnet_y_400mf": "trunk_output",
    "squeezenet1_0": "classifier.2",  # its classifier is a 1x1 conv + ReLU before the pooling
    "alexnet": "features.11",
    "googlenet": "inception5b",
}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_default_layer_on_ten_architectures(name: str) -> None:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs).eval()
    before = snapshot(model)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    e = attrib.explain(model, x, method="gradcam", target=3)
    assert_unchanged(model, before)  # the probe's hooks are gone
    assert e.layer == DEFAULTS[name] and e.layers == (DEFAULTS[name],)
    assert e.stats["default_layer"] is True and e.attribution.shape == (1, 64, 64)
    explicit = attrib.explain(model, x, method="gradcam", target=3, layer=DEFAULTS[name])
    np.testing.assert_array_equal(e.attribution, explicit.attribution)
    assert explicit.stats["default_layer"] is False


def test_vgg16_default_is_inside_features() -> None:
    model = torchvision.models.vgg16(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    infos = {info.name: info for info in attrib.wrap(model).probe_layers(x)}
    # `features` passes features.30's pooled output on; avgpool only resamples it
    assert infos["features"].resamples and infos["avgpool"].resamples
    assert not infos["features.29"].resamples
    assert attrib.explain(model, x, method="layercam", layer="auto").layer == "features.29"


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_transformers_gradcam_with_the_default_layer(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    if name == "vit_b_16":  # torchvision zero-initialises the ViT head: every gradient would be 0
        nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    e = attrib.explain(model, x, method="gradcam", target=1)
    assert e.attribution.shape == (1, 224, 224) and e.attribution.max() > 0
    if name == "vit_b_16":
        # the head reads only the class token: the last block's input is the last layer whose
        # gradient reaches the patch tokens (pytorch-grad-cam's recommended layer)
        assert e.layer == "encoder.layers.encoder_layer_11.ln_1"
        assert e.layer_attribution.shape == (1, 14, 14)
    else:
        assert e.layer == "permute"  # the channels-first view of the last stage
        # the last stage's (N, H, W, C) output is read channels-last, automatically
        stage = attrib.explain(model, x, method="gradcam", target=1, layer="norm")
        assert stage.layer_attribution.shape == (1, 7, 7)
        np.testing.assert_allclose(stage.attribution, e.attribution, rtol=1e-5, atol=1e-8)


class TinyTokens(nn.Module):
    """Patches -> (N, extra + 16, 8) tokens -> a GELU block -> mean of the extra tokens -> logits."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.tokens = nn.Parameter(torch.randn(1, extra, 8))
        self.block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.tokens.expand(len(x), -1, -1), patches], dim=1)
        t = self.block(t)
        t = t + self.mix(t.mean(dim=1, keepdim=True))
        return self.head(t.mean(dim=1))


def test_tokens_need_reshape_when_ambiguous() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    two = TinyTokens(extra=2).eval()  # DeiT-like: class and distillation tokens
    with pytest.raises(attrib.AttribValueError, match=r"layer: .*18 tokens.*reshape=\(h, w\)"):
        attrib.explain(two, x, method="gradcam", layer="block")
    e = attrib.explain(two, x, method="gradcam", layer="block", reshape=(4, 4), target=0)
    assert e.layer_attribution.shape == (2, 4, 4)
    # the same map by hand: the last 16 tokens as a 4x4 grid
    captured = {}
    handle = two.block.register_forward_hook(lambda m, a, out: captured.update(out=out))
    try:
        out = two(x)
        grad = torch.autograd.grad(out[:, 0].sum(), captured["out"])[0]
    finally:
        handle.remove()
    acts = captured["out"][:, 2:].detach().reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    grads = grad[:, 2:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    expected = torch.relu((grads.mean((2, 3), keepdim=True) * acts).sum(1)).numpy()
    np.testing.assert_allclose(e.layer_attribution, expected, rtol=1e-5, atol=1e-7)
    # a callable reshape gives the same map
    by_callable = attrib.explain(
        two, x, method="gradcam", layer="block", target=0,
        reshape=lambda a: a[:, 2:].reshape(len(a), 4, 4, -1).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(by_callable.attribution, e.attribution, rtol=1e-6)
    # one class token is unambiguous: detected
    one = TinyTokens(extra=1).eval()
    assert attrib.explain(one, x, method="gradcam", layer="block").layer_attribution.shape == (2, 4, 4)


def test_guided_rule_on_a_gelu_model_keeps_warning() -> None:
    model = TinyTokens(extra=1).eval()
    with pytest.warns(attrib.AttribWarning, match="no rectifier"):
        attrib.explain(model, torch.randn(1, 3, 16, 16), method="guided_gradcam", layer="block")


# -- model outputs --------------------------------------------------------------------------
@dataclass
class ImageClassifierOutput(OrderedDict):  # type: ignore[type-arg]
    """Shaped like Hugging Face's ``ModelOutput``: an ordered mapping whose fields are attributes."""

    loss: Any = None
    logits: Any = None

    def __post_init__(self) -> None:
        for key in ("loss", "logits"):
            if getattr(self, key) is not None:
                self[key] = getattr(self, key)


class Returns(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        if self.kind == "hf":
            return ImageClassifierOutput(logits=logits)
        if self.kind == "tuple":
            return logits, logits * 0 + 1
        if self.kind == "dict":
            return {"logits": logits, "aux": logits.detach()}
        if self.kind == "scores":
            return {"scores": logits}
        if self.kind == "object":
            return type("Out", (), {"logits": logits})()
        return logits


@pytest.mark.parametrize("kind", ["hf", "tuple", "dict", "object"])
def test_outputs_that_hold_the_logits(kind: str) -> None:
    torch.manual_seed(0)
    model = Returns(kind).eval()
    plain = Returns("tensor").eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    for method in ("saliency", "gradcam", "ablationcam"):
        ours = attrib.explain(model, x, method=method, target=[1, 2])
        want = attrib.explain(plain, x, method=method, target=[1, 2])
        np.testing.assert_array_equal(ours.attribution, want.attribution)
        np.testing.assert_array_equal(ours.logits, want.logits)


def test_output_option_and_its_errors() -> None:
    torch.manual_seed(0)
    model = Returns("scores").eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(attrib.AttribValueError, match=r"output: .*keys \['scores'\].*output="):
        attrib.explain(model, x, method="saliency")
    by_key = attrib.explain(model, x, method="saliency", output="scores", target=1)
    by_call = attrib.explain(model, x, method="saliency", output=lambda o: o["scores"], target=1)
    np.testing.assert_array_equal(by_key.attribution, by_call.attribution)
    tuple_model = Returns("tuple").eval()
    # the second output is constant (logits * 0 + 1): a zero map, which warns (issue 19)
    with pytest.warns(attrib.AttribWarning, match="does not depend on the inputs"):
        second = attrib.explain(tuple_model, x, method="saliency", output=1, target=1)
    assert np.all(second.logits == 1) and np.all(second.attribution == 0)
    with pytest.raises(attrib.AttribValueError, match=r"output: .*'nope'"):
        attrib.explain(model, x, method="saliency", output="nope")
    with pytest.raises(attrib.AttribTypeError, match="output: expected None, a key"):
        attrib.wrap(model, output=2.5)
