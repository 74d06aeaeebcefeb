"""The figures of docs/signals-and-volumes.md: a 1-D and a 3-D network explained.

Signals: two channels of a synthetic recording in which class 1 is a burst;
a small Conv1d network is trained for a few hundred steps on such signals so
that its maps have something to find. Volumes: a small Conv3d network trained
to find a bright blob in noise. Writes docs/figures/signal_map.png and
docs/figures/volume_slices.png.

    python scripts/signal_volume_figures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import attrib
from attrib.plotting import save_figure, signal_figure, volume_figure

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def signals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2, 128) noisy oscillations; label 1: a burst at a random place in channel 0."""
    t = np.arange(128)
    x = 0.3 * rng.normal(size=(n, 2, 128)) + np.sin(t / 6.0)[None, None]
    labels = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(labels):
        c = rng.integers(16, 112)
        x[i, 0] += 2.5 * np.exp(-0.5 * ((t - c) / 4.0) ** 2) * np.sin(t - c)
    return x.astype(np.float32), labels


def volumes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 16, 24, 24) noise; label 1: a bright ball at a random place."""
    x = 0.5 * rng.normal(size=(n, 1, 16, 24, 24))
    labels = rng.integers(0, 2, size=n)
    d, h, w = np.meshgrid(np.arange(16), np.arange(24), np.arange(24), indexing="ij")
    for i in np.flatnonzero(labels):
        c = rng.integers(4, 12), rng.integers(5, 19), rng.integers(5, 19)
        x[i, 0] += 2.0 * np.exp(-((d - c[0]) ** 2 + (h - c[1]) ** 2 + (w - c[2]) ** 2) / 6.0)
    return x.astype(np.float32), labels


def train(net: nn.Module, data: tuple[np.ndarray, np.ndarray], steps: int) -> nn.Module:
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (32,))
        loss = nn.functional.cross_entropy(net(x[rows]), y[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    accuracy = float((net(x).argmax(1) == y).float().mean())
    print(f"{type(net[0]).__name__} network: training accuracy {accuracy:.2f}")
    return net.eval()


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net1 = train(nn.Sequential(
        nn.Conv1d(2, 8, 7, padding=3), nn.ReLU(), nn.Conv1d(8, 16, 5, stride=2, padding=2),
        nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 2)), signals(512, rng), 300)
    x, labels = signals(8, np.random.default_rng(1))
    i = int(np.flatnonzero(labels == 1)[0])
    grads = attrib.explain(net1, x, method="integrated_gradients", target=1, steps=16)
    save_figure(signal_figure(grads, index=i, channel_names=["channel 0 (burst)", "channel 1"]),
                OUT / "signal_map.png")
    net3 = train(nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(16, 2)), volumes(256, rng), 200)
    v, labels = volumes(8, np.random.default_rng(2))
    j = int(np.flatnonzero(labels == 1)[0])
    cam = attrib.explain(net3, v, method="gradcam", target=1)  # default layer: the last ReLU
    print("Grad-CAM layer:", cam.layer)
    save_figure(volume_figure(cam, index=j), OUT / "volume_slices.png")


if __name__ == "__main__":
    main()
