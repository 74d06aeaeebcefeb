"""Torchvision models that carry information, for the rule-set tests (issue 23).

torchvision's ``weights=None`` gives zero biases and identity BatchNorm, which
makes many comparisons trivial; :func:`informative` draws seeded biases and
BatchNorm scale/shift, and measures BatchNorm statistics on a few random
images, keeping the model in eval mode.
"""

from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn


def informative(name: str, seed: int = 0, size: int = 48, zero_bias: bool = False) -> nn.Module:
    """torchvision ``name`` (weights=None) in float64, eval mode, with informative parameters."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.copy_(0.0 if zero_bias else
                                  0.05 * torch.randn(module.bias.shape, generator=gen,
                                                     dtype=torch.float64))
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=gen,
                                                             dtype=torch.float64))
                module.bias.copy_(0.0 if zero_bias else
                                  0.1 * torch.randn(module.bias.shape, generator=gen,
                                                    dtype=torch.float64))
        model.train()  # measure BatchNorm statistics on random images
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative average
                module.reset_running_stats()
        if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            model(torch.randn(4, 3, size, size, generator=gen, dtype=torch.float64))
            if zero_bias:  # a zero BatchNorm shift must stay zero: centre the statistics away
                for module in model.modules():
                    if isinstance(module, nn.BatchNorm2d):
                        module.running_mean.zero_()
    return model.eval()


def eps_folded(model: nn.Module) -> nn.Module:
    """A copy computing the same function with every BatchNorm's eps folded into running_var."""
    folded = copy.deepcopy(model)
    with torch.no_grad():
        for module in folded.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.add_(module.eps)
                module.eps = 0.0
    return folded
