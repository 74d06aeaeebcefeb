"""The figure of docs/vision-transformers.md: attention maps of torchvision's ViT-B/16.

Run from the repository root: ``python scripts/vision_transformer_figure.py``.
Writes ``docs/figures/vision_transformers.png``: four scikit-image photographs,
attention rollout (mean fusion, discard 0.9) and generic attention of torchvision
``vit_b_16`` with **random weights** (no pretrained ViT weights ship offline), so the
maps show what the methods compute on this architecture (resolution, class-token
row, prefix token left out), not what a trained network looks at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from skimage import data

import attrib
from attrib.plotting import grid_figure, save_figure
from attrib.preprocess import denormalize, prepare

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "vision_transformers.png"


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16().eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket()]
    batch = prepare(photos, "NCHW", 224)
    images = denormalize(batch, "NCHW")
    x = torch.from_numpy(np.ascontiguousarray(batch)).float()
    maps = attrib.explain(model, x, method=["attention_rollout", "generic_attention"],
                          options={"attention_rollout": {"discard_ratio": 0.9}})
    figure = grid_figure(maps, images, style="heatmap", panel_size=1.8,
                         title="torchvision vit_b_16 (random weights): attention maps")
    path = save_figure(figure, OUT, dpi=80)
    with Image.open(path) as image:  # 256 colours, as docs/make_figures.py shrinks its figures
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(path)


if __name__ == "__main__":
    main()
