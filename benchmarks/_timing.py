"""The one timing loop of the benchmarks: variants taking turns in every round, medians.

Also the two tools for telling a library's cost from the C allocator's on Linux
(see "Page faults" in ``docs/benchmarks.md``): the minor page faults of each
call (:func:`minor_faults`), and :func:`steady_allocator`, which re-runs the
script with glibc's ``malloc`` told to keep the memory it frees.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

Variant = Callable[[], object]

#: glibc ``malloc`` settings that keep freed memory in the process: no ``mmap`` for
#: large blocks (each of them is returned to the kernel when freed and faulted in again,
#: page by page, when next allocated) and no trimming of the heap's top
STEADY_MALLOC: dict[str, str] = {"MALLOC_MMAP_MAX_": "0",
                                 "MALLOC_TRIM_THRESHOLD_": str(2**62)}


def minor_faults() -> int:
    """Minor page faults of this process so far (``getrusage``'s ``ru_minflt``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def steady_allocator(enabled: bool) -> None:
    """If ``enabled``, re-run this script (same arguments) under :data:`STEADY_MALLOC`.

    glibc reads these settings once, at start-up, so the process is replaced
    (``os.execve``); does nothing when they are already set. Every variant of
    the run (and every subprocess it starts) gets the same allocator.
    """
    if not enabled or all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})


def interleaved(variants: dict[str, Variant], repeats: int,
                faults: dict[str, float] | None = None) -> tuple[dict[str, float],
                                                               dict[str, float]]:
    """(first-call seconds, median seconds) of each variant.

    Each variant is called once first (the warm-up; for JAX its trace and
    compile, hence reported), then ``repeats`` rounds in which all variants
    take turns, so a change in the machine's load hits them alike. If
    ``faults`` is given, it receives each variant's median minor page faults
    per timed call.
    """
    first: dict[str, float] = {}
    for label, fn in variants.items():
        start = time.perf_counter()
        fn()
        first[label] = time.perf_counter() - start
    times: dict[str, list[float]] = {label: [] for label in variants}
    counts: dict[str, list[int]] = {label: [] for label in variants}
    for _ in range(repeats):
        for label, fn in variants.items():
            before = minor_faults()
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
            counts[label].append(minor_faults() - before)
    if faults is not None:
        faults.update({label: statistics.median(values) for label, values in counts.items()})
    return first, {label: statistics.median(values) for label, values in times.items()}
