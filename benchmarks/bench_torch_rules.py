"""Cost of attrib's torch backend against a plain autograd input gradient, in one run.

Run: ``python benchmarks/bench_torch_rules.py [--repeats 7] [--batch 4] [--threads 2]``

For each model it times (median of ``--repeats`` rounds after a warm-up; the
variants take turns in each round):

- ``autograd``: ``torch.autograd.grad`` of the summed target logits at the input;
- ``saliency``: ``attrib.Saliency(model).attribute(x, target)`` (the same gradient,
  plus input checks, buffer snapshot and NumPy conversion);
- ``guided``: ``attrib.GuidedBackprop`` (the ``TorchFunctionMode`` rectifier rule);
- ``guided_gradcam``: ``attrib.GuidedGradCAM`` at a layer needing one backward pass
  (ResNet ``layer4``) and, for the small CNN, one needing two.

and prints each as a ratio to ``autograd``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import attrib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved  # noqa: E402 - the benchmarks' one timing loop


class SmallCNN(nn.Module):
    """conv-relu ×3 with pooling, then a linear classifier; inputs (N, 3, 32, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(self.conv3(x).relu_(), 2)
        return self.fc(x.flatten(1))


def median_times(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each variant (the loop shared with ``compare.py``)."""
    return interleaved(variants, repeats)[1]


def plain_gradient(model: nn.Module, x: torch.Tensor, target: list[int]) -> Callable[[], object]:
    def run() -> object:
        leaf = x.detach().clone().requires_grad_()
        logits = model(leaf)
        score = logits[torch.arange(len(target)), torch.tensor(target)].sum()
        return torch.autograd.grad(score, leaf)[0].numpy()

    return run


def bench(name: str, model: nn.Module, x: torch.Tensor, layers: dict[str, str],
          repeats: int) -> list[tuple[str, str, float, float]]:
    target = [i % 10 for i in range(x.shape[0])]
    variants: dict[str, Callable[[], object]] = {
        "autograd": plain_gradient(model, x, target),
        "saliency": lambda: attrib.Saliency(model).attribute(x, target),
        "guided": lambda: attrib.GuidedBackprop(model).attribute(x, target),
    }
    for label, layer in layers.items():
        variants[f"guided_gradcam {label}"] = (
            lambda layer=layer: attrib.GuidedGradCAM(model, layer=layer).attribute(x, target))
    medians = median_times(variants, repeats)
    base = medians["autograd"]
    return [(name, label, seconds, seconds / base) for label, seconds in medians.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    small = SmallCNN().eval()
    rows += bench("small CNN 32px", small, torch.randn(args.batch, 3, 32, 32), {
        "conv3 (2 passes)": "conv3"}, args.repeats)
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: resnet18 skipped")
    else:
        resnet = torchvision.models.resnet18(weights=None).eval()
        rows += bench("resnet18 224px", resnet, torch.randn(args.batch, 3, 224, 224), {
            "layer4 (1 pass)": "layer4", "layer3 (2 passes)": "layer3"}, args.repeats)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"median of {args.repeats}")
    print(f"{'model':<16} {'variant':<34} {'seconds':>9} {'ratio':>7}")
    for model_name, label, seconds, ratio in rows:
        print(f"{model_name:<16} {label:<34} {seconds:>9.4f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
