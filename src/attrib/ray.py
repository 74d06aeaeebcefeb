"""Explain a Ray Data dataset on a Ray cluster into the same Zarr store as :func:`attrib.explain_dataset`.

:class:`attrib.BatchExplainer` runs as a ``map_batches`` actor (each actor
builds its model once); the driver iterates the explained batches in order
and writes them with the same writer as the one-process run, so the two
stores are equal, file for file. ``ray[data]`` is the optional extra
``attrib[ray]``; this module imports ray only when :func:`explain_dataset`
is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._dataset._actors import plan_actors
from ._dataset._explainer import IMAGE_KEY, LABEL_KEY, BatchExplainer, checksums
from ._dataset._run import progress_bar, with_class_names, write_outputs
from ._dataset._store import MapStore
from ._errors import argument_error, shown

__all__ = ["explain_dataset"]


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
    method: str,
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
    **method_options: Any,
) -> MapStore:
    """Explain every row of a Ray Data dataset with ``method``; write the maps to a Zarr store.

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
    method, target, layer, backend, objective, thumbnail, store_inputs, class_names, **method_options
        As :func:`attrib.explain_dataset`.
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
    options = dict(method=method, target=target, layer=layer, backend=backend,
                   objective=objective, thumbnail=thumbnail, store_inputs=store_inputs,
                   **method_options)
    # one local explainer: checks every argument before the cluster does any work, gives the
    # settings, and checks a resumed store's weights
    local = BatchExplainer(model_factory, **options)
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
    ds = ds.select_columns(keep).rename_columns(renamed) if any(k != v for k, v in renamed.items()) \
        else ds.select_columns(keep)
    # blocks of exactly batch_size rows: every actor batch is the one-process run's batch (a
    # model's floats can depend on the batch's size, e.g. torch's kernels for one sample)
    ds = ds.repartition(target_num_rows_per_block=batch_size, strict=True)
    explained = ds.map_batches(BatchExplainer, fn_constructor_args=(model_factory,),
                               fn_constructor_kwargs=options, batch_size=batch_size,
                               batch_format="numpy", compute=data.ActorPoolStrategy(size=plan.size),
                               **plan.remote_args())
    context = data.DataContext.get_current()
    keep_order = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # the store is written in the dataset's order
    try:
        with progress_bar(None, f"attrib.ray ({method})", progress) as bar:
            batches = ({k: np.asarray(v) for k, v in batch.items()}
                       for batch in explained.iter_batches(batch_size=batch_size, batch_format="numpy"))
            write_outputs(store, batches, bar, first_batch=first, offset=offset)
    finally:
        context.execution_options.preserve_order = keep_order
    store.finish()
    return store


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
