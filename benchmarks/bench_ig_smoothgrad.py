"""Integrated gradients and SmoothGrad: attrib against Captum on torchvision ResNet-50 (CPU).

For IG (``steps`` interpolation points, Gauss–Legendre, zero baseline) and SmoothGrad
(``samples`` noisy copies, saliency base) at batch 1 and 8 it measures, interleaved in
one run (configuration by configuration, round after round):

- attrib with its default ``batch_size`` (sized from a 3 MiB input budget: 64 rows per
  gradient pass at 64², 5 at 224², see ``attrib.methods._batched.default_batch_size``;
  the rows used are printed) and with ``--attrib-batch`` if given;
- Captum ``IntegratedGradients`` / ``NoiseTunnel(Saliency)`` with each
  ``internal_batch_size`` / ``nt_samples_batch_size`` of ``--captum-batches``; the
  best of them (lowest median) is the one attrib is compared with.

Every configuration runs in a fresh subprocess per round (one untimed warm-up call,
then ``--calls`` timed calls), so that the **peak memory** of a configuration can be
read with ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: printed is the growth of the
process's peak resident set during the calls (peak after minus peak before the warm-up
call, i.e. with the model and inputs already loaded), in MiB, the maximum over rounds.
Times are the median over ``--rounds`` of each subprocess's median call. Weights are
random (``weights=None``), float32, ``torch.set_num_threads(--threads)``.

Run::

    python benchmarks/bench_ig_smoothgrad.py [--size 64] [--rounds 3] [--methods ig]
        [--captum-ig 0,100,50,16] [--captum-nt 0,10,5] [--attrib-batch 16]
        [--allocator steady] [--captum-delta]

Each call's minor page faults are counted (median, column ``faults``);
``--allocator steady`` runs every subprocess with glibc's ``malloc`` keeping the
memory it frees, which removes the page-fault noise (see "Page faults" in
``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import STEADY_MALLOC, minor_faults  # noqa: E402 - the benchmarks' shared helpers


def _worker(spec: dict[str, Any]) -> None:
    import numpy as np
    import torch
    import torchvision

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = np.random.default_rng(0).uniform(size=(spec["batch"], 3, spec["size"], spec["size"]))
    x = x.astype(np.float32)
    target = [int(i) % 1000 for i in range(spec["batch"])]
    xt = torch.from_numpy(x)

    if spec["impl"] == "attrib":
        import attrib

        options: dict[str, Any] = {}
        if spec["chunk"]:
            options["batch_size"] = spec["chunk"]
        if spec["method"] == "ig":
            def call() -> Any:
                return attrib.explain(model, x, method="integrated_gradients", target=target,
                                      steps=spec["steps"], **options)
        else:
            def call() -> Any:
                return attrib.explain(model, x, method="smoothgrad", target=target,
                                      n_samples=spec["samples"], noise=0.15, **options)
    else:
        from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

        if spec["method"] == "ig":
            ig = IntegratedGradients(model)

            def call() -> Any:
                return ig.attribute(xt, target=target, n_steps=spec["steps"],
                                    internal_batch_size=spec["chunk"] or None,
                                    return_convergence_delta=spec.get("delta", False))
        else:
            tunnel = NoiseTunnel(Saliency(model))
            sigma = float(0.15 * (x.max() - x.min()))

            def call() -> Any:
                return tunnel.attribute(xt, target=target, nt_type="smoothgrad",
                                        nt_samples=spec["samples"], stdevs=sigma,
                                        nt_samples_batch_size=spec["chunk"] or None, abs=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and inputs loaded
    call()  # warm-up (allocator, lazy initialisation); counts for the peak
    times, faults = [], []
    for _ in range(spec["calls"]):
        before_faults = minor_faults()
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
        faults.append(minor_faults() - before_faults)
    seconds = statistics.median(times)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = result.stats["batch_size"] if spec["impl"] == "attrib" else 0
    print(json.dumps({"seconds": seconds, "peak_growth_mib": (after - before) / 1024,
                      "peak_mib": after / 1024, "rows": rows,
                      "faults": statistics.median(faults)}))


def _run(spec: dict[str, Any], steady: bool) -> dict[str, float]:
    env = {**os.environ, **STEADY_MALLOC} if steady else None
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                         capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2, help="timed calls per subprocess")
    parser.add_argument("--captum-ig", default="0,100,50,16",
                        help="IG internal_batch_size values tried (rows; 0: None, all at once)")
    parser.add_argument("--captum-nt", default="0,10,5",
                        help="NoiseTunnel nt_samples_batch_size values tried (noise samples; 0: None)")
    parser.add_argument("--attrib-batch", type=int, default=0,
                        help="also time attrib with this batch_size (0: defaults only)")
    parser.add_argument("--methods", default="ig,smoothgrad")
    parser.add_argument("--captum-delta", action="store_true",
                        help="Captum IG also returns its convergence delta (f(x) - f(baseline) "
                             "needs a forward pass of both), as attrib always reports completeness")
    parser.add_argument("--allocator", choices=["default", "steady"], default="default",
                        help="steady: the subprocesses' glibc malloc keeps the memory it frees "
                        "(MALLOC_MMAP_MAX_=0, no heap trimming): no page-fault noise")
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return

    configs: list[dict[str, Any]] = []
    for method in args.methods.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            base = {"method": method, "batch": batch, "size": args.size, "steps": args.steps,
                    "samples": args.samples, "threads": args.threads, "calls": args.calls}
            chunks = [0] + ([args.attrib_batch] if args.attrib_batch else [])
            configs += [{**base, "impl": "attrib", "chunk": c} for c in chunks]
            tried = args.captum_ig if method == "ig" else args.captum_nt
            configs += [{**base, "impl": "captum", "chunk": int(c), "delta": args.captum_delta}
                        for c in tried.split(",")]
    results: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(configs))}
    for round_ in range(args.rounds):  # interleaved: every configuration once per round
        for i, spec in enumerate(configs):
            results[i].append(_run(spec, args.allocator == "steady"))
            print(f"  {spec['method']} batch {spec['batch']} {spec['impl']} chunk "
                  f"{spec['chunk'] or 'default'}: {results[i][-1]}", file=sys.stderr, flush=True)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    print(f"ResNet-50 (weights=None, float32), {args.size}x{args.size}, "
          f"{args.threads} threads, median of {args.rounds} interleaved rounds (each the median "
          f"of {args.calls} calls after a warm-up); memory = growth "
          "of the subprocess's peak RSS (getrusage ru_maxrss) during the call, max over rounds; "
          f"{args.allocator} allocator; faults: median minor page faults per call")
    print("chunk: attrib's batch_size (rows per pass; 'default' shows the rows it chose), "
          "Captum's internal_batch_size (rows) / nt_samples_batch_size (noise samples); "
          "None: everything in one pass")
    print(f"{'method':<11}{'batch':>6}  {'impl':<8}{'chunk':>13}{'seconds':>10}{'peak MiB':>10}"
          f"{'faults':>9}")
    summary = []
    for method in args.methods.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            rows = []
            for i, spec in enumerate(configs):
                if spec["method"] != method or spec["batch"] != batch:
                    continue
                seconds = statistics.median(r["seconds"] for r in results[i])
                memory = max(r["peak_growth_mib"] for r in results[i])
                page_faults = statistics.median(r["faults"] for r in results[i])
                rows.append((spec["impl"], spec["chunk"], seconds, memory))
                chunk = spec["chunk"] or (f"default={results[i][0]['rows']}"
                                          if spec["impl"] == "attrib" else "None")
                print(f"{method:<11}{batch:>6}  {spec['impl']:<8}{chunk!s:>13}{seconds:>10.3f}"
                      f"{memory:>10.0f}{page_faults:>9.0f}")
            ours = min((r for r in rows if r[0] == "attrib" and r[1] == 0), key=lambda r: r[2])
            best = min((r for r in rows if r[0] == "captum"), key=lambda r: r[2])
            verdict = "met" if ours[2] <= best[2] else "NOT met"
            summary.append(f"{method} batch {batch}: attrib {ours[2]:.3f} s / Captum best "
                           f"(chunk {best[1] or 'None'}) {best[2]:.3f} s = "
                           f"{ours[2] / best[2]:.2f}x ({verdict}: not slower); peak "
                           f"+{ours[3]:.0f} MiB vs Captum best's +{best[3]:.0f} MiB")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
