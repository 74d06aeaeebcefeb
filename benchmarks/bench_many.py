"""Six seed methods in one ``attrib.explain`` call against six separate calls, in one run.

Run: ``python benchmarks/bench_many.py [--backend torch|jax] [--model resnet50] [--batch 8]
[--size 224] [--threads 2] [--repeats 3]``

The six seed methods (saliency, gradient × input, guided backprop, deconvnet,
Grad-CAM and guided Grad-CAM at ``layer4``) on a torchvision ResNet (``weights=None``;
for ``--backend jax`` its Flax twin with the same weights):

- ``separate``: six ``attrib.explain(model, x, method=name)`` calls, one after the other;
- ``one call``: ``attrib.explain(model, x, method=[...six...])``.

Both take turns in every round (median of ``--repeats`` after a warm-up that, for
JAX, compiles); the model is wrapped once (``attrib.wrap``) so both reuse the
backend's caches. Before timing, every map of the one call is checked equal, bit
for bit, to the separate call's. Prints the medians, the ratio and the passes
that ran (``stats["plan"]``). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved  # noqa: E402 - the benchmarks' one timing loop

SEED = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet", "gradcam",
        "guided_gradcam"]
OPTIONS = {"gradcam": {"layer": "layer4"}, "guided_gradcam": {"layer": "layer4"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    import torchvision

    import attrib

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = getattr(torchvision.models, args.model)(weights=None).eval()
    x = np.random.default_rng(0).standard_normal(
        (args.batch, 3, args.size, args.size)).astype(np.float32)
    if args.backend == "jax":
        from attrib_jax import from_torch

        model = attrib.wrap(from_torch(net), backend="jax")
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    else:
        model = attrib.wrap(net, backend="torch")

    def separate() -> dict[str, attrib.Explanation]:
        return {name: attrib.explain(model, x, method=name, **OPTIONS.get(name, {}))
                for name in SEED}

    def one_call() -> dict[str, attrib.Explanation]:
        return attrib.explain(model, x, method=SEED, options=OPTIONS)

    alone, many = separate(), one_call()
    for name in SEED:
        assert np.array_equal(alone[name].attribution, many[name].attribution), name
        for part, value in alone[name].parts.items():
            assert np.array_equal(value, many[name].parts[part]), (name, part)
    plan = many["saliency"].stats["plan"]
    first, median = interleaved({"separate": separate, "one call": one_call}, args.repeats)
    print(f"{args.backend} {args.model}, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} threads, median of {args.repeats} (first call: "
          f"separate {first['separate']:.2f} s, one call {first['one call']:.2f} s)")
    print(f"  six separate calls   {median['separate']:8.3f} s")
    print(f"  one call             {median['one call']:8.3f} s   "
          f"{median['one call'] / median['separate']:.3f}x")
    print(f"  every map bit-equal; plan: {plan['gradient_calls']} gradient calls, "
          f"{plan['forward_passes']} forward passes, {plan['backward_passes']} backward passes: "
          + "; ".join(f"{p['rule']}: {', '.join(p['methods'])}" for p in plan["passes"]))


if __name__ == "__main__":
    main()
