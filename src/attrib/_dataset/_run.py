"""``attrib.explain_dataset``: explain every batch of an iterable into a Zarr store, resumably."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .._errors import AttribTypeError, argument_error, shown
from ._explainer import IMAGE_KEY, LABEL_KEY, BatchExplainer, checksums, described
from ._store import MapStore

__all__ = ["explain_dataset", "split_batch", "progress_bar", "write_outputs", "with_class_names",
           "flushed"]


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(images, labels or None)`` of one item of ``batches``.

    An item is a batch of inputs (array or tensor), an ``(images, labels)``
    pair (tuple or list of two, as a torch ``DataLoader`` over a labelled
    dataset yields), or a dict with ``"image"`` (and ``"label"``).
    """
    if isinstance(batch, Mapping):
        if IMAGE_KEY not in batch:
            raise argument_error("batches", f"dicts with the inputs under {IMAGE_KEY!r}",
                                 shown(f"a dict with keys {sorted(batch)}"))
        return batch[IMAGE_KEY], batch.get(LABEL_KEY)
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise argument_error("batches", "batches that are arrays or (images, labels) pairs",
                                 shown(f"a {type(batch).__name__} of {len(batch)} items"))
        return batch[0], batch[1]
    if not hasattr(batch, "shape"):
        raise argument_error("batches", "batches that are arrays or tensors, (images, labels) "
                                        "pairs or dicts", shown(type(batch).__name__),
                             kind=AttribTypeError)
    return batch, None


def _total(batches: Any) -> int | None:
    """Number of samples, when it can be known without iterating (for the progress bar)."""
    dataset = getattr(batches, "dataset", None)  # a torch DataLoader
    if dataset is not None and hasattr(dataset, "__len__") and getattr(batches, "drop_last", False) is False:
        return len(dataset)
    if isinstance(batches, (list, tuple)):
        try:
            return sum(len(split_batch(b)[0]) for b in batches)
        except Exception:
            return None
    return None


def progress_bar(total: int | None, description: str, enabled: bool) -> Any:
    """A tqdm bar counting images (its rate reads images/s) on stderr; inert when disabled."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


@contextmanager
def flushed(store: MapStore) -> Iterator[None]:
    """Write every batch ``store`` keeps (:meth:`MapStore.flush`) on leaving, also on an error.

    A flush that fails while an error is on its way out never replaces it:
    the original error is raised, with a note (``add_note``) naming the
    flush's error.
    """
    try:
        yield
    except BaseException as error:
        try:
            store.flush()
        except Exception as flush_error:
            error.add_note(f"attrib: writing the batches finished before this error failed too "
                           f"({type(flush_error).__name__}: {flush_error}); the store keeps the "
                           f"batches written earlier, and the same call resumes from them.")
        raise
    store.flush()


def write_outputs(store: MapStore, outputs: Iterable[Mapping[str, np.ndarray]], bar: Any, *,
                  first_batch: int = 0, offset: int = 0) -> int:
    """Write explained batches in order (batch ``first_batch`` at row ``offset``); return the rows.

    Every batch taken is written (:meth:`MapStore.flush`) before this returns or raises.
    """
    with flushed(store):
        for k, out in enumerate(outputs, start=first_batch):
            n = len(out["checksums"])
            if store.completed(k) is None:
                store.add_batch(k, offset, out)
            else:
                store.check_batch(k, offset, np.asarray(out["checksums"]))
            offset += n
            bar.update(n)
    return offset


def _explained(explainer: BatchExplainer, store: MapStore, batches: Iterable[Any], bar: Any
               ) -> Iterator[tuple[int, int, dict[str, np.ndarray] | None]]:
    """Each batch's index, first row and arrays (None: done before, checked and skipped)."""
    offset = 0
    weights_checked = False
    for k, batch in enumerate(batches):
        images, labels = split_batch(batch)
        n = len(images)
        if n == 0:
            raise argument_error("batches", "batches of at least one sample", shown(f"batch {k} is empty"))
        if store.completed(k) is not None:  # done before: check it is the same data, skip it
            store.check_batch(k, offset, checksums(np.asarray(images)))
            if not weights_checked:  # and, once, that the model is the one that made it
                store.check_logits(k, explainer.logits(images))
                weights_checked = True
            yield k, offset, None
        else:
            yield k, offset, explainer({IMAGE_KEY: images, LABEL_KEY: labels})
        offset += n
        bar.update(n)


def with_class_names(settings: dict[str, Any], class_names: Any) -> dict[str, Any]:
    """``settings`` with ``class_names`` (a list of str, or None) added."""
    if class_names is not None and (isinstance(class_names, str) or
                                    not all(isinstance(c, str) for c in class_names)):
        raise argument_error("class_names", "a sequence of class names (str)", class_names)
    return {**settings, "class_names": None if class_names is None else list(class_names)}


def explain_dataset(
    model: Any,
    batches: Iterable[Any],
    *,
    method: str | Sequence[str],
    out: Any,
    target: Any = None,
    layer: str | None = None,
    backend: str | None = None,
    objective: str = "logit",
    thumbnail: int | None = 112,
    store_inputs: bool = False,
    class_names: Any = None,
    progress: bool = True,
    batches_per_chunk: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **method_options: Any,
) -> MapStore:
    """Explain every batch of ``batches`` with ``method`` (or several) and stream the maps into a Zarr store.

    Holds at most one chunk of batches at a time (memory does not grow with
    the dataset), writes each chunk's arrays and then its batches'
    completed-batch markers, and resumes: a second call with the same ``out``
    skips the batches already written (checking they hold the same data,
    and that the model gives the stored logits on the first of them) and
    redoes the batches of a chunk cut half-way.

    Parameters
    ----------
    model : a model any backend takes (torch ``nn.Module``, Flax ``(module, variables)``, ...)
    batches : iterable of batches
        A torch ``DataLoader`` (of tensors or of ``(images, labels)``), a
        generator of NumPy arrays or ``(images, labels)`` pairs, a list of
        arrays, or dicts ``{"image": ..., "label": ...}``. Inputs in the
        model's layout (NCHW for torch, NHWC for Flax). Iterated once, in
        order; a resumed run must give the same batches.
    method : str or list of str
        One of :func:`attrib.list_methods`, or a list of distinct ones: every
        batch is explained by all of them in one :func:`attrib.explain` call
        (one forward pass, one backward pass per rule; each map equals the
        method's own run bit for bit), and each method's maps are kept under
        ``methods/NAME/`` of the store (:meth:`MapStore.maps`).
    out : str or path-like
        The Zarr store (a folder, e.g. ``"maps.zarr"``), created if missing.
    target : None, int or "labels"
        ``None``: each sample's top class; an int: that class for all;
        ``"labels"``: each sample's label.
    layer : str, optional
        For layer methods (Grad-CAM); with several methods, of every layer
        method without its own in ``options``.
    backend : str, optional
        Detected from ``model`` when omitted.
    objective : str
        ``"logit"`` (default), ``"log_softmax"`` or ``"softmax"``.
    thumbnail : int or None
        Longest side of the uint8 RGB picture of each input kept for
        ``attrib report`` (default 112 pixels); ``None`` keeps none.
    store_inputs : bool
        Also keep the inputs themselves (array ``inputs``).
    class_names : sequence of str, optional
        Names of the model's classes, kept with the settings (the gallery shows them).
    progress : bool
        Show a tqdm bar with images per second on stderr.
    batches_per_chunk : int, optional
        Batches per chunk of the store's arrays, kept in memory until
        written together. ``None`` (default): as many as hold 16 MiB of
        results (at least one). Few, large writes are what keeps the
        store's cost small next to the model's. A resumed store keeps its
        own chunks.
    options : mapping of method name to mapping, optional
        Options per method, as :func:`attrib.explain` takes them, e.g.
        ``{"gradcam": {"layer": "conv4"}, "integrated_gradients": {"steps": 16}}``.
    **method_options
        Further options of the method's class (one method only; with
        several, use ``options``).

    Returns
    -------
    MapStore
        The store (see :func:`attrib.open_maps` for its layout and reading).

    Raises
    ------
    AttribError
        Bad arguments, a store made with other settings, or a resumed run
        whose batches differ from the store's.

    Examples
    --------
    >>> import attrib, tempfile, os
    >>> model = attrib.demo_model("torch")
    >>> data = attrib.demo_data(8)
    >>> batches = [(data.images[i:i + 4].transpose(0, 3, 1, 2), data.labels[i:i + 4])
    ...            for i in (0, 4)]
    >>> out = os.path.join(tempfile.mkdtemp(), "maps.zarr")
    >>> store = attrib.explain_dataset(model, batches, method="gradcam", layer="conv4",
    ...                                out=out, progress=False)
    >>> len(store), store["attribution"].shape, store["labels"][:].tolist() == data.labels.tolist()
    (8, (8, 64, 64), True)
    >>> both = attrib.explain_dataset(model, batches, method=["saliency", "gradcam"],
    ...                               options={"gradcam": {"layer": "conv4"}},
    ...                               out=os.path.join(tempfile.mkdtemp(), "maps.zarr"), progress=False)
    >>> both.methods, both.maps("saliency")["attribution"].shape
    (['saliency', 'gradcam'], (8, 3, 64, 64))
    """
    explainer = BatchExplainer(lambda: model, method=method, target=target, layer=layer,
                               backend=backend, objective=objective, thumbnail=thumbnail,
                               store_inputs=store_inputs, options=options, **method_options)
    store = MapStore.create_or_resume(out, with_class_names(explainer.settings, class_names),
                                      batches_per_chunk)
    total = _total(batches)
    store.expect(total)
    # Written in this thread, between batches: a writer thread would run beside the
    # framework's own threads (one per core), and on 2 cores that measured 2-4 % slower.
    with flushed(store):  # every finished batch is written, even when a later one failed
        with progress_bar(total, f"explain_dataset ({described(method)})", progress) as bar:
            for k, offset, outputs in _explained(explainer, store, batches, bar):
                if outputs is not None:
                    store.add_batch(k, offset, outputs)
    store.finish()
    return store
