"""Explain a Ray Data dataset on a Ray cluster into the same Zarr store as :func:`attrib.explain_dataset`.

:class:`attrib.BatchExplainer` runs as a ``map_batches`` actor (each actor
builds its model once); the driver iterates the explained batches in order
and writes them with the same writer as the one-process run, so the two
stores are equal, file for file. ``ray[data]`` is the optional extra
``attrib[ray]``; this module imports ray only when :func:`explain_dataset`
is called.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._dataset._actors import ActorPlan, plan_actors
from ._dataset._explainer import IMAGE_KEY, LABEL_KEY, BatchExplainer, checksums, described
from ._dataset._run import progress_bar, with_class_names, write_outputs
from ._dataset._store import MapStore
from ._errors import AttribError, argument_error, shown

__all__ = ["explain_dataset"]

#: Seconds without a new batch after which the driver checks that the alive nodes still hold
#: the actors' plan (a node lost for good leaves Ray Data waiting forever, silently).
STALL_CHECK_S = 5.0
#: Seconds the capacity must stay lost (no replacement node joined) before the run stops.
LOST_GRACE_S = 30.0
#: Seconds the driver waits for Ray Data's execution to stop after an error.
STOP_WAIT_S = 10.0


def _ray_data() -> Any:
    try:
        import ray.data
    except ImportError as error:
        raise argument_error("ds", "ray[data] installed", shown("no ray"),
                             "pip install 'attrib[ray]'") from error
    return ray.data


def explain_dataset(
    ds: Any,
    model_factory: Callable[[], Any],
    *,
    method: str | Sequence[str],
    out: Any,
    batch_size: int = 64,
    concurrency: int | str = 1,
    target: Any = None,
    layer: str | None = None,
    backend: str | None = None,
    objective: str = "logit",
    thumbnail: int | None = 112,
    store_inputs: bool = False,
    class_names: Any = None,
    progress: bool = True,
    image_column: str = IMAGE_KEY,
    label_column: str | None = LABEL_KEY,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    batches_per_chunk: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **method_options: Any,
) -> MapStore:
    """Explain every row of a Ray Data dataset with ``method`` (or several); write the maps to a Zarr store.

    The same store as :func:`attrib.explain_dataset` over the same samples in
    batches of ``batch_size`` (same layout, settings and bytes), so either
    run can resume the other's store. Batches that the store already holds
    as a completed prefix are not recomputed (the dataset is split after
    them, which materialises it once).

    Parameters
    ----------
    ds : ray.data.Dataset
        Rows with the input under ``image_column`` (an array in the model's
        layout, e.g. (C, H, W) for torch) and, optionally, an integer label
        under ``label_column``.
    model_factory : callable of no arguments
        Returns the model; called once in each actor (ship a function, not a
        loaded model).
    method, target, layer, backend, objective, thumbnail, store_inputs, class_names, options, **method_options
        As :func:`attrib.explain_dataset`: ``method`` a name or a list of
        names (each actor explains a batch with all of them in one call).
    out : str or path-like
        The Zarr store, created if missing.
    batch_size : int
        Rows per batch (a chunk of the store holds a whole number of batches).
    concurrency : int or "auto"
        Number of actors; ``"auto"``: one per CPU of the cluster (with
        ``num_gpus``: as many as its GPUs hold), fewer where that would leave
        Ray Data's read stage no CPU.
    progress : bool
        A tqdm bar with images per second.
    num_cpus, num_gpus : float, optional
        Resources of each actor (Ray's ``map_batches`` arguments), checked
        against ``ray.nodes()`` before any work. ``num_cpus`` omitted: an
        equal share of all the cluster's CPUs but one, at most 1 (at most
        0.25 for GPU actors), so that reading always has a CPU; 0 where no
        share leaves one.
    batches_per_chunk : int, optional
        As :func:`attrib.explain_dataset` (the same value gives the same store).

    Returns
    -------
    MapStore

    Raises
    ------
    AttribError
        Bad arguments; resources the cluster lacks, or a ``num_cpus`` that
        leaves no CPU to read the dataset (the job would wait forever); a
        resumed store made with other settings, other data on its first
        batch, or a model whose logits on it differ (other weights).
    """
    data = _ray_data()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise argument_error("batch_size", "a positive int", batch_size)
    if not isinstance(ds, data.Dataset):
        raise argument_error("ds", "a ray.data.Dataset", shown(type(ds).__name__),
                             "For arrays or a DataLoader use attrib.explain_dataset.")
    columns = ds.columns() or []
    if image_column not in columns:
        raise argument_error("image_column", f"a column of the dataset ({columns})", image_column)
    has_labels = label_column is not None and label_column in columns
    if target == "labels" and not has_labels:
        raise argument_error("label_column", f"a column of the dataset ({columns}) for target='labels'",
                             label_column)
    arguments = dict(method=method, target=target, layer=layer, backend=backend,
                     objective=objective, thumbnail=thumbnail, store_inputs=store_inputs,
                     options=options, **method_options)
    # one local explainer: checks every argument before the cluster does any work, gives the
    # settings, and checks a resumed store's weights
    local = BatchExplainer(model_factory, **arguments)
    plan = plan_actors(concurrency, num_cpus, num_gpus, _alive_nodes())
    store = MapStore.create_or_resume(out, with_class_names(local.settings, class_names), batches_per_chunk)
    first, offset = _done_prefix(store)
    if offset:
        head, ds = ds.split_at_indices([offset])  # materialised by the split, so counting is cheap
        _check_resumed(store, local, head, image_column)
        if ds.count() == 0:  # every row is in the store already
            store.finish()
            return store
    del local  # the actors build their own models
    renamed = {image_column: IMAGE_KEY, **({label_column: LABEL_KEY} if has_labels else {})}
    keep = list(renamed)
    # only when needed: a projection is one Ray task per block (from_items makes a block per row)
    if set(columns) != set(keep):
        ds = ds.select_columns(keep)
    if any(k != v for k, v in renamed.items()):
        ds = ds.rename_columns(renamed)
    # blocks of exactly batch_size rows: every actor batch is the one-process run's batch (a
    # model's floats can depend on the batch's size, e.g. torch's kernels for one sample)
    ds = ds.repartition(target_num_rows_per_block=batch_size, strict=True)
    explained = ds.map_batches(BatchExplainer, fn_constructor_args=(model_factory,),
                               fn_constructor_kwargs=arguments, batch_size=batch_size,
                               batch_format="numpy", compute=data.ActorPoolStrategy(size=plan.size),
                               **plan.remote_args())
    # The store is written in the dataset's order: Ray Data hands the batches on in the order of
    # their tasks only with preserve_order, read from the *dataset's own* DataContext (a copy of
    # the current one, taken when the user made the dataset; setting DataContext.get_current()
    # here did nothing, and after a retry or a lost node batches came in order of completion and
    # were written at other rows). The context is shared with the user's dataset: put it back.
    context = explained.context
    keep_order = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    stop = _Stop(context)
    try:
        with progress_bar(None, f"attrib.ray ({described(method)})", progress) as bar:
            batches = ({k: np.asarray(v) for k, v in batch.items()}
                       for batch in _watched(explained, batch_size, plan, stop))
            write_outputs(store, batches, bar, first_batch=first, offset=offset)
    finally:
        context.execution_options.preserve_order = keep_order
        stop.remove()
    store.finish()
    return store


class _Stop:
    """Stops a Ray Data execution from the driver's thread, also before its first batch.

    Puts :class:`attrib._dataset._ray_stop.StopWhenRequested` on the
    dataset's own context (see there why); where the installed Ray Data
    lacks that hook, shuts the executor down directly once a batch is out.
    """

    def __init__(self, context: Any) -> None:
        self.requested = threading.Event()
        self._context = context
        self._keep: Any = None
        self._bind: Callable[[threading.Event], None] | None = None
        try:
            from ._dataset._ray_stop import StopWhenRequested, bind
        except ImportError:  # pragma: no cover - older Ray Data
            return
        if not isinstance(getattr(context, "custom_execution_callback_classes", None), list):
            return  # pragma: no cover - older Ray Data
        self._keep = context.custom_execution_callback_classes
        # a new list: the user's dataset shares the context, and copies of it may share the list
        context.custom_execution_callback_classes = [*self._keep, StopWhenRequested]
        self._bind = bind

    def bind_thread(self) -> None:
        """Executions started from the calling thread stop on :meth:`request`."""
        if self._bind is not None:
            self._bind(self.requested)

    def request(self, explained: Any) -> None:
        """Stop ``explained``'s execution (at the executor's next step; nothing once it ended)."""
        self.requested.set()
        if self._bind is None:  # pragma: no cover - older Ray Data: only once a batch is out
            executor = getattr(explained, "_current_executor", None)
            if executor is not None:
                executor.shutdown(force=True)

    def remove(self) -> None:
        """Put the dataset's context back as found."""
        if self._bind is not None:
            self._context.custom_execution_callback_classes = self._keep


def _watched(explained: Any, batch_size: int, plan: ActorPlan, stop: _Stop) -> Iterator[dict[str, Any]]:
    """``explained``'s batches in order; an AttribError if the cluster lost the capacity they need.

    Ray Data's iterator is pulled in a thread. While no batch arrives, the
    alive nodes are checked every :data:`STALL_CHECK_S` seconds against
    ``plan``; once they have not held it for :data:`LOST_GRACE_S` seconds (a
    node removed and none joined) the run stops with an error, also when no
    batch ever came out: Ray Data's execution is stopped (``stop``), the
    batches written so far stay in the store, and the same call resumes
    from them.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)

    def put(item: tuple[str, Any]) -> bool:
        while not stop.requested.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        stop.bind_thread()
        try:
            for batch in explained.iter_batches(batch_size=batch_size, batch_format="numpy"):
                if not put(("batch", batch)):
                    return
        except BaseException as error:  # handed to the driver's thread
            put(("error", error))
            return
        put(("end", None))

    thread = threading.Thread(target=pull, name="attrib.ray batches", daemon=True)
    thread.start()
    lost_since: float | None = None
    try:
        while True:
            try:
                kind, value = items.get(timeout=STALL_CHECK_S)
            except queue.Empty:
                lost = _lost_capacity(plan)
                if lost is None:
                    lost_since = None
                    continue
                lost_since = time.monotonic() if lost_since is None else lost_since
                if time.monotonic() - lost_since >= LOST_GRACE_S:
                    raise argument_error(
                        "ds", "a cluster that keeps the resources the run was planned for",
                        shown(f"nodes lost mid-run: {lost}; no batch for "
                              f"{time.monotonic() - lost_since + STALL_CHECK_S:.0f} s"),
                        "The batches written so far are in the store: add nodes (or lower "
                        "concurrency / num_cpus) and call explain_dataset again with the same "
                        "out= to resume.") from None
                continue
            lost_since = None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:  # after an error here, Ray Data's execution is stopped too
        stop.request(explained)
        thread.join(timeout=STOP_WAIT_S)


def _lost_capacity(plan: ActorPlan) -> str | None:
    """None if the alive nodes still hold ``plan`` with a CPU to read; else what is missing."""
    nodes = _alive_nodes()
    cpus = sum(float(node.get("CPU", 0.0)) for node in nodes)
    try:
        plan_actors(plan.size, plan.num_cpus, plan.num_gpus, nodes)
    except AttribError:
        return (f"{len(nodes)} alive node(s) with {cpus:g} CPUs cannot run {plan.size} actor(s) "
                f"of num_cpus={plan.num_cpus:g} and leave a CPU to read the dataset")
    if cpus < 1.0:
        return f"{len(nodes)} alive node(s) with {cpus:g} CPUs leave none to read the dataset"
    return None


def _alive_nodes() -> list[dict[str, float]]:
    """Resources of each alive node of the cluster (starting a local one, as Ray Data would)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def _check_resumed(store: MapStore, local: BatchExplainer, head: Any, image_column: str) -> None:
    """Refuse a resumed run whose first stored batch has other data, or whose model other weights.

    ``head`` holds the rows the store has (the one-process run checks every
    skipped batch's data and the first one's logits; here the first batch's).
    """
    done = store.completed(0)
    assert done is not None  # an offset > 0 means batch 0 is complete
    images = np.asarray(head.limit(done[1]).take_batch(done[1], batch_format="numpy")[image_column])
    store.check_batch(0, 0, checksums(images))
    store.check_logits(0, local.logits(images))


def _done_prefix(store: MapStore) -> tuple[int, int]:
    """``(batches, rows)`` of the completed batches that start the store with no gap."""
    batches, rows = 0, 0
    while (done := store.completed(batches)) is not None and done[0] == rows:
        batches, rows = batches + 1, rows + done[1]
    return batches, rows
