"""Cascading model randomisation with four methods on the demo model: one call per copy vs one per method.

Run: ``python benchmarks/bench_randomization_many.py [--backend torch] [--repeats 5] [--n 8]``

``attrib.evaluate.model_randomization`` explains every randomised copy with all
its methods in one ``attrib.explain`` call (shared gradient passes, issue 19).
The ``per method`` variant runs the same function with that call replaced by one
call per method (what it did before); both take turns in every round and the
scores are checked equal. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved  # noqa: E402 - the benchmarks' one timing loop

METHODS = ["saliency", "guided_backprop", "gradcam", "guided_gradcam"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    import attrib
    from attrib.evaluate import _maps, randomization

    torch.set_num_threads(args.threads)
    model = attrib.wrap(attrib.demo_model(args.backend), backend=args.backend)
    images = attrib.demo_data(n=args.n).images
    x = images.transpose(0, 3, 1, 2).copy() if args.backend == "torch" else images

    def per_method(model: Any, inputs: Any, methods: Any, **kw: Any) -> dict[str, Any]:
        return {m: _maps.explain_maps(model, inputs, m, **kw) for m in methods}

    def run(shared: bool) -> Any:
        randomization.explain_all = _maps.explain_all if shared else per_method
        try:
            return attrib.evaluate.model_randomization(model, x, method=METHODS, layer="conv4",
                                                       progress=False)
        finally:
            randomization.explain_all = _maps.explain_all

    a, b = run(False), run(True)
    for m in METHODS:
        for key in a.scores[m]:
            assert np.array_equal(a.scores[m][key], b.scores[m][key]), (m, key)
        assert np.array_equal(a.maps[m], b.maps[m]), m
    _, median = interleaved({"per method": lambda: run(False), "one call": lambda: run(True)},
                            args.repeats)
    print(f"{args.backend} demo model, cascading randomisation, {len(a.steps)} steps, "
          f"{args.n} images, methods {METHODS}, median of {args.repeats}")
    print(f"  one call per method  {median['per method']:.3f} s")
    print(f"  one call per copy    {median['one call']:.3f} s   "
          f"{median['one call'] / median['per method']:.3f}x (same scores and maps, bit for bit)")


if __name__ == "__main__":
    main()
