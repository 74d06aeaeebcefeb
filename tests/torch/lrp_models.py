"""Torchvision models that carry information, for the rule-set tests (issue 23).

torchvision's ``weights=None`` gives zero biases and identity BatchNorm, which
makes many comparisons trivial; :func:`informative` draws seeded biases and
BatchNorm scale/shift, and measures BatchNorm statistics on a few random
images, keeping the model in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
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


def zero_bias(model: nn.Module) -> nn.Module:
    """A copy with every conv/dense bias, BatchNorm shift and running mean at zero."""
    zero = copy.deepcopy(model)
    with torch.no_grad():
        for module in zero.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.BatchNorm2d):
                module.bias.zero_()
                module.running_mean.zero_()
    return zero


def zplus_dropped(model: nn.Module, run: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``run()``'s map and the relevance the z⁺ rule drops by its definition, per sample.

    z⁺ hands an output's relevance ``R`` to its inputs in proportion to
    ``x⁺W⁺ + x⁻W⁻``; where that sum is 0 (a convolution whose output is
    negative only, e.g. a depthwise 3×3 on sparse ReLU outputs with no ReLU
    after it, as in ShuffleNet) ``R`` reaches no input. Found independently of
    attrib: each convolution's input (forward hook) and output relevance
    (tensor hook) in attrib's pass, the denominator recomputed from the
    module's own weights (every BatchNorm scale must be positive, so merging
    moves no zero; checked). The first convolution (flat rule) drops nothing.
    """
    assert all(bool((m.weight > 0).all()) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))
    seen: list[list[Any]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not output.requires_grad:
            return
        entry: list[Any] = [module, inputs[0].detach().clone(), None]
        seen.append(entry)
        output.register_hook(lambda r: entry.__setitem__(2, r.detach().clone()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        attribution = run()
    finally:
        for handle in handles:
            handle.remove()
    dropped = np.zeros(len(attribution))
    first = seen[0][0] if seen else None
    for module, inp, r in seen:
        if module is first or r is None:
            continue
        w = module.weight.detach()
        with torch.no_grad():
            den = module._conv_forward(inp.clamp(min=0), w.clamp(min=0), None) \
                + module._conv_forward(inp.clamp(max=0), w.clamp(max=0), None)
        dropped += (r * (den == 0)).flatten(1).sum(1).numpy()
    return attribution, dropped
