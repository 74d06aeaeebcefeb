"""Torch models with BatchNorm moved off the identity, so random-weight maps are not trivial."""

from __future__ import annotations

from typing import Any


def perturb_batchnorm(model: Any, seed: int = 1) -> Any:
    """Draw every BatchNorm2d's running statistics and affine parameters (seeded); eval mode.

    torchvision's ``weights=None`` models start with identity BatchNorm, which
    leaves many maps all zero or all alike; this gives them varied, reproducible
    statistics. Returns the model, in eval mode.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
    return model.eval()


def perturbed_resnet18(dtype: Any = None) -> Any:
    """torchvision ``resnet18`` (10 classes, ``torch.manual_seed(0)``), BatchNorm perturbed, eval.

    ``dtype``: the parameters' dtype (``torch.float64`` for the reference comparisons).
    """
    import torch
    import torchvision

    torch.manual_seed(0)
    model = perturb_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10))
    return model if dtype is None else model.to(dtype)
