"""attrib.ray.explain_dataset on a local Ray cluster: one actor, ``concurrency="auto"``, one process.

ResNet-18 (random weights, eval mode) at 224², Grad-CAM on ``layer4``, the
same random inputs written three ways, each into a fresh Zarr store:

- ``attrib.explain_dataset`` in this process (torch's default threads),
- ``attrib.ray.explain_dataset`` with ``concurrency=1`` (one actor of one CPU),
- ``attrib.ray.explain_dataset`` with ``concurrency="auto"`` (on 2 CPUs: two
  actors of half a CPU each, so the read stage keeps a CPU).

Runs are interleaved and the medians compared (each Ray time includes its
actors' start and model build, part of every job); the cluster is started
once, before timing. Every store is checked equal to the one-process store.

Usage::

    python benchmarks/bench_ray.py [--n 128] [--batch 16] [--repeats 3] [--cpus 2]
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


def resnet18() -> Any:
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    images = np.random.default_rng(0).random((args.n, 3, 224, 224), dtype=np.float32)
    ds = ray.data.from_items([{"image": x} for x in images])
    model = resnet18()
    options: dict[str, Any] = dict(method="gradcam", layer="layer4", progress=False)
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    runs = {
        "one process": lambda out: attrib.explain_dataset(
            model, [images[i:i + args.batch] for i in range(0, args.n, args.batch)], out=out, **options),
        "ray, 1 actor": lambda out: attrib.ray.explain_dataset(
            ds, resnet18, out=out, batch_size=args.batch, concurrency=1, **options),
        "ray, auto": lambda out: attrib.ray.explain_dataset(
            ds, resnet18, out=out, batch_size=args.batch, concurrency="auto", **options),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for repeat in range(args.repeats):
            for k, (name, run) in enumerate(runs.items()):
                out = root / f"{k}-{repeat}.zarr"
                start = time.perf_counter()
                run(out)
                times[name].append(time.perf_counter() - start)
                if k and _files(out) != _files(root / f"0-{repeat}.zarr"):
                    raise SystemExit(f"{name}: the store differs from the one-process store")
        from attrib._dataset._actors import plan_actors

        auto = plan_actors("auto", None, None, [dict(n["Resources"]) for n in ray.nodes() if n["Alive"]])
        print(f"ResNet-18 224², gradcam layer4, {args.n} images in batches of {args.batch}, "
              f"ray.init(num_cpus={args.cpus}); auto = {auto.size} actor(s) of num_cpus={auto.num_cpus}; "
              f"median of {args.repeats} (best), stores equal bit for bit")
        median = {name: statistics.median(t) for name, t in times.items()}
        for name, t in times.items():
            print(f"  {name:13s} {args.n / median[name]:6.1f} img/s  ({args.n / min(t):6.1f} best)  "
                  f"{median[name]:6.2f} s")
        print(f"  auto / 1 actor      {median['ray, 1 actor'] / median['ray, auto']:.3f}x")
        print(f"  auto / one process  {median['one process'] / median['ray, auto']:.3f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
