"""attrib.ray.explain_dataset on a local Ray cluster: one actor, ``concurrency="auto"``, one process.

ResNet-18 (random weights, eval mode) at 224², Grad-CAM on ``layer4``, the
same random inputs written three ways, each into a fresh Zarr store:

- ``attrib.explain_dataset`` in this process (torch's default threads),
- ``attrib.ray.explain_dataset`` with ``concurrency=1`` (one actor of one CPU),
- ``attrib.ray.explain_dataset`` with ``concurrency="auto"`` (on 2 CPUs: two
  actors of half a CPU each, so the read stage keeps a CPU).

Each run's total time includes everything a job pays (for Ray: its actors'
processes, the framework's import and the model's build in each actor, Ray
Data's start). The time at which the driver writes each batch is recorded, so
every run is also split into its **steady rate** (images per second over the
second half of the batches) and its **fixed start-up** (total time minus
images / steady rate): a run of N images takes about start-up + N / rate,
and Ray is within 10 % of one process from N = 10 × start-up × rate(one process)
on when the rates are equal.

The cluster is started once, before timing, and one tiny Ray Data job is run
first (Ray Data starts its own helper actors once per cluster; its time is
printed). Runs are interleaved and the medians compared. Every store is checked
equal to the one-process store, bit for bit.

Usage::

    python benchmarks/bench_ray.py [--n 256] [--batch 16] [--repeats 1] [--cpus 2]
                                   [--runs one,1actor,auto]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import attrib
import attrib.ray
from attrib._dataset._store import MapStore


def resnet18() -> Any:
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


_written: list[tuple[float, int]] = []  # (time, rows) of each batch the driver writes


def _recorded(add_batch: Any) -> Any:
    def add(self: Any, batch: int, offset: int, arrays: Any) -> None:
        add_batch(self, batch, offset, arrays)
        _written.append((time.perf_counter(), len(arrays["checksums"])))
    return add


def _split(start: float, end: float, n: int) -> tuple[float, float]:
    """(steady images/s over the second half of the batches, fixed start-up s) of one run."""
    half = len(_written) // 2
    rows = sum(r for _, r in _written[half + 1:])
    rate = rows / (_written[-1][0] - _written[half][0])
    return rate, (end - start) - n / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--runs", default="one,1actor,auto")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start = time.perf_counter()
    ray.data.range(4).map_batches(lambda b: b, batch_size=2).materialize()
    warm = time.perf_counter() - start
    images = np.random.default_rng(0).random((args.n, 3, 224, 224), dtype=np.float32)
    ds = ray.data.from_items([{"image": x} for x in images])
    model = resnet18()
    options: dict[str, Any] = dict(method="gradcam", layer="layer4", progress=False)
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    every = {
        "one": ("one process", lambda out: attrib.explain_dataset(
            model, [images[i:i + args.batch] for i in range(0, args.n, args.batch)], out=out, **options)),
        "1actor": ("ray, 1 actor", lambda out: attrib.ray.explain_dataset(
            ds, resnet18, out=out, batch_size=args.batch, concurrency=1, **options)),
        "auto": ("ray, auto", lambda out: attrib.ray.explain_dataset(
            ds, resnet18, out=out, batch_size=args.batch, concurrency="auto", **options)),
    }
    runs = dict(every[key] for key in args.runs.split(","))
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    MapStore.add_batch = _recorded(MapStore.add_batch)  # type: ignore[method-assign]
    try:
        for repeat in range(args.repeats):
            for k, (name, run) in enumerate(runs.items()):
                out = root / f"{k}-{repeat}.zarr"
                _written.clear()
                start = time.perf_counter()
                run(out)
                end = time.perf_counter()
                times[name].append((end - start, *_split(start, end, args.n)))
                if k and _files(out) != _files(root / f"0-{repeat}.zarr"):
                    raise SystemExit(f"{name}: the store differs from the first run's store")
        from attrib._dataset._actors import plan_actors

        auto = plan_actors("auto", None, None, [dict(n["Resources"]) for n in ray.nodes() if n["Alive"]])
        print(f"ResNet-18 224², gradcam layer4, {args.n} images in batches of {args.batch}, "
              f"ray.init(num_cpus={args.cpus}); auto = {auto.size} actor(s) of num_cpus={auto.num_cpus}; "
              f"Ray Data's first job {warm:.2f} s (before timing); median of {args.repeats}; "
              f"stores equal bit for bit")
        median = {name: [statistics.median(x) for x in zip(*t)] for name, t in times.items()}
        for name, (total, rate, fixed) in median.items():
            print(f"  {name:13s} {args.n / total:6.1f} img/s  {total:7.2f} s   steady {rate:5.1f} img/s, "
                  f"fixed start-up {fixed:5.2f} s")
        if "ray, 1 actor" in median and "ray, auto" in median:
            print(f"  auto / 1 actor      {median['ray, 1 actor'][0] / median['ray, auto'][0]:.3f}x")
        if "one process" in median and "ray, auto" in median:
            one, ray_auto = median["one process"], median["ray, auto"]
            print(f"  auto / one process  {one[0] / ray_auto[0]:.3f}x   "
                  f"(steady rates {ray_auto[1] / one[1]:.3f}x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
