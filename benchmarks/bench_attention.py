"""Attention rollout and generic attention on torchvision's ViT-B/16 against the plain passes.

Run: ``python benchmarks/bench_attention.py [--size 224] [--batch 8] [--repeats 3] [--threads 2]``

torchvision ``vit_b_16`` (weights=None, eval, float32), a batch of ``--batch``
images; variants interleaved in every round, medians of ``--repeats``
(:func:`benchmarks._timing.interleaved`):

- ``forward``: ``model(x)`` under ``torch.no_grad()`` (the eval fast path of
  ``nn.MultiheadAttention``, fused attention);
- ``rollout``: ``attrib.explain(model, x, method="attention_rollout")``: one
  forward pass with the attention computed explicitly and captured (no
  backward pass), the rollout in NumPy;
- ``forward+backward``: ``model(x)`` with the input requiring a gradient and
  one ``torch.autograd.grad`` of the arg-max logits to the input;
- ``generic``: ``attrib.explain(model, x, method="generic_attention")``: one
  forward and one backward pass (to the first attention), the rollout in NumPy.

Prints seconds and the ratios rollout / forward and generic / forward+backward.
Not part of the test suite; numbers are in docs/vision-transformers.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision

import attrib

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=args.size).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(args.batch, 3, args.size, args.size)

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def forward_backward() -> object:
        leaf = x.clone().requires_grad_()
        logits = model(leaf)
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        return torch.autograd.grad(score, leaf)

    variants = {
        "forward": forward,
        "rollout": lambda: attrib.explain(model, x, method="attention_rollout"),
        "forward+backward": forward_backward,
        "generic": lambda: attrib.explain(model, x, method="generic_attention"),
    }
    _, median = interleaved(variants, args.repeats)
    print(f"torchvision vit_b_16, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} threads, median of {args.repeats}")
    for label, seconds in median.items():
        print(f"  {label:18s} {seconds:7.3f} s")
    print(f"  rollout / forward:          {median['rollout'] / median['forward']:.2f}x")
    print(f"  generic / forward+backward: {median['generic'] / median['forward+backward']:.2f}x")


if __name__ == "__main__":
    main()
