"""Torchvision models that carry information, for the rule-set tests (issue 23).

torchvision's ``weights=None`` gives zero biases and identity BatchNorm, which
makes many comparisons trivial; :func:`informative` draws seeded biases and
BatchNorm scale/shift, and measures BatchNorm statistics on a few random
images, keeping the model in eval mode.

The images must cover the inputs the tests feed, baselines included: a deep
random network keeps in range only what its statistics were measured on.
Measured on white noise alone, a per-channel constant baseline (DeepLIFT's)
grew about 20-fold per stage through ``efficientnet_b7`` (features up to
1.9e7 at 64², logits 3.7e6, input gradient 6e15), and DeepLIFT's input
multipliers reached 4e22 with ``Σ |m·Δx| / |Δf|`` = 1.2e20, beyond float64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

#: values per channel the BatchNorms at stride 32 measure their statistics on (at least): with
#: fewer a deep network's statistics fit its few images and every other input grows with depth
#: (efficientnet_v2_l at 64² from 4 images, 16 values: logits up to 1e5; efficientnet_v2_m at 32²
#: from 8, 8 values: logits 6e5, summation-to-delta missed by 7e-5)
DEEPEST_VALUES = 32


def _images(size: int) -> int:
    """How many images of ``size``² give the stride-32 maps ``DEEPEST_VALUES`` values (8 or more)."""
    return max(8, -(-DEEPEST_VALUES * 32 * 32 // (size * size)))


def informative(name: str, seed: int = 0, size: int = 48, zero_bias: bool = False) -> nn.Module:
    """torchvision ``name`` (weights=None) in float64, eval mode, with informative parameters.

    Biases ~ 0.05·N(0, 1), BatchNorm scale ~ 1 + 0.2·N(0, 1), shift ~ 0.1·N(0, 1);
    each BatchNorm's statistics are measured on its own input, layer by layer in
    eval mode (stochastic depth and dropout off), from :func:`_images` images of
    ``size``² that are white noise plus a per-image, per-channel colour offset
    ~ N(0, 1), so spatially constant inputs are in range too. With
    ``zero_bias`` every shift and mean is 0 and the variance is the uncentred
    second moment.
    """
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
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if norms:
            n = _images(size)
            images = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64) \
                + torch.randn(n, 3, 1, 1, generator=gen, dtype=torch.float64)
            _measure_statistics(model.eval(), norms, images, centred=not zero_bias)
    return model.eval()


def _measure_statistics(model: nn.Module, norms: list[nn.Module], images: torch.Tensor,
                        centred: bool) -> None:
    """Set each BatchNorm's running mean/var from its input in one eval-mode pass over ``images``.

    A forward pre-hook sets them just before the BatchNorm runs, so every layer's
    statistics are those of its input as the eval-mode model computes it.
    """

    def measure(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        if centred:
            module.running_mean.copy_(x.mean((0, 2, 3)))
            module.running_var.copy_(x.var((0, 2, 3), unbiased=False))
        else:
            module.running_mean.zero_()
            module.running_var.copy_(x.square().mean((0, 2, 3)))

    handles = [m.register_forward_pre_hook(measure) for m in norms]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()


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
