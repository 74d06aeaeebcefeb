"""Score-CAM and Ablation-CAM: attrib against pytorch-grad-cam 1.5.7, in one interleaved run.

Run: ``python benchmarks/bench_cams.py [--model resnet50] [--layer layer4] [--size 224]
[--batch 8] [--batch-size 32] [--repeats 3] [--threads 2] [--methods scorecam ablationcam]``

For a torchvision model (weights=None, eval, float32) at ``--layer`` and a
batch of ``--batch`` images it times (median of ``--repeats`` rounds; attrib
and pytorch-grad-cam take turns within each round, and swap who goes first):

- ``scorecam``: ``attrib.explain(method="scorecam", batch_size=B)`` against
  ``pytorch_grad_cam.ScoreCAM`` with ``batch_size = B``;
- ``ablationcam``: ``attrib.explain(method="ablationcam", batch_size=B)``
  against ``pytorch_grad_cam.AblationCAM(batch_size=B)``;

and prints each time, every round, and the ratio attrib / pytorch-grad-cam
(below 1: attrib is faster). Not part of the test suite.

Both run ``N * C`` masked or ablated forward passes. Score-CAM's are the
same work in both (full passes of the same masked inputs, ``B`` per call).
Ablation-CAM's differ: pytorch-grad-cam swaps the layer for its cached
output, so it skips the layer but runs the layers before it for every copy;
attrib's ``Model.forward_substituted`` skips the layer too and, for a chunk of
one image's copies, runs the layers before it once (one input image).

Measured under the machine-wide CPU lock (nothing else running but the
shell), resnet18, batch 8, batch_size 32, 2 threads; seconds (median of 3 at
32 and 64, of 5 for Score-CAM at 64, one round at 224), ratio:

=============  =========  ===============  ================  =====
method         layer      input            attrib / grad-cam  ratio
=============  =========  ===============  ================  =====
ablationcam    layer3     32x32            0.48 / 0.80        0.59
ablationcam    layer3     64x64            1.00 / 3.84        0.26
ablationcam    layer3     224x224          5.57 / 40.62       0.14
ablationcam    layer4     32x32            0.57 / 1.43        0.40
ablationcam    layer4     64x64            0.77 / 5.20        0.15
ablationcam    layer4     224x224          2.48 / 81.57       0.03
scorecam       layer3     64x64            3.15 / 3.19        0.99
scorecam       layer4     64x64            6.31 / 6.58        0.96
=============  =========  ===============  ================  =====

Score-CAM is the same work in both, so its ratio is per-call overhead: an
earlier run of 5 rounds (wider spread, before the in-place masks) gave 1.03 and 1.08 (layer3,
layer4 at 64x64). Before ``forward_substituted`` (the layer re-run and
scaled), Ablation-CAM at layer3, 32x32 was 0.93 s against 0.74 s (ratio
1.27) on the same quiet machine.
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
