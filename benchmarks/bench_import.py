"""``import attrib`` in fresh processes: the median of 11 (issue 19: under 100 ms).

Run: ``python benchmarks/bench_import.py [--runs 11]``

Each run is a new interpreter (``python -c``) that times ``import attrib`` with
``time.perf_counter`` and checks that no framework (torch, jax, flax,
matplotlib, zarr, ray) was imported. For scale it also times ``import numpy``
alone, the same way, interleaved with the attrib runs. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SNIPPET = """
import sys, time
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
heavy = sorted({{"torch", "jax", "flax", "matplotlib", "zarr", "ray"}} & set(sys.modules))
print(elapsed, ",".join(heavy))
"""


def one(module: str) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(module=module)],
                         capture_output=True, text=True, check=True, env=os.environ).stdout
    seconds, heavy = out.strip().partition(" ")[::2]
    return float(seconds), heavy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"numpy": [], "attrib": []}
    for _ in range(args.runs):
        for module in times:
            seconds, heavy = one(module)
            assert not heavy, f"import {module} imported {heavy}"
            times[module].append(seconds)
    for module, values in times.items():
        print(f"import {module:7s} median of {args.runs} fresh processes: "
              f"{1000 * statistics.median(values):6.1f} ms  "
              f"(min {1000 * min(values):.1f}, max {1000 * max(values):.1f})")


if __name__ == "__main__":
    main()
