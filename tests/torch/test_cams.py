"""The CAM family against pytorch-grad-cam 1.5.7 on torchvision models (weights=None).

pytorch-grad-cam returns each map min-max normalised per image (after the
relu and the resize); attrib returns the raw map, so the comparison
normalises attrib's map the same way and asks for agreement within 1e-4 of
the [0, 1] range. Batches of 2 with different targets. The gradient methods
run in float64; Score-CAM and Ablation-CAM (N * C model calls each) in
float32, where torch's CPU convolutions are about ten times faster, to keep
the test cheap (pytorch-grad-cam keeps their scores in float32 anyway); on
VGG-16 they run at ``features.8`` (128 channels, 16x16), not at the gradient
CAMs' ``features.29`` (512 channels: 512 masked calls per image, method and
side took 13 s on one image). Inputs are small: ResNet-18 at 33x33 (layer4
2x2, layer3 3x3), VGG-16 at 32x32 (features.29 2x2).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

import attrib
from support.batchnorm import perturb_batchnorm

from .conftest import layer_output

torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

TARGETS = [3, 8]
#: per architecture: different classes whose maps are not all zero for every method (a random
#: network's Grad-CAM is often zero after the relu, which would make the comparison empty)
ARCH_TARGETS = {"resnet18": [6, 9], "vgg16": [0, 8]}
#: attrib name -> pytorch-grad-cam class
PGC = {
    "gradcam": pgc.GradCAM,
    "gradcam_pp": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM,
    "hirescam": pgc.HiResCAM,
    "scorecam": pgc.ScoreCAM,
    "ablationcam": pgc.AblationCAM,
}


def _minmax(maps: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation to [0, 1].

    pytorch-grad-cam normalises twice (at the layer's resolution, then after
    combining layers), each time dividing by ``1e-7 + max``: the second time
    the maximum is about 1, so its result is the exact min-max up to ~1e-7
    whatever the raw map's scale. Dividing the raw map by ``1e-7 + max``
    instead would be off by 1e-7 / max (1.6e-4 for a map whose maximum is 6e-4).
    """
    low = maps.min(axis=(1, 2), keepdims=True)
    shifted = maps - low
    high = shifted.max(axis=(1, 2), keepdims=True)
    return shifted / np.where(high > 0, high, 1.0)


def _theirs(cls: Any, model: torch.nn.Module, layers: list[torch.nn.Module],
            x: torch.Tensor, targets: list[int] = TARGETS, **options: Any) -> np.ndarray:
    cam = cls(model=model, target_layers=layers)
    for key, value in options.items():
        setattr(cam, key, value)
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
    finally:
        cam.activations_and_grads.release()


def _models() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    resnet = perturb_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10))
    vgg = torchvision.models.vgg16(weights=None, num_classes=10).eval()
    generator = torch.Generator().manual_seed(0)
    xr = torch.randn(2, 3, 33, 33, generator=generator, dtype=torch.float64)
    xv = torch.randn(2, 3, 32, 32, generator=generator, dtype=torch.float64)
    resnet64, vgg64 = copy.deepcopy(resnet).double(), copy.deepcopy(vgg).double()
    for model in (resnet64, vgg64):
        # pytorch-grad-cam calls loss.backward(): only the first convolution's weights need a
        # gradient for the graph to exist, sparing it VGG's 120M float64 parameter gradients
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        for parameter in model.parameters():
            parameter.requires_grad_(parameter is first.weight)
    return {
        "resnet18": (resnet64, xr),
        "vgg16": (vgg64, xv),
        "resnet18/float32": (resnet, xr.float()),
        "vgg16/float32": (vgg, xv.float()),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    return _models()


CASES = [("resnet18", "layer4"), ("resnet18", "layer3"), ("vgg16", "features.29")]
#: the layer of Score-CAM and Ablation-CAM (N * C masked model calls per side) where it is not
#: the case's layer: VGG-16's 128-channel relu after its second block
MASKED_LAYER = {"vgg16": "features.8"}


@pytest.mark.parametrize(("arch", "layer"), CASES)
def test_equals_pytorch_grad_cam(models: Any, arch: str, layer: str) -> None:
    worst = {}
    for method, cls in PGC.items():
        perturbation = method in ("scorecam", "ablationcam")
        model, x = models[arch + "/float32" if perturbation else arch]
        at = MASKED_LAYER.get(arch, layer) if perturbation else layer
        options = {"batch_size": 128} if perturbation else {}
        targets = ARCH_TARGETS[arch]
        ours = attrib.explain(model, x, method=method, layer=at, target=targets, **options)
        theirs = _theirs(cls, model, [model.get_submodule(at)], x, targets, **options)
        assert ours.attribution.shape == theirs.shape == (2, *x.shape[2:])
        assert (ours.attribution.max(axis=(1, 2)) > 0).all(), f"{method}: an all-zero map"
        difference = float(np.abs(_minmax(ours.attribution) - theirs).max())
        worst[method if at == layer else f"{method}@{at}"] = difference
        np.testing.assert_array_equal(ours.targets, targets)
    print(f"\n{arch}@{layer} largest difference after min-max normalisation: {worst}")
    assert max(worst.values()) < 1e-4, worst


def test_several_layers_one_gradient_pass(models: Any) -> None:
    model, x = models["resnet18"]
    layers = ["layer3", "layer4"]
    ours = attrib.explain(model, x, method="gradcam", layer=layers, target=TARGETS,
                          combine="minmax_mean")
    assert ours.stats["backward_passes"] == 1 and ours.layers == tuple(layers)
    assert ours.layer == "layer3+layer4"
    theirs = _theirs(pgc.GradCAM, model, [model.get_submodule(n) for n in layers], x)
    assert np.abs(_minmax(ours.attribution) - theirs).max() < 1e-4
    # each part is the single-layer map, and the default combination their raw mean
    singles = [attrib.explain(model, x, method="gradcam", layer=n, target=TARGETS).attribution
               for n in layers]
    for name, single in zip(layers, singles):
        np.testing.assert_allclose(ours.parts[name], single, rtol=1e-12)
    raw = attrib.explain(model, x, method="gradcam", layer=layers, target=TARGETS)
    np.testing.assert_allclose(raw.attribution, (singles[0] + singles[1]) / 2, rtol=1e-12)


@pytest.mark.parametrize(("arch", "layer"), CASES)
def test_eigencam_is_the_sign_fixed_principal_component(models: Any, arch: str, layer: str) -> None:
    model, x = models[arch]
    ours = attrib.explain(model, x, method="eigencam", layer=layer)
    assert ours.stats["backward_passes"] == 0
    acts = layer_output(model, layer, x)
    n, c, h, w = acts.shape
    # the projection on the covariance's top eigenvector (eigh, not an SVD), sign fixed
    expected = []
    for sample in acts:
        positions = sample.reshape(c, h * w).T
        centred = positions - positions.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        projection = centred @ vectors[:, -1]
        total = sample.sum(axis=0).ravel()
        if np.dot(projection, total - total.mean()) < 0:
            projection = -projection
        expected.append(projection.reshape(h, w))
    expected = np.array(expected)
    np.testing.assert_allclose(ours.layer_attribution, np.maximum(expected, 0),
                               atol=1e-9 * np.abs(expected).max())
    # pytorch-grad-cam's projection is the same up to its arbitrary sign
    theirs = get_2d_projection(acts)
    np.testing.assert_allclose(np.abs(theirs), np.abs(expected), rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())
    # and its map equals ours wherever its sign happens to agree
    their_map = _theirs(pgc.EigenCAM, model, [model.get_submodule(layer)], x)
    for i in range(n):
        if np.dot(theirs[i].ravel(), expected[i].ravel()) > 0:
            assert np.abs(_minmax(ours.attribution[i:i + 1])[0] - their_map[i]).max() < 1e-4


class _Counter:
    """Counts the model's forward calls and the samples they carried (a forward pre-hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[int] = []
        self.handle = model.register_forward_pre_hook(
            lambda m, args: self.calls.append(int(args[0].shape[0])))


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
@pytest.mark.parametrize("batch_size", [50, 256])
def test_model_calls_are_batched(models: Any, method: str, batch_size: int) -> None:
    model, x = models["resnet18/float32"]
    layer, channels = "layer3", 256
    counter = _Counter(model)
    try:
        e = attrib.explain(model, x, method=method, layer=layer, batch_size=batch_size,
                           target=TARGETS)
    finally:
        counter.handle.remove()
    chunks = math.ceil(len(x) * channels / batch_size)
    assert e.stats["masked_batches"] == chunks
    assert e.stats["forward_passes"] == chunks + 1 == len(counter.calls)
    assert e.stats["backward_passes"] == 0
    if method == "scorecam":
        assert max(counter.calls) == batch_size and sum(counter.calls) == len(x) * channels + len(x)
        return
    # Ablation-CAM continues from the layer: a chunk of one image's copies needs that image once
    rows = [len(x)]
    for start in range(0, len(x) * channels, batch_size):
        images = np.arange(start, min(start + batch_size, len(x) * channels)) // channels
        rows.append(1 if images[0] == images[-1] else len(images))
    assert counter.calls == rows and e.stats["ablation_path"] == "substituted"


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, padding=1),
                                            torch.nn.ReLU())
        self.head = torch.nn.Linear(6 * 5 * 5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("upsample", ["align_corners", "half_pixel"])
def test_scorecam_both_upsampling_modes_by_hand(upsample: str) -> None:
    torch.manual_seed(0)
    model = _TinyNet().double().eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = attrib.explain(model, x, method="scorecam", layer="features", target=[1, 2],
                          upsample=upsample, batch_size=5)
    acts = torch.from_numpy(layer_output(model, "features", x))
    masks = torch.nn.functional.interpolate(acts, size=(9, 9), mode="bilinear",
                                            align_corners=upsample == "align_corners")
    expected = []
    with torch.no_grad():
        for n, target in enumerate([1, 2]):
            scores = []
            for c in range(6):
                m = masks[n, c]
                m = (m - m.min()) / (m.max() - m.min() + 1e-8)
                scores.append(model(x[n:n + 1] * m)[0, target])
            weights = torch.softmax(torch.stack(scores), 0)
            expected.append(torch.relu((weights[:, None, None] * acts[n]).sum(0)).numpy())
    np.testing.assert_allclose(ours.layer_attribution, np.array(expected), rtol=1e-10)
    assert ours.stats["forward_passes"] == 1 + math.ceil(12 / 5)


def test_ablationcam_by_hand_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = _TinyNet().double().eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours = attrib.explain(model, x, method="ablationcam", layer="features", target=[0, 3])
    acts = torch.from_numpy(layer_output(model, "features", x))
    with torch.no_grad():
        original = model(x)[[0, 1], [0, 3]]
        expected = []
        for n, target in enumerate([0, 3]):
            weights = []
            for c in range(6):
                ablated = acts[n:n + 1].clone()
                ablated[:, c] = 0
                score = model.head(ablated.flatten(1))[0, target]
                weights.append((original[n] - score) / original[n])
            w = torch.stack(weights)
            expected.append(torch.relu((w[:, None, None] * acts[n]).sum(0)).numpy())
    np.testing.assert_allclose(ours.layer_attribution, np.array(expected), rtol=1e-10)
    assert not model.features._forward_hooks and not model._forward_hooks
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
