"""Score-CAM and Ablation-CAM: attrib against pytorch-grad-cam 1.5.7, in one interleaved run.

Run: ``python benchmarks/bench_cams.py [--model resnet50] [--size 224] [--batch 8]
[--batch-size 32] [--repeats 3] [--threads 2]``

For a torchvision model (weights=None, eval, float32) at ``layer4`` and a
batch of ``--batch`` images it times (median of ``--repeats`` rounds; attrib
and pytorch-grad-cam take turns within each round, and swap who goes first):

- ``scorecam``: ``attrib.explain(method="scorecam", batch_size=B)`` against
  ``pytorch_grad_cam.ScoreCAM`` with ``batch_size = B``;
- ``ablationcam``: ``attrib.explain(method="ablationcam", batch_size=B)``
  against ``pytorch_grad_cam.AblationCAM(batch_size=B)``;

and prints each time and the ratio attrib / pytorch-grad-cam (below 1: attrib
is faster). Both run ``N * C`` masked forward passes; attrib batches them
across images (``ceil(N * C / B)`` calls) where pytorch-grad-cam batches per
image (``N * ceil(C / B)``). Not part of the test suite.

Measured on the shared 2-core machine under heavy load from other jobs (load
average 4-12, so these ratios are noisy), resnet18 at layer3, batch 8 of
32x32, batch_size 32, median of 4: Score-CAM ratio 0.80 (27.4 s / 34.2 s),
Ablation-CAM ratio 1.35 (11.6 s / 8.6 s). pytorch-grad-cam's Ablation-CAM
replaces the target layer by its cached output, so it never runs that layer
in the ablated passes; attrib's ``Model.forward_scaled`` runs the layer and
scales its output, which costs the layer's share of the forward pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision

import attrib


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["scorecam", "ablationcam"],
                        choices=["scorecam", "ablationcam"])
    args = parser.parse_args()

    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    layer = model.get_submodule(args.layer)
    x = torch.randn(args.batch, 3, args.size, args.size)
    targets = list(range(args.batch))
    their_targets = [ClassifierOutputTarget(t) for t in targets]

    def ours(method: str) -> Callable[[], Any]:
        return lambda: attrib.explain(model, x, method=method, layer=args.layer, target=targets,
                                      batch_size=args.batch_size)

    def theirs(method: str) -> Callable[[], Any]:
        def run() -> Any:
            if method == "scorecam":
                cam: Any = ScoreCAM(model=model, target_layers=[layer])
                cam.batch_size = args.batch_size
            else:
                cam = AblationCAM(model=model, target_layers=[layer], batch_size=args.batch_size)
            try:
                return cam(input_tensor=x, targets=their_targets)
            finally:
                cam.activations_and_grads.release()
        return run

    print(f"{args.model} at {args.layer}, batch {args.batch} of {args.size}x{args.size}, "
          f"batch_size {args.batch_size}, {args.threads} threads, median of {args.repeats}")
    for method in args.methods:
        times: dict[str, list[float]] = {"attrib": [], "pytorch-grad-cam": []}
        for round_ in range(args.repeats):
            # take turns, and swap who goes first each round (the machine's load drifts)
            order = [("attrib", ours), ("pytorch-grad-cam", theirs)]
            for name, make in order if round_ % 2 == 0 else order[::-1]:
                times[name].append(_timed(make(method)))
        a = statistics.median(times["attrib"])
        b = statistics.median(times["pytorch-grad-cam"])
        print(f"{method:12s} attrib {a:8.2f} s   pytorch-grad-cam {b:8.2f} s   ratio {a / b:.2f}"
              f"   (rounds: attrib {' '.join(f'{t:.2f}' for t in times['attrib'])}; "
              f"pytorch-grad-cam {' '.join(f'{t:.2f}' for t in times['pytorch-grad-cam'])})",
              flush=True)


if __name__ == "__main__":
    main()
