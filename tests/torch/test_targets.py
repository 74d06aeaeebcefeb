"""attrib.targets on torch: segmentation (Mask), embeddings (Cosine) and regression (Weights).

Grad-CAM with ``Mask`` equals pytorch-grad-cam's ``SemanticSegmentationTarget`` on
torchvision's segmentation models; every score's input gradient equals autograd of the
same score written by hand; every method that takes a target takes these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import attrib
from attrib.targets import Cosine, Mask, Weights

from .conftest import assert_unchanged, snapshot

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402


def _minmax(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    shifted = maps - low
    high = shifted.max(axis=(1, 2), keepdims=True)
    return shifted / np.where(high > 0, high, 1.0)


class _Out(nn.Module):
    """pytorch-grad-cam's tutorial wrapper: the segmentation model's ``"out"`` tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


SEGMENTATION = {
    "fcn_resnet50": ("backbone.layer3", "backbone.layer4"),
    "deeplabv3_resnet50": ("backbone.layer3", "backbone.layer4"),
    "lraspp_mobilenet_v3_large": ("backbone.6", "backbone.16"),
}


def reestimate_batchnorm(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` with its BatchNorm running statistics measured on ``images``; weights kept.

    Random MobileNetV3 weights with BatchNorm's initial statistics shrink the
    activations block by block (deep-layer CAMs ~1e-10, below pytorch-grad-cam's
    1e-7 epsilon); statistics of real activations keep them O(1).
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the cumulative average of the batches seen
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.fixture(scope="module")
def segmentation() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    models = {}
    for name in SEGMENTATION:
        build = getattr(torchvision.models.segmentation, name)
        model = build(weights=None, weights_backbone=None, num_classes=5).double().eval()
        if "mobilenet" in name:
            reestimate_batchnorm(model, torch.rand(4, 3, 64, 64, dtype=torch.float64))
        # pytorch-grad-cam calls loss.backward(): one parameter needing a gradient keeps
        # the graph, without float64 gradients for every parameter
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        for parameter in model.parameters():
            parameter.requires_grad_(parameter is first.weight)
        models[name] = model
    return models


def _mask() -> np.ndarray:
    mask = np.zeros((64, 64))
    mask[12:40, 20:56] = 1.0
    return mask


@pytest.mark.parametrize("arch", list(SEGMENTATION))
def test_mask_gradcam_equals_pytorch_grad_cam(segmentation: Any, arch: str) -> None:
    model = segmentation[arch]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = _mask()
    wrapped = _Out(model)
    for layer in SEGMENTATION[arch]:
        before = snapshot(model)
        ours = attrib.explain(model, x, method="gradcam", layer=layer, target=Mask(2, mask))
        assert_unchanged(model, before)
        cam = pgc.GradCAM(model=wrapped, target_layers=[model.get_submodule(layer)])
        try:
            theirs = cam(input_tensor=x, targets=[SemanticSegmentationTarget(2, mask)] * 2)
        finally:
            cam.activations_and_grads.release()
        assert ours.attribution.shape == theirs.shape == (2, 64, 64)
        assert (ours.attribution.max(axis=(1, 2)) > 0).all(), f"{arch}@{layer}: an all-zero map"
        difference = np.abs(_minmax(ours.attribution) - theirs).max()
        print(arch, layer, difference)
        assert difference <= 1e-5, (arch, layer)
        np.testing.assert_array_equal(ours.targets, [2, 2])
    # saliency: autograd of the masked sum, written by hand
    saliency = attrib.explain(model, x, method="saliency", target=Mask(2, mask))
    leaf = x.clone().requires_grad_()
    (model(leaf)["out"][:, 2] * torch.as_tensor(mask)).sum().backward()
    assert leaf.grad is not None
    np.testing.assert_allclose(saliency.attribution, leaf.grad.numpy(), rtol=0, atol=1e-6 * float(
        leaf.grad.abs().max()))


def _conv_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(4, 3, 1)).double().eval()


def _embedding_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 16)).double().eval()


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _autograd(model: nn.Module, score: Any) -> np.ndarray:
    leaf = X.clone().requires_grad_()
    score(model(leaf)).sum().backward()
    assert leaf.grad is not None
    return leaf.grad.numpy()


def test_mask_reductions_and_objectives_equal_autograd() -> None:
    model = _conv_net()
    masks = np.random.default_rng(0).random((2, 16, 16)) > 0.5
    m = torch.as_tensor(masks, dtype=torch.float64)
    cases = [
        (Mask([0, 2], masks), "logit", lambda o: (o[[0, 1], [0, 2]] * m).sum((1, 2))),
        (Mask(1, masks, reduce="mean"), "logit",
         lambda o: (o[:, 1] * m).sum((1, 2)) / m.sum((1, 2))),
        (Mask(1), "log_softmax", lambda o: o.log_softmax(1)[:, 1].sum((1, 2))),
    ]
    for target, objective, score in cases:
        ours = attrib.explain(model, X, method="saliency", target=target, objective=objective)
        want = _autograd(model, score)
        np.testing.assert_allclose(ours.attribution, want, rtol=0, atol=1e-6 * np.abs(want).max())
        assert ours.stats  # a normal explanation


def test_cosine_and_weights_equal_autograd() -> None:
    model = _embedding_net()
    reference = np.random.default_rng(1).normal(size=16)
    ref = torch.as_tensor(reference)
    want = _autograd(model, lambda o: nn.functional.cosine_similarity(o, ref[None], dim=1))
    ours = attrib.explain(model, X, method="saliency", target=Cosine(reference))
    np.testing.assert_allclose(ours.attribution, want, rtol=0, atol=1e-6 * np.abs(want).max())
    per_sample = np.random.default_rng(2).normal(size=(2, 16))
    want = _autograd(model, lambda o: nn.functional.cosine_similarity(
        o, torch.as_tensor(per_sample), dim=1))
    ours = attrib.explain(model, X, method="saliency", target=Cosine(per_sample))
    np.testing.assert_allclose(ours.attribution, want, rtol=0, atol=1e-6 * np.abs(want).max())
    # regression: weights over a dense output of any shape, and class weights' (N, classes) case
    dense = _conv_net()
    weights = np.random.default_rng(3).normal(size=(3, 16, 16))
    want = _autograd(dense, lambda o: (o * torch.as_tensor(weights)).sum((1, 2, 3)))
    ours = attrib.explain(dense, X, method="saliency", target=Weights(weights))
    np.testing.assert_allclose(ours.attribution, want, rtol=0, atol=1e-6 * np.abs(want).max())
    class_weights = np.random.default_rng(4).normal(size=(2, 16))
    as_floats = attrib.explain(model, X, method="saliency", target=class_weights)
    as_object = attrib.explain(model, X, method="saliency", target=Weights(class_weights))
    np.testing.assert_array_equal(as_object.attribution, as_floats.attribution)
    np.testing.assert_array_equal(as_object.targets, as_floats.targets)


def test_cosine_gradcam_equals_pytorch_grad_cam_tutorial_target() -> None:
    """The similarity target of pytorch-grad-cam's embeddings tutorial, written here."""

    class SimilarityToConceptTarget:
        def __init__(self, features: torch.Tensor) -> None:
            self.features = features

        def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
            cos = torch.nn.CosineSimilarity(dim=0)
            return cos(model_output, self.features)

    model = _embedding_net()
    reference = np.random.default_rng(5).normal(size=16)
    ours = attrib.explain(model, X, method="gradcam", layer="2", target=Cosine(reference))
    cam = pgc.GradCAM(model=model, target_layers=[model[2]])
    try:
        theirs = cam(input_tensor=X, targets=[SimilarityToConceptTarget(torch.as_tensor(reference))]
                     * 2)
    finally:
        cam.activations_and_grads.release()
    assert (ours.attribution.max(axis=(1, 2)) > 0).all()
    assert np.abs(_minmax(ours.attribution) - theirs).max() <= 1e-5


@pytest.mark.parametrize("method", ["gradient_x_input", "guided_backprop", "deconvnet",
                                    "integrated_gradients", "smoothgrad", "occlusion", "gradcam",
                                    "gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam",
                                    "eigencam", "guided_gradcam"])
def test_every_method_takes_a_target(method: str) -> None:
    """The same score through every method: finite maps; the multi-pass ones by hand."""
    model = _conv_net()
    mask = np.zeros((16, 16))
    mask[4:10, 3:12] = 1.0
    target = Mask([0, 2], mask)
    layer = {"layer": "2"} if method not in ("gradient_x_input", "guided_backprop", "deconvnet",
                                             "integrated_gradients", "smoothgrad",
                                             "occlusion") else {}
    options = {"window": 4, "stride": 4} if method == "occlusion" else {}
    options |= {"steps": 8} if method == "integrated_gradients" else {}
    ours = attrib.explain(model, X, method=method, target=target, **layer, **options)
    assert np.isfinite(ours.attribution).all() and np.abs(ours.attribution).max() > 0
    np.testing.assert_array_equal(ours.targets, [0, 2])
    m = torch.as_tensor(mask)

    def score(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = model(inputs)
        return (out[[0, 1], [0, 2]] * m).sum((1, 2))

    if method == "occlusion":  # the drop of the masked score, by hand, at one window
        occluded = X.clone()
        occluded[:, :, 0:4, 0:4] = 0
        drop = (score(X) - score(occluded)).numpy()
        np.testing.assert_allclose(ours.attribution[:, 0, 0, 0], drop, rtol=1e-12)
    if method == "integrated_gradients":  # completeness against the score
        np.testing.assert_allclose(ours.stats["score"], score(X).numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.stats["baseline_score"], score(X * 0).numpy(), rtol=1e-12)
        total = ours.attribution.reshape(2, -1).sum(axis=1)
        np.testing.assert_allclose(ours.stats["completeness_error"],
                                   total - (score(X) - score(X * 0)).numpy(), atol=1e-9)


def test_several_methods_in_one_call_take_a_target() -> None:
    model = _conv_net()
    target = Mask(1)
    maps = attrib.explain(model, X, method=["saliency", "gradcam"], target=target,
                          options={"gradcam": {"layer": "2"}})
    alone = attrib.explain(model, X, method="gradcam", layer="2", target=target)
    np.testing.assert_array_equal(maps["gradcam"].attribution, alone.attribution)


def test_ablationcam_refuses_a_target_clearly() -> None:
    with pytest.raises(attrib.AttribError, match=r"^target: expected a class index.*Score-CAM"):
        attrib.explain(_conv_net(), X, method="ablationcam", layer="2", target=Mask(1))
