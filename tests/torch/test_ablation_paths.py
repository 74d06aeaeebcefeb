"""Ablation-CAM's two primitives and two ablation values, on torch.

- ``Model.forward_substituted`` (the default path: the layer's output replaced
  by ablated copies of the captured activation, one input image per chunk)
  gives the maps of ``Model.forward_scaled`` (the layer re-run and its output
  multiplied by a 0/1 mask), in float64, also where the fast path must fall
  back (a model that cannot take M rows on one image, a layer that cannot
  run on an empty batch);
- ``ablation="pytorch-grad-cam"`` equals pytorch-grad-cam 1.5.7 where the
  paper's zeroing does not (``layer4.1.conv2``, whose output goes negative
  and reaches BatchNorm and the residual addition), and equals the zeroing
  after a ReLU;
- another thread running the model meanwhile is not affected by the hooks.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import attrib
from attrib import AttribError, Model
from attrib_torch._model import TorchModel
from support.batchnorm import perturb_batchnorm

from .conftest import assert_unchanged, snapshot

torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGETS = [6, 9]


class ScaledOnly(TorchModel):
    """A torch backend without ``forward_substituted``, as a third-party backend may be."""

    forward_substituted = Model.forward_substituted


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return perturb_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10))


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 33, 33, generator=torch.Generator().manual_seed(0))


def _minmax(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    high = (maps - low).max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.where(high > 0, high, 1.0)


def _theirs(model: nn.Module, layer: str, x: torch.Tensor) -> np.ndarray:
    cam = pgc.AblationCAM(model=model, target_layers=[model.get_submodule(layer)], batch_size=128)
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    finally:
        cam.activations_and_grads.release()


def test_substituted_and_scaled_paths_agree(resnet: nn.Module, x: torch.Tensor) -> None:
    model = copy.deepcopy(resnet).double()
    x64 = x.double()
    before = snapshot(model)
    fast = attrib.explain(model, x64, method="ablationcam", layer="layer3", target=TARGETS,
                          batch_size=100)
    slow = attrib.explain(ScaledOnly(model), x64, method="ablationcam", layer="layer3",
                          target=TARGETS, batch_size=100)
    assert fast.stats["ablation_path"] == "substituted"
    assert slow.stats["ablation_path"] == "scaled"
    assert fast.stats["forward_passes"] == slow.stats["forward_passes"] == 1 + 6
    assert fast.layer_attribution.max() > 0
    np.testing.assert_allclose(fast.layer_attribution, slow.layer_attribution, rtol=1e-10,
                               atol=1e-12 * float(np.abs(slow.layer_attribution).max()))
    assert_unchanged(model, before)


@pytest.mark.parametrize("layer", ["layer4", "layer4.1.conv2"])
def test_pytorch_grad_cam_ablation_value(resnet: nn.Module, x: torch.Tensor, layer: str) -> None:
    theirs = _theirs(resnet, layer, x)
    ours = {ablation: attrib.explain(resnet, x, method="ablationcam", layer=layer, target=TARGETS,
                                     batch_size=128, ablation=ablation)
            for ablation in ("zero", "pytorch-grad-cam")}
    assert ours["pytorch-grad-cam"].stats["ablation"] == "pytorch-grad-cam"
    as_theirs = np.abs(_minmax(ours["pytorch-grad-cam"].attribution) - theirs).max()
    assert as_theirs < 1e-4
    assert (ours["pytorch-grad-cam"].attribution.max(axis=(1, 2)) > 0).all()
    zeroed = np.abs(_minmax(ours["zero"].attribution) - theirs).max()
    if layer == "layer4":  # after a ReLU the minimum is 0: both values are 0
        np.testing.assert_array_equal(ours["zero"].attribution,
                                      ours["pytorch-grad-cam"].attribution)
    else:  # a convolution: zeroing keeps BatchNorm's shift and the residual, min - 1e7 not
        assert zeroed > 0.05, zeroed


class _Concat(nn.Module):
    """The layer's output meets an earlier tensor in a concatenation: one image cannot feed M rows."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(9 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = torch.tanh(self.stem(x))
        return self.head(torch.cat([stem, self.block(stem)], dim=1).flatten(1))


class _Normalise(nn.Module):
    """Divides each image by 1 + its mean: ``reshape(0, -1)`` fails on an empty batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (1.0 + x.reshape(x.shape[0], -1).mean(dim=1)[:, None, None, None])


class _EmptyRefused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), _Normalise())
        self.head = nn.Linear(5 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).flatten(1))


@pytest.mark.parametrize("net", [_Concat, _EmptyRefused])
def test_models_that_refuse_the_fast_path(net: type[nn.Module]) -> None:
    torch.manual_seed(1)
    model = net().double().eval()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    before = snapshot(model)
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: rows.append(int(args[0].shape[0])))
    try:
        fast = attrib.explain(model, x, method="ablationcam", layer="block", target=[0, 1, 2],
                              batch_size=4)
    finally:
        handle.remove()
    slow = attrib.explain(ScaledOnly(model), x, method="ablationcam", layer="block",
                          target=[0, 1, 2], batch_size=4)
    assert fast.stats["ablation_path"] == "substituted"
    np.testing.assert_allclose(fast.layer_attribution, slow.layer_attribution, rtol=1e-10,
                               atol=1e-14)
    assert np.abs(fast.layer_attribution).max() > 0
    assert_unchanged(model, before)
    # the first chunk (image 0) tried one image and was refused (the concatenation / the empty
    # batch); it and every later chunk then ran their rows in full, the layer included
    assert rows == [3, 1, 4, 4, 4, 3]


def test_ablation_option_errors(resnet: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(AttribError, match="ablation"):
        attrib.explain(resnet, x, method="ablationcam", layer="layer4", ablation="min")
    with pytest.raises(AttribError, match="forward_substituted"):
        attrib.explain(ScaledOnly(resnet), x, method="ablationcam", layer="layer4",
                       ablation="pytorch-grad-cam")
    with pytest.raises(AttribError, match="activation"):
        TorchModel(resnet).forward_substituted(x[:1], "layer4", np.zeros((4, 3, 1, 1), np.float32))
    with pytest.raises(AttribError, match="inputs"):
        TorchModel(resnet).forward_substituted(x, "layer4", np.zeros((4, 512, 2, 2), np.float32))


@pytest.mark.parametrize("adapter", [TorchModel, ScaledOnly])
def test_other_threads_are_not_affected(resnet: nn.Module, x: torch.Tensor,
                                        adapter: type[TorchModel]) -> None:
    with torch.no_grad():
        expected = resnet(x)
    start = threading.Barrier(2)
    done = threading.Event()
    seen: list[Any] = []

    def ablate() -> None:
        start.wait()
        try:
            attrib.explain(adapter(resnet), x, method="ablationcam", layer="layer3",
                           target=TARGETS, batch_size=16)
        finally:
            done.set()

    def forward() -> None:
        start.wait()
        with torch.no_grad():
            while not done.is_set():
                seen.append(torch.equal(resnet(x), expected))

    threads = [threading.Thread(target=ablate), threading.Thread(target=forward)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) >= 3 and all(seen), seen
