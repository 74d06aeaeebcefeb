"""JAX first call in a cold process against a second process that finds the compilation cache.

Run: ``python benchmarks/jax_cache.py [--models demo resnet50] [--method guided_backprop]``

For each model it starts fresh Python processes (so nothing compiled stays in
memory) sharing one new, empty cache folder: the first runs with the cache
empty (cold), the next ones find the programs the first wrote (warm). Each
child prints the seconds of its first ``attrib.explain`` call (trace, compile
or load, run) and of its second (steady state), and the parent prints the
medians. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def child(model_name: str, method: str, batch: int, cache: str) -> None:
    import jax
    import numpy as np

    import attrib
    import attrib_jax

    if cache:
        attrib_jax.enable_compilation_cache(cache)
    if model_name == "demo":
        model = attrib.demo_model("jax")
        x = np.asarray(attrib.demo_data(batch).images, dtype=np.float32)
        layer = "conv4"
    else:
        module = getattr(attrib_jax, model_name)(num_classes=1000)
        variables = module.init(jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32))
        model = (module, variables)
        x = np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype(np.float32)
        layer = "layer4"
    from attrib._registry import default_registry

    needs_layer = default_registry().method(method).needs_layer
    kwargs = {"layer": layer} if needs_layer else {}
    times, cpu = [], []
    for _ in range(2):
        start, start_cpu = time.perf_counter(), time.process_time()
        attrib.explain(model, x, method=method, target=1, **kwargs)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(json.dumps({"first": times[0], "second": times[1], "first_cpu": cpu[0]}))


def run(model_name: str, method: str, batch: int, cache: str) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", model_name, "--method", method,
         "--batch", str(batch), "--cache", cache],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "resnet50"])
    parser.add_argument("--method", default="guided_backprop")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.method, args.batch, args.cache)
        return
    print(f"{args.method}, batch {args.batch}: seconds of the first explain call in a new process")
    print("(cpu: CPU seconds of that call, all threads; less sensitive to a busy machine)")
    print(f"{'model':10} {'no cache':>9} {'cold':>7} {'warm':>7} {'warm/cold':>9} "
          f"{'cold cpu':>8} {'warm cpu':>8} {'steady':>7} {'process cold':>12} "
          f"{'process warm':>12}")
    for name in args.models:
        nocache = run(name, args.method, args.batch, "")
        with tempfile.TemporaryDirectory() as folder:
            cold = run(name, args.method, args.batch, folder)
            warm = [run(name, args.method, args.batch, folder) for _ in range(args.warm_runs)]
        first = statistics.median(w["first"] for w in warm)
        steady = statistics.median(w["second"] for w in warm)
        process = statistics.median(w["process"] for w in warm)
        first_cpu = statistics.median(w["first_cpu"] for w in warm)
        print(f"{name:10} {nocache['first']:9.2f} {cold['first']:7.2f} {first:7.2f} "
              f"{first / cold['first']:9.2f} {cold['first_cpu']:8.2f} {first_cpu:8.2f} "
              f"{steady:7.3f} {cold['process']:12.2f} {process:12.2f}")


if __name__ == "__main__":
    main()
