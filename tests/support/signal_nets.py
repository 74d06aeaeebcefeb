"""Small convolutional networks on signals (N, C, L) and volumes (N, C, D, H, W), and Flax twins.

``torch_net(k)`` has layers ``conv1`` (stride 1, padding 1: the input's size),
``conv2`` (stride 2) and ``fc``, with ReLU modules ``relu1``, ``relu2`` after them and a
global mean before ``fc``; ``flax_twin(net)`` is the same network in Flax linen
(channels last, kernels (k..., in, out)), so both backends explain identical
functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: spatial shape of the example inputs per number of spatial axes
SIZES = {1: (24,), 3: (6, 8, 10)}
CHANNELS = 2
CLASSES = 4


def torch_net(k: int, dtype: Any = None) -> Any:
    """The torch network for ``k`` spatial axes (1 or 3), seeded, in eval mode."""
    import torch
    from torch import nn

    conv = {1: nn.Conv1d, 3: nn.Conv3d}[k]

    class SignalNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv(CHANNELS, 5, 3, padding=1)
            self.conv2 = conv(5, 6, 3, stride=2, padding=1)
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules: Captum's guided rules hook them
            self.fc = nn.Linear(6, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.conv2(x))
            return self.fc(x.mean(dim=tuple(range(2, x.ndim))))

    torch.manual_seed(k)
    net = SignalNet().eval()
    return net.to(dtype or torch.float64)


def inputs(k: int, n: int = 2, seed: int = 0) -> np.ndarray:
    """A float64 batch (n, C, *SIZES[k]), channels first."""
    return np.random.default_rng(seed).normal(size=(n, CHANNELS, *SIZES[k]))


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def flax_twin(net: Any) -> tuple[Any, dict[str, Any]]:
    """``(module, variables)``: the Flax linen twin of ``torch_net(k)`` (weights copied)."""
    import flax.linen as nn
    import jax.numpy as jnp

    k = net.conv1.weight.ndim - 2

    class SignalNet(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            pad = [(1, 1)] * k
            x = nn.relu(nn.Conv(5, (3,) * k, padding=pad, name="conv1")(x))
            x = nn.relu(nn.Conv(6, (3,) * k, strides=2, padding=pad, name="conv2")(x))
            return nn.Dense(CLASSES, name="fc")(x.mean(axis=tuple(range(1, 1 + k))))

    def kernel(weight: Any) -> Any:
        w = weight.detach().cpu().numpy()
        return jnp.asarray(w.transpose(*range(2, w.ndim), 1, 0))

    params = {
        "conv1": {"kernel": kernel(net.conv1.weight), "bias": jnp.asarray(net.conv1.bias.detach().numpy())},
        "conv2": {"kernel": kernel(net.conv2.weight), "bias": jnp.asarray(net.conv2.bias.detach().numpy())},
        "fc": {"kernel": jnp.asarray(net.fc.weight.detach().numpy().T),
               "bias": jnp.asarray(net.fc.bias.detach().numpy())},
    }
    return SignalNet(), {"params": params}
