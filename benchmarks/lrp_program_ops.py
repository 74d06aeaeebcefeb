"""Convolutions and dense products in the compiled JAX programs: ``lrp`` against ``saliency``.

Run: ``python benchmarks/lrp_program_ops.py [--model resnet50] [--size 64]``

Builds the Flax twin of a torchvision ResNet (:func:`attrib_jax.from_torch`),
calls ``attrib.explain`` with ``method="saliency"`` and ``method="lrp"``
(``epsilon_plus_flat``) on a batch of 2, lowers and compiles the jitted
programs those calls built (read from attrib_jax's program cache) and counts,
in the compiled HLO, the ``convolution`` and ``dot`` instructions and the
fusions whose output has the shape of an activation (N, H, W, C). An exact z⁺
rule needs one ``W⁺x`` per layer over the gradient; more would be waste.
Not part of the test suite; numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from typing import Any

import numpy as np
import torch
import torchvision

import attrib
import attrib_jax
from attrib_jax import _model


def _counts(hlo: str, batch: int) -> Counter[str]:
    out: Counter[str] = Counter()
    activation = re.compile(rf"= f\d+\[{batch},\d+,\d+,\d+\]\S* fusion\(")
    for line in hlo.splitlines():
        op = re.search(r"= \S+ (convolution|dot)\(", line)
        if op:
            out[op.group(1)] += 1
        if activation.search(line):
            out["activation-sized fusion"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    twin = attrib.wrap(attrib_jax.from_torch(model), backend="jax", train=False)
    x = np.random.default_rng(1).standard_normal((2, args.size, args.size, 3)).astype(np.float32)
    captured: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for method in ("saliency", "lrp"):
        before = set(_model._CACHE)
        attrib.explain(twin, x, method=method, target=[1, 7])
        for key in set(_model._CACHE) - before:
            entry = _model._CACHE[key]

            def record(*call: Any, _program: Any = entry.program, _method: str = method) -> Any:
                captured[_method] = (_program, call)
                return _program(*call)

            entry.program = record
        attrib.explain(twin, x, method=method, target=[1, 7])  # the same program, recorded
    for method, (program, call) in captured.items():
        counts = _counts(program.lower(*call).compile().as_text(), x.shape[0])
        print(f"{args.model} {args.size}x{args.size} {method}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
