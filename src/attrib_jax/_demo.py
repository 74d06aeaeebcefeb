"""The demo CNN as a Flax linen module (NHWC), the twin of :mod:`attrib_torch._demo`.

Same layer names (``conv1`` … ``conv4``, ``fc``) and the same numerics:
explicit padding ``((1, 1), (1, 1))`` as torch's ``padding=1``, max-pool
2×2 stride 2 ``VALID``, global average pool over (H, W).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

__all__ = ["DemoCNN", "load_demo_model", "variables_from_torch", "from_torch_demo"]

_PAD = ((1, 1), (1, 1))


class DemoCNN(nn.Module):
    """Flax twin of :class:`attrib_torch._demo.DemoCNN`; input (N, 64, 64, 3)."""

    classes: int = 4
    channels: tuple[int, ...] = (8, 16, 32, 32)

    @nn.compact
    def __call__(self, x: Any) -> Any:
        c1, c2, c3, c4 = self.channels
        x = nn.Conv(c1, (3, 3), padding=_PAD, name="conv1")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="VALID")
        x = nn.Conv(c2, (3, 3), padding=_PAD, name="conv2")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="VALID")
        x = nn.relu(nn.Conv(c3, (3, 3), padding=_PAD, name="conv3")(x))
        x = nn.relu(nn.Conv(c4, (3, 3), padding=_PAD, name="conv4")(x))
        return nn.Dense(self.classes, name="fc")(jnp.mean(x, axis=(1, 2)))


def variables_from_torch(weights: Mapping[str, Any]) -> dict[str, Any]:
    """Flax variables from torch-named weights (NumPy arrays or torch tensors).

    Conv kernels OIHW → HWIO, the dense kernel is ``W.T``.
    """
    arrays = {k: _numpy(v) for k, v in weights.items()}
    params: dict[str, Any] = {}
    for i in range(1, 5):
        params[f"conv{i}"] = {
            "kernel": jnp.asarray(arrays[f"conv{i}.weight"].transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(arrays[f"conv{i}.bias"]),
        }
    params["fc"] = {"kernel": jnp.asarray(arrays["fc.weight"].T), "bias": jnp.asarray(arrays["fc.bias"])}
    return {"params": params}


def load_demo_model(weights: Mapping[str, Any]) -> tuple[DemoCNN, dict[str, Any]]:
    """``(module, variables)`` of the demo CNN holding ``weights`` (torch names and layouts)."""
    arrays = {k: _numpy(v) for k, v in weights.items()}
    channels = tuple(int(arrays[f"conv{i}.weight"].shape[0]) for i in range(1, 5))
    module = DemoCNN(classes=int(arrays["fc.weight"].shape[0]), channels=channels)
    return module, variables_from_torch(arrays)


def from_torch_demo(model: Any) -> tuple[DemoCNN, dict[str, Any]]:
    """The Flax twin of a torch :class:`attrib_torch._demo.DemoCNN`, weights copied (dtype kept)."""
    return load_demo_model(model.state_dict())


def _numpy(value: Any) -> np.ndarray:
    """Float32, or float64 for a ``.double()`` model (used with ``jax_enable_x64``)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    return value if value.dtype == np.float64 else value.astype(np.float32)
