"""explain_dataset on the demo scenes: throughput against a hand-written loop, and peak memory.

Two measurements (CPU, the bundled demo CNN, 64×64 scenes):

1. **Throughput**: images per second of ``attrib.explain_dataset`` (writing a
   compressed Zarr store, with thumbnails) against a hand-written loop that
   calls ``attrib.explain`` per batch and keeps the maps in a list, and
   against the same loop saving each batch's maps, logits and uint8
   pictures to disk with ``np.save`` (the least a loop that keeps its
   results does; the disk's cost apart from attrib's). Runs are interleaved
   (loop, saving loop, dataset, ...) and the medians are compared, so load
   from other processes affects all alike (the best of each is printed
   too). ``--dir`` chooses where the stores go (e.g. ``/dev/shm``, a RAM
   disk, to take the disk out).
2. **Peak RSS flat in the dataset's length**: ``explain_dataset`` over 200 and
   over 2,000 scenes, each in a fresh subprocess (its ``VmHWM``); the
   scenes are generated batch by batch, so the data
   never sits in memory as a whole.

Usage::

    python benchmarks/bench_dataset.py [--n 2000] [--batch 64] [--repeats 10] [--method gradcam]
                                       [--dir /dev/shm] [--model resnet18 --size 224]
    python benchmarks/bench_dataset.py --several saliency,guided_backprop,gradcam,guided_gradcam

3. ``--several``: several methods in one ``explain_dataset(method=[...])`` run
   (one forward pass per batch) against one run per method, interleaved.
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
from typing import Any

import numpy as np

import attrib


def scene_batches(n: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n`` demo scenes, generated ``batch`` at a time (NCHW, labels)."""
    for k, start in enumerate(range(0, n, batch)):
        data = attrib.demo_data(min(batch, n - start), seed=10_000 + k)
        yield data.images.transpose(0, 3, 1, 2).copy(), data.labels


def _options(method: str, model_name: str = "demo") -> dict[str, str]:
    if method not in ("gradcam", "guided_gradcam"):
        return {}
    return {"layer": "conv4" if model_name == "demo" else "layer4"}


def _model(name: str) -> Any:
    """The bundled demo CNN, or a torchvision classifier with random weights (eval mode)."""
    if name == "demo":
        return attrib.demo_model("torch")
    import torch
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def random_batches(n: int, batch: int, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n`` random pictures in [0, 1], NCHW at ``size``², with labels, ``batch`` at a time."""
    rng = np.random.default_rng(0)
    for start in range(0, n, batch):
        count = min(batch, n - start)
        yield (rng.random((count, 3, size, size), dtype=np.float32),
               rng.integers(0, 1000, count))


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
    return {"n": n, "peak_rss_mib": _peak_rss_kib() / 1024, "seconds": seconds}


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` survives ``exec``: a child started by a parent holding
    800 MiB reports at least that, whatever it does itself. ``VmHWM`` belongs
    to the address space, which ``exec`` replaces.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def _saving_loop(model: object, batches: list[tuple[np.ndarray, np.ndarray]], method: str,
                 options: dict[str, str], folder: Path) -> None:
    """The hand-written loop that keeps its results on disk: one ``np.save`` per array and batch."""
    for k, (x, _) in enumerate(batches):
        explanation = attrib.explain(model, x, method=method, **options)
        pictures = np.rint(x * np.float32(255)).astype(np.uint8)  # NCHW, as the model takes them
        for name, values in (("maps", explanation.attribution), ("logits", explanation.logits),
                             ("pictures", pictures)):
            np.save(folder / f"{name}-{k}.npy", values)


def throughput(n: int, batch: int, method: str, repeats: int,
               thumbnail: int | None = 112, folder: str | None = None,
               model_name: str = "demo", size: int = 224) -> dict[str, float]:
    """Median (and best) images/s of each arm, over ``repeats`` interleaved runs on ``n`` scenes.

    The arms: ``loop`` (maps kept in a list), ``saving`` (the loop saving to
    ``folder`` with ``np.save``) and ``dataset`` (``explain_dataset`` into a
    store in ``folder``; None: the system's temporary folder). ``model_name``:
    ``"demo"`` (the demo scenes) or a torchvision classifier on random
    ``size``² pictures.
    """
    model = _model(model_name)
    batches = list(scene_batches(n, batch) if model_name == "demo"
                   else random_batches(n, batch, size))
    options = _options(method, model_name)
    attrib.explain(model, batches[0][0], method=method, **options)  # warm-up

    def loop(_: Path) -> None:
        maps = [attrib.explain(model, x, method=method, **options).attribution for x, _ in batches]
        assert sum(len(m) for m in maps) == n

    def saving(place: Path) -> None:
        _saving_loop(model, batches, method, options, place)

    def dataset(place: Path) -> None:
        attrib.explain_dataset(model, batches, method=method, out=place / "maps.zarr",
                               progress=False, thumbnail=thumbnail, **options)

    arms = {"loop": loop, "saving": saving, "dataset": dataset}
    rates: dict[str, list[float]] = {name: [] for name in arms}
    cpu: dict[str, list[float]] = {name: [] for name in arms}  # CPU s of the process (all threads)
    for _ in range(repeats):
        for name, arm in arms.items():
            place = Path(tempfile.mkdtemp(dir=folder))
            start, cpu_start = time.perf_counter(), time.process_time()
            arm(place)
            rates[name].append(n / (time.perf_counter() - start))
            cpu[name].append(time.process_time() - cpu_start)
            shutil.rmtree(place)
    result = {f"{name}_img_per_s": float(np.median(values)) for name, values in rates.items()}
    result.update({f"{name}_cpu_ms_per_img": 1000 * float(np.median(values)) / n
                   for name, values in cpu.items()})
    result["ratio"] = result["dataset_img_per_s"] / result["loop_img_per_s"]
    result["best_ratio"] = max(rates["dataset"]) / max(rates["loop"])
    result["saving_ratio"] = result["saving_img_per_s"] / result["loop_img_per_s"]
    result["dataset_to_saving"] = result["dataset_img_per_s"] / result["saving_img_per_s"]
    return result


def several(n: int, batch: int, methods: list[str], repeats: int,
            folder: str | None = None) -> dict[str, float]:
    """Median seconds of ``methods`` in one ``explain_dataset(method=[...])`` run against one run
    per method, over ``repeats`` interleaved rounds (demo scenes); every map checked bit-equal."""
    model = _model("demo")
    batches = list(scene_batches(n, batch))
    options = {m: _options(m) for m in methods if _options(m)}
    times: dict[str, list[float]] = {"separate": [], "one": []}
    for _ in range(repeats):
        place = Path(tempfile.mkdtemp(dir=folder))
        start = time.perf_counter()
        alone = {m: attrib.explain_dataset(model, batches, method=m, out=place / f"{m}.zarr",
                                           progress=False, **options.get(m, {})) for m in methods}
        times["separate"].append(time.perf_counter() - start)
        start = time.perf_counter()
        together = attrib.explain_dataset(model, batches, method=methods, options=options,
                                          out=place / "all.zarr", progress=False)
        times["one"].append(time.perf_counter() - start)
        for m in methods:
            for name, array in together.maps(m).items():
                assert np.array_equal(array[:], alone[m][name][:]), (m, name)
        shutil.rmtree(place)
    result = {name: float(np.median(values)) for name, values in times.items()}
    result["ratio"] = result["one"] / result["separate"]
    return result


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
    parser.add_argument("--dir", default=None,
                        help="folder for the stores and saved arrays (default: the temporary folder)")
    parser.add_argument("--model", default="demo",
                        help="throughput on 'demo' (default) or a torchvision classifier, e.g. resnet18")
    parser.add_argument("--size", type=int, default=224, help="picture side for --model other than demo")
    parser.add_argument("--several", metavar="M,M,...",
                        help="only: these methods in one explain_dataset run against one run each")
    parser.add_argument("--rss-run", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--no-thumbnails", action="store_true",
                        help="explain_dataset(thumbnail=None): keep no pictures for the gallery")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.several:
        methods = [m.strip() for m in args.several.split(",") if m.strip()]
        import torch

        result = several(args.throughput_n, args.batch, methods, args.repeats, args.dir)
        print(f"{len(methods)} methods ({', '.join(methods)}), {args.throughput_n} scenes, batch "
              f"{args.batch}, {torch.get_num_threads()} torch threads, median of {args.repeats} "
              f"interleaved rounds, every map bit-equal:")
        print(f"  one explain_dataset per method {result['separate']:.3f} s, one explain_dataset "
              f"of all {result['one']:.3f} s, ratio {result['ratio']:.3f}")
        return
    if args.rss_run:
        print(json.dumps(rss_run(args.rss_run, args.batch, args.method)))
        return
    if not args.skip_throughput:
        result = throughput(args.throughput_n, args.batch, args.method, args.repeats,
                            None if args.no_thumbnails else 112, args.dir, args.model, args.size)
        import torch

        what = "scenes" if args.model == "demo" else f"{args.size}² pictures on {args.model}"
        print(f"throughput ({args.method}, {args.throughput_n} {what}, batch {args.batch}, "
              f"{torch.get_num_threads()} torch threads"
              f"{', no thumbnails' if args.no_thumbnails else ''}, writing to "
              f"{args.dir or tempfile.gettempdir()}, median of {args.repeats} interleaved runs):")
        for name, what in (("loop", "hand-written loop, maps in memory"),
                           ("saving", "hand-written loop saving with np.save"),
                           ("dataset", "explain_dataset")):
            print(f"  {what:40s} {result[f'{name}_img_per_s']:6.0f} img/s, "
                  f"CPU {result[f'{name}_cpu_ms_per_img']:.3f} ms/img (all threads)")
        print(f"  explain_dataset / loop {result['ratio']:.3f} (best against best "
              f"{result['best_ratio']:.3f}); saving loop / loop {result['saving_ratio']:.3f}; "
              f"explain_dataset / saving loop {result['dataset_to_saving']:.3f}")
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
