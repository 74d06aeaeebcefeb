"""The one timing loop of the benchmarks: variants taking turns in every round, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Variant = Callable[[], object]


def interleaved(variants: dict[str, Variant], repeats: int) -> tuple[dict[str, float],
                                                                     dict[str, float]]:
    """(first-call seconds, median seconds) of each variant.

    Each variant is called once first (the warm-up; for JAX its trace and
    compile, hence reported), then ``repeats`` rounds in which all variants
    take turns, so a change in the machine's load hits them alike.
    """
    first: dict[str, float] = {}
    for label, fn in variants.items():
        start = time.perf_counter()
        fn()
        first[label] = time.perf_counter() - start
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(repeats):
        for label, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return first, {label: statistics.median(values) for label, values in times.items()}
