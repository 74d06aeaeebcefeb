"""The figures of docs/segmentation-and-detection.md (random-weight torchvision models, CPU, ~10 s).

Run: ``python scripts/targets_figures.py docs/figures``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from skimage import data, transform
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.segmentation import fcn_resnet50

import attrib
from attrib.plotting import detection_figure, save_figure, segmentation_figure
from attrib.targets import Boxes, Mask


def main(out: Path) -> None:
    torch.manual_seed(0)
    image = transform.resize(data.chelsea(), (96, 128), anti_aliasing=True)
    x = torch.as_tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)
    seg = fcn_resnet50(weights=None, weights_backbone=None, num_classes=5).eval()
    mask = np.zeros((96, 128))
    mask[20:70, 30:90] = 1.0
    cam = attrib.explain(seg, x, method="gradcam", layer="backbone.layer4", target=Mask(2, mask))
    save_figure(segmentation_figure(image, cam, mask, title="Grad-CAM, Mask(2, mask)"),
                out / "segmentation.png")
    det = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                            box_score_thresh=0.0, min_size=96, max_size=128)
    for module in det.backbone.modules():  # measured statistics, random weights
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    det.backbone.train()
    with torch.no_grad():
        det.backbone(det.transform(list(torch.rand(4, 3, 96, 128)))[0].tensors)
    det.eval()
    with torch.no_grad():
        found = det(x)[0]
    boxes, labels, scores = found["boxes"][:3].numpy(), found["labels"][:3], found["scores"][:3]
    maps = [attrib.explain(det, x, method="gradcam", layer="backbone.body.13",
                           target=Boxes(boxes[k:k + 1], [int(labels[k])])) for k in range(3)]
    names = [f"label {int(lab)}, score {float(s):.3f}" for lab, s in zip(labels, scores)]
    save_figure(detection_figure(image, boxes, maps, labels=names), out / "detection.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/figures"))
