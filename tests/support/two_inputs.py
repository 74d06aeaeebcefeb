"""A network of two inputs, ``model(image, table)``, in torch and as a Flax twin (float64).

The image branch is ``conv`` (3 -> 4 channels, 3x3, padding 1), a ReLU and a
global mean; the table branch ``table`` (5 -> 4) and a ReLU; ``fc`` maps both
(8 features) to 3 classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TARGETS = [0, 2]


def two_inputs(n: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image batch (n, 3, 8, 8) and a table (n, 5), float64."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 8, 8)), rng.normal(size=(n, 5))


def torch_two_inputs() -> Any:
    import torch
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.table = nn.Linear(5, 4)
            self.fc = nn.Linear(8, 3)
            self.relu_image, self.relu_table = nn.ReLU(), nn.ReLU()

        def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            a = self.relu_image(self.conv(image)).mean(dim=(2, 3))
            b = self.relu_table(self.table(table))
            return self.fc(torch.cat([a, b], dim=1))

        def image_only(self, table: np.ndarray) -> nn.Module:
            """The same network with the table fixed: a one-input model of the image."""
            outer, fixed = self, torch.from_numpy(table)

            class ImageOnly(nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.conv = outer.conv

                def forward(self, image: torch.Tensor) -> torch.Tensor:
                    return outer(image, fixed)

            return ImageOnly()

    torch.manual_seed(7)
    return TwoInputs().double().eval()


def flax_twin(net: Any) -> tuple[Any, dict[str, Any]]:
    """``(module, variables)`` of the same network in Flax linen (image channels last)."""
    import flax.linen as nn
    import jax.numpy as jnp

    class TwoInputs(nn.Module):
        @nn.compact
        def __call__(self, image: Any, table: Any) -> Any:
            a = nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv")(image))
            b = nn.relu(nn.Dense(4, name="table")(table))
            return nn.Dense(3, name="fc")(jnp.concatenate([a.mean(axis=(1, 2)), b], axis=1))

    def array(t: Any) -> Any:
        return jnp.asarray(t.detach().numpy())

    params = {
        "conv": {"kernel": array(net.conv.weight.permute(2, 3, 1, 0)), "bias": array(net.conv.bias)},
        "table": {"kernel": array(net.table.weight.T), "bias": array(net.table.bias)},
        "fc": {"kernel": array(net.fc.weight.T), "bias": array(net.fc.bias)},
    }
    return TwoInputs(), {"params": params}
