"""explain_dataset on the demo scenes: throughput against a hand-written loop, and peak memory.

Two measurements (CPU, the bundled demo CNN, 64×64 scenes):

1. **Throughput**: images per second of ``attrib.explain_dataset`` (writing a
   compressed Zarr store, with thumbnails) against a hand-written loop that
   calls ``attrib.explain`` per batch and keeps the maps in a list. Runs
   are interleaved (loop, dataset, loop, dataset, ...) and the medians are
   compared, so load from other processes affects both alike (the best of
   each is printed too).
2. **Peak RSS flat in the dataset's length**: ``explain_dataset`` over 200 and
   over 2,000 scenes, each in a fresh subprocess (``resource.getrusage``'s
   ``ru_maxrss``); the scenes are generated batch by batch, so the data
   never sits in memory as a whole.

Usage::

    python benchmarks/bench_dataset.py [--n 2000] [--batch 64] [--repeats 10] [--method gradcam]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import attrib


def scene_batches(n: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n`` demo scenes, generated ``batch`` at a time (NCHW, labels)."""
    for k, start in enumerate(range(0, n, batch)):
        data = attrib.demo_data(min(batch, n - start), seed=10_000 + k)
        yield data.images.transpose(0, 3, 1, 2).copy(), data.labels


def _options(method: str) -> dict[str, str]:
    return {"layer": "conv4"} if method in ("gradcam", "guided_gradcam") else {}


def rss_run(n: int, batch: int, method: str) -> dict[str, float]:
    """One explain_dataset run in this process; peak RSS in MiB (call in a fresh process)."""
    model = attrib.demo_model("torch")
    out = Path(tempfile.mkdtemp()) / "maps.zarr"
    start = time.perf_counter()
    store = attrib.explain_dataset(model, scene_batches(n, batch), method=method, out=out,
                                   progress=False, **_options(method))
    seconds = time.perf_counter() - start
    assert len(store) == n
    shutil.rmtree(out.parent)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"n": n, "peak_rss_mib": peak_kib / 1024, "seconds": seconds}


def throughput(n: int, batch: int, method: str, repeats: int,
               thumbnail: int | None = 112) -> dict[str, float]:
    """Median (and best) images/s of each, over ``repeats`` interleaved runs on ``n`` scenes."""
    model = attrib.demo_model("torch")
    batches = list(scene_batches(n, batch))
    options = _options(method)
    attrib.explain(model, batches[0][0], method=method, **options)  # warm-up
    loop, dataset = [], []
    loop_cpu, dataset_cpu = [], []  # CPU seconds of the whole process (every thread) per run
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        maps = [attrib.explain(model, x, method=method, **options).attribution for x, _ in batches]
        loop.append(n / (time.perf_counter() - start))
        loop_cpu.append(time.process_time() - cpu)
        assert sum(len(m) for m in maps) == n
        del maps
        out = Path(tempfile.mkdtemp()) / "maps.zarr"
        start, cpu = time.perf_counter(), time.process_time()
        attrib.explain_dataset(model, batches, method=method, out=out, progress=False,
                               thumbnail=thumbnail, **options)
        dataset.append(n / (time.perf_counter() - start))
        dataset_cpu.append(time.process_time() - cpu)
        shutil.rmtree(out.parent)
    median = float(np.median(dataset)) / float(np.median(loop))
    return {"loop_img_per_s": float(np.median(loop)), "dataset_img_per_s": float(np.median(dataset)),
            "ratio": median, "best_ratio": max(dataset) / max(loop),
            "loop_cpu_ms_per_img": 1000 * float(np.median(loop_cpu)) / n,
            "dataset_cpu_ms_per_img": 1000 * float(np.median(dataset_cpu)) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--throughput-n", type=int, default=2000,
                        help="scenes per throughput run")
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both arms (default: torch's own choice)")
    parser.add_argument("--rss-run", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--no-thumbnails", action="store_true",
                        help="explain_dataset(thumbnail=None): keep no pictures for the gallery")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.rss_run:
        print(json.dumps(rss_run(args.rss_run, args.batch, args.method)))
        return
    if not args.skip_throughput:
        result = throughput(args.throughput_n, args.batch, args.method, args.repeats,
                            None if args.no_thumbnails else 112)
        import torch

        print(f"throughput ({args.method}, {args.throughput_n} scenes, batch {args.batch}, "
              f"{torch.get_num_threads()} torch threads"
              f"{', no thumbnails' if args.no_thumbnails else ''}, median of "
              f"{args.repeats} interleaved runs): hand-written loop "
              f"{result['loop_img_per_s']:.0f} img/s, explain_dataset "
              f"{result['dataset_img_per_s']:.0f} img/s, ratio {result['ratio']:.3f} "
              f"(best against best {result['best_ratio']:.3f}); CPU per image (all threads, median): "
              f"loop {result['loop_cpu_ms_per_img']:.3f} ms, explain_dataset "
              f"{result['dataset_cpu_ms_per_img']:.3f} ms, ratio "
              f"{result['loop_cpu_ms_per_img'] / result['dataset_cpu_ms_per_img']:.3f}")
    if args.skip_rss:
        return
    peaks = {}
    for n in (n for n in (args.n // 10, args.n)):
        command = [sys.executable, __file__, "--rss-run", str(n), "--batch", str(args.batch),
                   "--method", args.method]
        peaks[n] = json.loads(subprocess.run(command, check=True, capture_output=True,
                                             text=True).stdout.strip().splitlines()[-1])
        print(f"peak RSS over {n} scenes: {peaks[n]['peak_rss_mib']:.1f} MiB "
              f"({peaks[n]['seconds']:.1f} s)")
    small, large = (peaks[n]["peak_rss_mib"] for n in sorted(peaks))
    print(f"peak RSS ratio {max(peaks)}/{min(peaks)} scenes: {large / small:.3f}")


if __name__ == "__main__":
    main()
