"""attrib.targets.Boxes on torchvision's Faster R-CNN and on dense (boxes, logits) outputs.

Grad-CAM with ``Boxes`` and Eigen-CAM equal pytorch-grad-cam's (``FasterRCNNBoxScoreTarget``)
on the model's own boxes after min-max (Eigen-CAM up to the SVD's sign, see
``_assert_eigencam_equals_one_sign``); the model is left as found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
from torchvision.ops import box_iou

import attrib
from attrib.targets import Boxes
from support.detection import DenseDetector

from .conftest import assert_unchanged, layer_output, snapshot
from .test_targets import _minmax, reestimate_batchnorm

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget  # noqa: E402

LAYERS = ("backbone.body.13", "backbone.body.16")  # tensor-valued (model.backbone is a dict)


@pytest.fixture(scope="module")
def detector() -> tuple[nn.Module, torch.Tensor, list[dict[str, Any]]]:
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                              box_score_thresh=0.0, min_size=96, max_size=96)
    model = model.double()  # float64: Eigen-CAM's SVD signs agree with pytorch-grad-cam's
    images = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    reestimate_batchnorm(model.backbone, model.transform(list(images))[0].tensors)
    model.eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        detections = model(x)
    return model, x, detections


def _targets(detections: list[dict[str, Any]], k: int = 3) -> tuple[list[Any], list[Any]]:
    boxes = [d["boxes"][:k].numpy() for d in detections]
    labels = [d["labels"][:k].tolist() for d in detections]
    return boxes, labels


class _OtherSignEigenCAM(pgc.EigenCAM):
    """pytorch-grad-cam's Eigen-CAM with its SVD's other sign: ``-projection``, then its own
    ReLU, resize and min-max."""

    def get_cam_image(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return -super().get_cam_image(*args, **kwargs)


def test_boxes_gradcam_and_eigencam_equal_pytorch_grad_cam(detector: Any) -> None:
    model, x, detections = detector
    scores = detections[0]["scores"]
    assert len(torch.unique(scores)) > 10, "BatchNorm re-estimation gives distinct box scores"
    boxes, labels = _targets(detections)
    target = Boxes(boxes, labels)
    for layer in LAYERS:
        module = model.get_submodule(layer)
        before = snapshot(model)
        ours = attrib.explain(model, x, method="gradcam", layer=layer, target=target)
        eigen = attrib.explain(model, x, method="eigencam", layer=layer, target=target)
        assert_unchanged(model, before)
        theirs = {}
        for name, cls in (("gradcam", pgc.GradCAM), ("eigencam", pgc.EigenCAM),
                          ("eigencam_other_sign", _OtherSignEigenCAM)):
            cam = cls(model=model, target_layers=[module])
            try:
                theirs[name] = cam(input_tensor=x, targets=[
                    FasterRCNNBoxScoreTarget(labels=labels[i], bounding_boxes=boxes[i])
                    for i in range(2)])
            finally:
                cam.activations_and_grads.release()
        for name, mine in (("gradcam", ours), ("eigencam", eigen)):
            assert mine.attribution.shape == (2, 96, 96)
            assert (mine.attribution.max(axis=(1, 2)) > 0).all(), (name, layer)
        difference = np.abs(_minmax(ours.attribution) - theirs["gradcam"]).max()
        assert difference <= 1e-5, ("gradcam", layer, difference)
        _assert_eigencam_equals_one_sign(model, layer, x, eigen.attribution, theirs)
        # the explained score: each reference box's IoU (1: the model's own box) plus its score
        np.testing.assert_allclose(ours.logits[:, 0],
                                   [float(3 + d["scores"][:3].sum()) for d in detections],
                                   rtol=1e-6)
    assert not model.training


def _assert_eigencam_equals_one_sign(model: nn.Module, layer: str, x: torch.Tensor,
                                     mine: np.ndarray, theirs: dict[str, np.ndarray]) -> None:
    """Eigen-CAM against pytorch-grad-cam, sign-invariantly but still able to fail.

    The first singular vector's sign is arbitrary. pytorch-grad-cam keeps the sign LAPACK
    returns (at body.16, 3 x 3 positions, it is the opposite of attrib's; at body.13 the
    same); attrib fixes it so that the projection correlates positively with the activation
    summed over channels (attrib.methods.eigencam). So each image's min-maxed map must equal
    pytorch-grad-cam's full pipeline (ReLU, resize, min-max) run with one of the two signs, the
    two candidates must differ (else the check says nothing), and the one matched must be the
    sign that the documented rule picks on pytorch-grad-cam's own projection.
    """
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    activation = layer_output(model, layer, x)
    projection = get_2d_projection(activation).astype(np.float64)        # LAPACK's sign
    total = activation.sum(axis=1)
    total = total - total.mean(axis=(1, 2), keepdims=True)
    rule_keeps_lapack = (projection * total).sum(axis=(1, 2)) >= 0
    ours = _minmax(mine)
    for i in range(len(ours)):
        same = np.abs(ours[i] - theirs["eigencam"][i]).max()
        other = np.abs(ours[i] - theirs["eigencam_other_sign"][i]).max()
        assert max(same, other) > 0.1, (layer, i, "the two signs give the same map")
        matched = same if rule_keeps_lapack[i] else other
        assert matched <= 1e-5, (layer, i, bool(rule_keeps_lapack[i]), same, other)


def test_boxes_score_matches_by_label_and_threshold() -> None:
    """Dense (boxes, logits) outputs, scored by hand in NumPy through the same code path."""
    predicted = np.array([[[0., 0, 10, 10], [0, 0, 9, 10], [20, 20, 30, 30]]])
    logits = np.array([[[0.1, 2.0, 0.0], [3.0, 0.5, 0.2], [0.0, 0.1, 4.0]]])
    target = Boxes(np.array([[0., 0, 10, 10], [21, 21, 30, 30], [50, 50, 60, 60]]), [1, 2, 2])
    target.check((predicted, logits), 1, "NCHW")
    score = target.score((predicted, logits), target.data(None, 1, "NCHW"), np, "NCHW")
    # box 0: label 1 -> prediction 0 (IoU 1, logit 2.0); the same-shaped prediction 1 has
    # label 0 and does not count; box 1: prediction 2 (IoU 81/100); box 2: no overlap
    iou = 81 / 100
    np.testing.assert_allclose(score, [1.0 + 2.0 + iou + 4.0])
    strict = Boxes(np.array([[21., 21, 30, 30]]), [2], iou=0.9)
    assert strict.score((predicted, logits), strict.data(None, 1, "NCHW"), np, "NCHW")[0] == 0


def test_dense_boxes_saliency_equals_autograd() -> None:
    model = DenseDetector().double().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        boxes, logits = model(x)
    reference = boxes[0, [1, 6]].numpy() + 0.25  # near the predictions, off their kinks
    labels = logits[0, [1, 6]].argmax(-1).tolist()
    target = Boxes(reference, labels, iou=0.3)
    ours = attrib.explain(model, x, method="saliency", target=target)
    leaf = x.clone().requires_grad_()
    b, lg = model(leaf)
    total = torch.zeros((), dtype=torch.float64)
    for n in range(2):  # by hand, with torchvision's box_iou
        for box, label in zip(torch.as_tensor(reference), labels):
            ious = box_iou(box[None], b[n])[0]
            same = lg[n].argmax(-1) == label
            best = int(torch.where(same, ious, torch.full_like(ious, -1.0)).argmax())
            if float(ious[best].detach()) > 0.3 and bool(same[best]):
                total = total + ious[best] + lg[n, best, label]
    total.backward()
    assert leaf.grad is not None and float(leaf.grad.abs().max()) > 0
    np.testing.assert_allclose(ours.attribution, leaf.grad.numpy(), rtol=0,
                               atol=1e-6 * float(leaf.grad.abs().max()))
    assert ours.logits[0, 0] > float(logits[0, [1, 6]].amax(-1).sum())  # both boxes matched
