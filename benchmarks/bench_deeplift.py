"""DeepLIFT: attrib against Captum's ``DeepLift`` and the plain gradient, on vgg16.

Run: ``python benchmarks/bench_deeplift.py [--size 224] [--batch 8] [--repeats 3] [--threads 2]``

torchvision ``vgg16`` (weights=None, eval, float32), a batch of ``--batch``
images and a black baseline; variants interleaved in every round, medians of
``--repeats`` (:func:`benchmarks._timing.interleaved`):

- ``attrib``: ``attrib.explain(model, x, method="deeplift", target=...)`` on the
  unmodified model;
- ``captum``: ``captum.attr.DeepLift`` on a copy with a copy module before each
  max-pool (without it Captum's map is wrong, captum#1104), same targets;
- ``gradient``: ``attrib.explain(model, x, method="saliency")``.

Prints the seconds and the ratios attrib / captum and attrib / gradient, and
the largest difference between the two DeepLIFT maps. Numbers are in
docs/benchmarks.md; not part of the test suite.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

import attrib

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved  # noqa: E402 - the benchmarks' one timing loop


class _Copy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _with_copies(model: nn.Module) -> nn.Module:
    fixed = copy.deepcopy(model)
    layers: list[nn.Module] = []
    for i, layer in enumerate(fixed.features):
        if isinstance(layer, nn.MaxPool2d) and isinstance(fixed.features[i - 1], nn.ReLU):
            layers.append(_Copy())
        layers.append(layer)
    fixed.features = nn.Sequential(*layers)
    return fixed


def main() -> None:
    from captum.attr import DeepLift

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    fixed = _with_copies(model)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    targets = list(range(args.batch))
    baseline = torch.zeros_like(x)
    captum = DeepLift(fixed)
    calls: dict[str, Callable[[], object]] = {
        "attrib": lambda: attrib.explain(model, x, method="deeplift", target=targets),
        "captum": lambda: captum.attribute(x, baseline, target=targets),
        "gradient": lambda: attrib.explain(model, x, method="saliency", target=targets),
    }
    ours = np.asarray(calls["attrib"]().attribution)  # type: ignore[attr-defined]
    theirs = captum.attribute(x, baseline, target=targets).detach().numpy()
    print(f"vgg16 {args.size}² batch {args.batch}: |attrib - captum| / max|captum| = "
          f"{np.abs(ours - theirs).max() / np.abs(theirs).max():.1e}")
    _, median = interleaved(calls, args.repeats)
    print("  ".join(f"{name} {seconds:.2f} s" for name, seconds in median.items()))
    print(f"attrib / captum {median['attrib'] / median['captum']:.2f}x, "
          f"attrib / gradient {median['attrib'] / median['gradient']:.2f}x")


if __name__ == "__main__":
    main()
