"""The demo CNN in PyTorch, and loading it from the framework-neutral ``.npz`` weights.

The Flax twin is :mod:`attrib_jax._demo`; both use the same layer names and
compute the same logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DemoCNN", "CHANNELS", "load_demo_model"]

#: Output channels of conv1 … conv4.
CHANNELS: tuple[int, int, int, int] = (8, 16, 32, 32)


class DemoCNN(nn.Module):
    """Four 3×3 convolutions (padding 1) with ReLU, max-pool after the first two,
    global average pooling and a linear classifier.

    Input (N, 3, 64, 64) RGB in [0, 1]; output logits (N, classes). The last
    convolution, ``conv4``, works at 16×16 and is the layer for Grad-CAM.
    """

    def __init__(self, classes: int = 4, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1)
        self.fc = nn.Linear(c4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        return self.fc(x.mean(dim=(2, 3)))


def load_demo_model(weights: Mapping[str, np.ndarray]) -> DemoCNN:
    """A :class:`DemoCNN` in eval mode holding ``weights`` (torch names and layouts)."""
    channels = tuple(int(weights[f"conv{i}.weight"].shape[0]) for i in range(1, 5))
    model = DemoCNN(classes=int(weights["fc.weight"].shape[0]), channels=channels)
    state = {key: torch.from_numpy(np.asarray(value, dtype=np.float32)) for key, value in weights.items()}
    model.load_state_dict(state)
    return model.eval()
