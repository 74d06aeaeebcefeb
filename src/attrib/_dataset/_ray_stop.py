"""Stop a Ray Data execution from the driver, also before its first batch (imports ray.data).

Ray Data has no public call that stops a running execution, and it keeps the
executor on the dataset (``Dataset._current_executor``) only once the first
batch is out. It does run the execution callbacks listed on the dataset's
``DataContext.custom_execution_callback_classes`` (the hook it also reads
from ``RAY_DATA_EXECUTION_CALLBACKS``) at every scheduling step:
:class:`StopWhenRequested` raises there once its run asked to stop, and Ray
Data fails the run through its own error path (releasing its actors and
tasks) and hands the error to the iterator. Imported by :mod:`attrib.ray`
only; a module-level class, so that the context pickles to Ray's workers.
"""

from __future__ import annotations

import threading
from typing import Any

from ray.data._internal.execution.execution_callback import ExecutionCallback

__all__ = ["StopWhenRequested", "bind"]

_thread = threading.local()


def bind(requested: threading.Event) -> None:
    """Executions started from this thread from now on stop once ``requested`` is set."""
    _thread.requested = requested


class StopWhenRequested(ExecutionCallback):  # type: ignore[misc]
    """Raises at the executor's next scheduling step once its run asked to stop.

    Ray Data makes one instance per execution, in the thread that starts it:
    the instance takes that thread's event (:func:`bind`); in any other
    thread it does nothing.
    """

    def __init__(self) -> None:
        self._requested: threading.Event | None = getattr(_thread, "requested", None)

    def on_execution_step(self, executor: Any) -> None:
        if self._requested is not None and self._requested.is_set():
            raise RuntimeError("attrib.ray stopped this run (see the AttribError it raised)")
