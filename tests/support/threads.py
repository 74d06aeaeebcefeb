"""Running test jobs in threads released at once (the concurrency tests of every backend)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_in_threads(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run every job in its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
