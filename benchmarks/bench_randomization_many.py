"""Cascading model randomisation with four methods on the demo model: today's code against issue 19's start.

Run: ``python benchmarks/bench_randomization_many.py [--backend torch] [--repeats 5] [--n 8]``

``attrib.evaluate.model_randomization`` explains every randomised copy with all
its methods in one ``attrib.explain`` call (shared gradient passes, issue 19),
and compares each with the original maps, whose ranks and scaled maps it
computes once. Variants, all running the same function, taking turns in every
round, scores and maps checked equal bit for bit:

- ``before``: one call per method and the similarities as they were (every
  step re-ranks the original maps; :func:`ranks_per_row`, the row-by-row ranks
  they used, is kept here for this comparison);
- ``per method``: one call per method, today's similarities;
- ``one call``: today's code.

Not part of the test suite.
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


def ranks_per_row(x: np.ndarray) -> np.ndarray:
    """``attrib.evaluate._similarity.ranks`` before issue 19: one stable sort per row."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        order = np.argsort(row, kind="mergesort")
        sorted_row = row[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_row)) + 1]
        run = np.cumsum(np.r_[0, (np.diff(sorted_row) != 0).astype(np.int64)])
        ends = np.r_[starts[1:], row.size]
        out[i, order] = ((starts + ends + 1) / 2.0)[run]
    return out.reshape(x.shape)


def similarities_before(original: Any, other: Any) -> dict[str, np.ndarray]:
    """``attrib.evaluate.similarities`` before issue 19: both sides computed at every call."""
    from attrib.evaluate._maps import two_d
    from attrib.evaluate._similarity import pearson, ssim, unit_scaled

    a, b = two_d(original), two_d(other)
    a_abs, b_abs = two_d(original, absolute=True), two_d(other, absolute=True)

    def spearman(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return pearson(ranks_per_row(p.reshape(len(p), -1)), ranks_per_row(q.reshape(len(q), -1)))

    return {"spearman": spearman(a, b), "spearman_abs": spearman(a_abs, b_abs),
            "ssim": ssim(unit_scaled(a_abs), unit_scaled(b_abs)),
            "pearson_abs": pearson(a_abs, b_abs)}


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

    today = (_maps.explain_all, randomization.similarities, randomization._side)

    def run(shared: bool, before: bool = False) -> Any:
        randomization.explain_all = _maps.explain_all if shared else per_method
        if before:
            randomization.similarities, randomization._side = similarities_before, lambda m: m
        try:
            return attrib.evaluate.model_randomization(model, x, method=METHODS, layer="conv4",
                                                       progress=False)
        finally:
            randomization.explain_all, randomization.similarities, randomization._side = today

    a, b, c = run(False, before=True), run(False), run(True)
    for m in METHODS:
        for key in a.scores[m]:
            assert np.array_equal(a.scores[m][key], b.scores[m][key]), (m, key)
            assert np.array_equal(a.scores[m][key], c.scores[m][key]), (m, key)
        assert np.array_equal(a.maps[m], b.maps[m]) and np.array_equal(a.maps[m], c.maps[m]), m
    _, median = interleaved({"before": lambda: run(False, before=True),
                             "per method": lambda: run(False), "one call": lambda: run(True)},
                            args.repeats)
    print(f"{args.backend} demo model, cascading randomisation, {len(a.steps)} steps, "
          f"{args.n} images, methods {METHODS}, median of {args.repeats}")
    print(f"  before (per method, old similarities)  {median['before']:.3f} s")
    print(f"  one call per method                    {median['per method']:.3f} s   "
          f"{median['per method'] / median['before']:.3f}x")
    print(f"  one call per copy (today)              {median['one call']:.3f} s   "
          f"{median['one call'] / median['before']:.3f}x (same scores and maps, bit for bit)")


if __name__ == "__main__":
    main()
