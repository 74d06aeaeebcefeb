"""A dense detector head for the Boxes tests (torch): per-cell boxes and class logits."""

from __future__ import annotations

import torch
from torch import nn


class DenseDetector(nn.Module):
    """A dense head: per-cell boxes (N, P, 4) and logits (N, P, classes)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4 + 3, 4, stride=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(torch.relu(self.conv(x))).flatten(2).transpose(1, 2)  # (N, P, 7)
        cells = torch.arange(out.shape[1], dtype=x.dtype)
        corner = torch.stack([cells % 4, cells // 4], 1) * 4
        boxes = torch.cat([corner + out[..., :2], corner + 4 + out[..., 2:4].exp()], -1)
        return boxes, out[..., 4:]
