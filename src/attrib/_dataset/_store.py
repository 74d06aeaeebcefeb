"""The Zarr store of a dataset run: layout, settings check, completed-batch markers.

Layout (a Zarr v3 group; every array has one row per sample, chunked along the
first axis by a whole number of the run's batches, compressed with Blosc LZ4)::

    maps.zarr/
      attribution        (N, ...)       the raw map, as attrib.explain returns it
      layer_attribution  (N, h, w)      layer methods only (Grad-CAM at the layer)
      targets            (N,) int64     the explained class
      logits             (N, classes)
      labels             (N,) int64     when the batches carry labels
      thumbnails         (N, h, w, 3) uint8   RGB pictures of the inputs (the gallery's)
      inputs             (N, ...)       with store_inputs=True
      checksums          (N,) uint32    CRC-32 of each input (a resumed run checks its data)
      batches            (K, 2) int64   [offset, size] of batch k; written after its data
      metrics/NAME       (N,)           optional per-sample scores (the gallery sorts by them)

A run of several methods (``method=[...]``) keeps each method's maps in a group
of its own and the rest once (the methods share the batch, its targets and
logits)::

    maps.zarr/
      methods/NAME/attribution        (N, ...)   the raw map of method NAME
      methods/NAME/layer_attribution  (N, h, w)  layer methods only
      targets, logits, labels, thumbnails, inputs, checksums, batches, metrics/  as above

The group's attribute ``"attrib"`` holds the run's settings (method, options,
layer, target, objective, backend, layout, versions): ``method`` is the
method's name, or the list of names of a run of several (whose ``options``
map each method to its own, and whose ``format`` is 2). Batches are kept in
memory until they fill a chunk (:data:`CHUNK_BYTES` of data, or
``batches_per_chunk`` batches), then written together, every array at once,
one chunk each; their rows in ``batches`` are written after that. A batch
counts as done only once its row in ``batches`` is written: a run killed
before a chunk is on disk redoes that chunk's batches, so a resumed store is
the uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import argument_error, did_you_mean, shown

__all__ = ["MapStore", "open_maps", "SETTINGS_KEY", "MARKER", "CHUNK_BYTES", "METHODS_GROUP",
           "METHOD_ARRAYS", "map_path"]

#: The group attribute holding the run's settings.
SETTINGS_KEY = "attrib"
#: The array of completed-batch markers.
MARKER = "batches"
#: Bytes of data (all arrays) a chunk of batches holds at most, unless one batch is larger.
#: Few, large writes: zarr's cost per array write is about a millisecond, whatever its size.
CHUNK_BYTES = 16 * 2**20
#: Rows per chunk of the marker array (written once per chunk of data).
MARKER_CHUNK = 1024
#: The group holding one group of maps per method, in a store of several methods.
METHODS_GROUP = "methods"
#: The arrays each method has of its own (the others are the batch's, shared by every method).
METHOD_ARRAYS = ("attribution", "layer_attribution")


def map_path(method: str | None, name: str) -> str:
    """Path of array ``name`` of ``method`` in a store of several methods (``None``: of one)."""
    return name if method is None else f"{METHODS_GROUP}/{method}/{name}"


def _compressor(zarr: Any) -> Any:
    """Blosc LZ4 with byte shuffle: fast, and about zstd's ratio on maps and thumbnails."""
    return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _check_batches_per_chunk(batches_per_chunk: Any) -> int | None:
    if batches_per_chunk is None:
        return None
    if isinstance(batches_per_chunk, bool) or not isinstance(batches_per_chunk, (int, np.integer)) \
            or batches_per_chunk < 1:
        raise argument_error("batches_per_chunk", "None (chunks of about 16 MiB) or a positive int",
                             batches_per_chunk)
    return int(batches_per_chunk)


def _all_at_once(calls: list[tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]]) -> list[Any]:
    """Run zarr calls concurrently in zarr's event loop (one round trip); return their results.

    ``calls`` holds ``(target, async_call, sync_call)``: ``async_call(target._async_…)``
    gives a coroutine, ``sync_call(target)`` is the same call through zarr's
    synchronous API (used by another zarr 3 layout). Every call finishes (or
    fails) before the first failure is raised, so nothing is still being
    written when the caller moves on.
    """
    try:
        from zarr.core.sync import sync

        coroutines = [async_call(target) for target, async_call, _ in calls]
    except (ImportError, AttributeError):  # another zarr 3 layout: one call after the other
        return [sync_call(target) for target, _, sync_call in calls]

    async def run_all() -> list[Any]:
        return list(await asyncio.gather(*coroutines, return_exceptions=True))

    outcomes = sync(run_all())
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def _write_rows(pending: list[tuple[Any, np.ndarray]], rows: slice) -> None:
    """Write ``values`` at ``rows`` of each array, all at once."""
    _all_at_once([(array, functools.partial(_async_setitem, rows=rows, values=values),
                   functools.partial(_setitem, rows=rows, values=values))
                  for array, values in pending])


def _async_setitem(array: Any, rows: slice, values: np.ndarray) -> Any:
    return array._async_array.setitem(rows, values)


def _setitem(array: Any, rows: slice, values: np.ndarray) -> None:
    array[rows] = values


def _async_create(group: Any, arguments: dict[str, Any]) -> Any:
    return group._async_group.create_array(**arguments)


def _create(group: Any, arguments: dict[str, Any]) -> Any:
    return group.create_array(**arguments)


def _resize_all(arrays: list[tuple[Any, tuple[int, ...]]]) -> None:
    """Resize each array to its shape, all at once (chunks outside the shape are deleted)."""
    _all_at_once([(array, functools.partial(_async_resize, shape=shape),
                   functools.partial(_resize, shape=shape)) for array, shape in arrays])


def _async_resize(array: Any, shape: tuple[int, ...]) -> Any:
    return array._async_array.resize(shape)


def _resize(array: Any, shape: tuple[int, ...]) -> None:
    array.resize(shape)


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as error:  # pragma: no cover - zarr is in the dataset extra
        raise argument_error("out", "zarr >= 3 installed to write a store", shown("no zarr"),
                             "pip install 'attrib[dataset]'") from error
    if int(zarr.__version__.split(".")[0]) < 3:
        raise argument_error("out", "zarr >= 3", shown(f"zarr {zarr.__version__}"),
                             "pip install 'attrib[dataset]'")
    return zarr


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [f"{key}={stored.get(key)!r} (this run: {wanted.get(key)!r})"
            for key in keys if stored.get(key) != wanted.get(key)]


class MapStore:
    """A dataset run's Zarr store (see the module docstring for the layout).

    Use :meth:`create_or_resume` to write and :func:`open_maps` to read.
    """

    def __init__(self, group: Any, path: Path | None, batches_per_chunk: int | None = None) -> None:
        self.group = group
        self.path = path
        self._done: dict[int, tuple[int, int]] = {}
        self._arrays: dict[str, Any] = {}  # open arrays: a look-up reads and parses metadata
        self._batches_per_chunk = _check_batches_per_chunk(batches_per_chunk)
        self._chunk_rows: int | None = None  # rows per chunk: the store's, or set by the first batch
        self._kept: list[tuple[int, int, int]] = []  # (batch, offset, size) taken, not yet written
        self._rows: dict[str, np.ndarray] = {}  # the kept batches' rows, one reused buffer per array
        self._filled = 0  # rows of those buffers the kept batches fill
        self._names: list[str] = []  # the arrays of the kept batches
        self._expected_rows: int | None = None
        self._read_markers()

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, out: Any, settings: Mapping[str, Any],
                         batches_per_chunk: int | None = None) -> MapStore:
        """Open ``out`` for writing: a new store, or one made with the same ``settings``.

        ``batches_per_chunk`` sets the chunks of a new store (None: as many
        batches as hold :data:`CHUNK_BYTES`); a resumed store keeps its own.

        Raises
        ------
        AttribError
            ``out`` is not an attrib store, or one made with other settings.
        """
        zarr = _zarr()
        batches_per_chunk = _check_batches_per_chunk(batches_per_chunk)
        path = Path(os.fspath(out)) if isinstance(out, (str, os.PathLike)) else None
        if path is not None:
            if path.exists() and not path.is_dir():
                raise argument_error("out", "a folder for a Zarr store", shown(f"the file {str(path)!r}"))
            if path.is_dir() and any(path.iterdir()) and not (path / "zarr.json").is_file():
                raise argument_error("out", "a new folder or an attrib Zarr store",
                                     shown(f"the non-empty folder {str(path)!r}"),
                                     "Choose another --out / out=.")
            _remove_partial_writes(path)
        group = zarr.open_group(out, mode="a")
        stored = group.attrs.get(SETTINGS_KEY)
        if stored is None:
            if len(list(group.array_keys())) or len(list(group.group_keys())):
                raise argument_error("out", "a new store or an attrib store", shown(
                    f"a Zarr group without attrib settings at {str(out)!r}"))
            group.attrs[SETTINGS_KEY] = dict(settings)
        elif stored != dict(settings):
            raise argument_error(
                "out", "a store made with this run's settings to resume", shown(
                    f"a store at {str(out)!r} made with other settings: "
                    + "; ".join(_differences(stored, settings))),
                "Write to another out= (or delete the store to start over).")
        return cls(group, path, batches_per_chunk)

    # -- markers -----------------------------------------------------------------------
    def _read_markers(self) -> None:
        if MARKER not in self.group:
            return
        marker = self.group[MARKER]
        try:
            rows = np.asarray(marker[:])
        except Exception:  # a chunk of markers unreadable (not one zarr writes): row by row
            rows = np.zeros((marker.shape[0], 2), dtype=np.int64)
            for k in range(marker.shape[0]):
                try:
                    rows[k] = marker[k]
                except Exception:
                    continue  # that batch counts as not done
        for k, (offset, size) in enumerate(rows.tolist()):
            if size > 0:
                self._done[k] = (offset, size)

    def completed(self, batch: int) -> tuple[int, int] | None:
        """``(offset, size)`` of batch ``batch`` if it was written completely, else ``None``."""
        return self._done.get(batch)

    @property
    def completed_batches(self) -> int:
        """How many batches are done."""
        return len(self._done)

    def check_batch(self, batch: int, offset: int, sums: np.ndarray) -> None:
        """Refuse a resumed run whose batch ``batch`` is not the data the store holds."""
        done = self._done[batch]
        stored = np.asarray(self._array("checksums")[done[0]:done[0] + done[1]])
        if done != (offset, len(sums)) or not np.array_equal(stored, sums):
            raise argument_error(
                "batches", "the same data, in the same order and batches, as the run that made "
                           "the store", shown(f"other data in batch {batch} (samples {offset}.."
                                              f"{offset + len(sums) - 1})"),
                "Resume with the same batches, or write to another out=.")

    def check_logits(self, batch: int, logits: np.ndarray) -> None:
        """Refuse a resumed run whose model gives other logits on batch ``batch`` than the store holds.

        The settings name the method, not the weights: the first batch a
        resumed run skips is run through its model once, and its logits must
        match the stored ones (up to float noise: ``rtol=1e-4``, ``atol=1e-5``
        relative to the largest logit), else the maps would mix two models.
        """
        offset, size = self._done[batch]
        stored = np.asarray(self._array("logits")[offset:offset + size])
        scale = float(np.max(np.abs(stored))) if stored.size else 0.0
        if stored.shape != logits.shape or not np.allclose(logits, stored, rtol=1e-4,
                                                           atol=1e-5 * max(scale, 1.0)):
            worst = (float(np.max(np.abs(logits - stored))) if stored.shape == logits.shape
                     else f"shape {logits.shape} vs {stored.shape}")
            raise argument_error(
                "model", "the model (weights) that made the store, to resume it",
                shown(f"a model whose logits on batch {batch} differ from the stored ones "
                      f"(largest difference {worst})"),
                "Resume with the same weights, or write to another out=.")

    # -- writing -----------------------------------------------------------------------
    def add_batch(self, batch: int, offset: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Take batch ``batch`` (rows ``offset:offset + n``); write the batches taken once they fill a chunk.

        ``arrays`` are copied into the chunk's buffers (one per array, reused
        from chunk to chunk: no allocation, no concatenation, memory flat).
        :meth:`flush` (or :meth:`finish`) writes the batches still kept.
        """
        values = {name: np.asarray(array) for name, array in arrays.items()}
        n = len(values["checksums"])
        if self._kept:
            last_batch, last_offset, last_size = self._kept[-1]
            if batch != last_batch + 1 or offset != last_offset + last_size or not self._fits(values):
                self.flush()  # not the next batch (or other arrays): the kept ones go first
        if self._chunk_rows is None:
            self._chunk_rows = self._stored_chunk_rows() or n * (
                self._batches_per_chunk or max(1, CHUNK_BYTES // max(1, _nbytes(values))))
        self._keep(values)
        self._kept.append((batch, offset, n))
        end = offset + n
        if end % self._chunk_rows == 0 or end - self._kept[0][1] >= self._chunk_rows:
            self.flush()

    def _fits(self, values: Mapping[str, np.ndarray]) -> bool:
        """Whether ``values`` has the arrays, dtypes and sample shapes of the kept batches."""
        return set(values) == set(self._names) and all(
            self._rows[name].dtype == value.dtype and self._rows[name].shape[1:] == value.shape[1:]
            for name, value in values.items())

    def _keep(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy ``values`` after the kept rows, in C order (zarr copies other layouts slowly)."""
        start, n = self._filled, len(values["checksums"])
        assert self._chunk_rows is not None
        for name, value in values.items():
            buffer = self._rows.get(name)
            if buffer is None or buffer.dtype != value.dtype or buffer.shape[1:] != value.shape[1:] \
                    or len(buffer) < start + n:
                grown = np.empty((max(self._chunk_rows, start + n), *value.shape[1:]), value.dtype)
                if start:  # only for batches of uneven sizes: _fits holds, the kept rows move along
                    assert buffer is not None
                    grown[:start] = buffer[:start]
                self._rows[name] = buffer = grown
            buffer[start:start + n] = value
        self._names = list(values)
        self._filled = start + n

    def expect(self, rows: int | None) -> None:
        """Size new arrays for ``rows`` samples (the dataset's length, when known): no resizing."""
        self._expected_rows = rows

    def _make_room(self, zarr: Any, data: Mapping[str, np.ndarray], rows: int, batches: int) -> None:
        """Create the arrays of ``data`` (and the markers) that are missing, grow those too short.

        New arrays get the expected rows; arrays grow by doubling (few metadata
        writes); :meth:`finish` trims them to the rows written. Every creation
        (and every resize) goes to zarr at once.
        """
        wanted = {**{name: (rows, values) for name, values in data.items()}, MARKER: (batches, None)}
        missing = [name for name in wanted if self._array(name) is None]
        if missing:
            def create(name: str) -> dict[str, Any]:
                needed, values = wanted[name]
                if values is None:  # the completed-batch markers: [offset, size] per batch
                    return dict(name=name, shape=(needed, 2), dtype=np.int64, chunks=(MARKER_CHUNK, 2),
                                fill_value=0)
                return dict(name=name, shape=(max(needed, self._expected_rows or 0), *values.shape[1:]),
                            dtype=values.dtype, chunks=(self._chunk_rows, *values.shape[1:]),
                            fill_value=0, compressors=_compressor(zarr),
                            config={"write_empty_chunks": True})  # every chunk is data: skip the scan

            group = self.group
            created = _all_at_once([
                (group, functools.partial(_async_create, arguments=create(name)),
                 functools.partial(_create, arguments=create(name))) for name in missing])
            for name, array in zip(missing, created):
                self._arrays[name] = array if isinstance(array, zarr.Array) else zarr.Array(array)
        short = [(self._arrays[name], (max(needed, 2 * self._arrays[name].shape[0]),
                                       *self._arrays[name].shape[1:]))
                 for name, (needed, _) in wanted.items() if self._arrays[name].shape[0] < needed]
        if short:
            _resize_all(short)

    def _stored_chunk_rows(self) -> int | None:
        """Rows per chunk of the store's arrays (None for a store with no data yet)."""
        array = self._array("checksums")
        return None if array is None else int(array.chunks[0])

    def flush(self) -> None:
        """Write the batches taken and not yet written: every array's rows at once, then their markers.

        Arrays grow by doubling (few metadata writes); :meth:`finish` trims
        them to the rows written.
        """
        if not self._kept:
            return
        kept, self._kept = self._kept, []  # a failed write is not retried: the batches are redone
        filled, self._filled = self._filled, 0
        zarr = _zarr()
        assert self._chunk_rows is not None
        first_batch, start = kept[0][0], kept[0][1]
        sizes = [size for _, _, size in kept]
        end = start + filled
        last_batch = first_batch + len(kept) - 1
        data = {name: self._rows[name][:filled] for name in self._names}  # written before reuse
        self._make_room(zarr, data, end, last_batch + 1)
        _write_rows([(self._arrays[name], rows) for name, rows in data.items()], slice(start, end))
        marker = self._arrays[MARKER]
        offsets = start + np.cumsum([0, *sizes[:-1]])
        marker[first_batch:last_batch + 1] = np.stack([offsets, sizes], axis=1).astype(np.int64)
        for k, (offset, size) in enumerate(zip(offsets.tolist(), sizes), start=first_batch):
            self._done[k] = (offset, size)

    def _array(self, name: str) -> Any:
        """The open array ``name``, or None if the store has none."""
        if name not in self._arrays:
            if name not in self.group:
                return None
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    def finish(self) -> None:
        """Write the batches still kept, then trim every array to the rows of the completed batches."""
        self.flush()
        self._rows = {}  # the chunk buffers go with the run
        if not self._done:
            return
        rows = max(offset + size for offset, size in self._done.values())
        batches = max(self._done) + 1
        trims = []
        for name in [*self.group.array_keys(), *self._method_array_paths()]:
            array = self._array(name)
            wanted = batches if name == MARKER else rows
            if array.shape[0] != wanted:
                trims.append((array, (wanted, *array.shape[1:])))
        if trims:
            _resize_all(trims)

    def _method_array_paths(self) -> list[str]:
        """Paths of the per-method arrays of a store of several methods (none in a store of one)."""
        if METHODS_GROUP not in self.group:
            return []
        methods = self.group[METHODS_GROUP]
        return [map_path(method, name) for method in sorted(methods.group_keys())
                for name in sorted(methods[method].array_keys())]

    # -- reading -----------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings (method, options, target, backend, versions, ...)."""
        return dict(self.group.attrs.get(SETTINGS_KEY, {}))

    @property
    def methods(self) -> list[str]:
        """The methods whose maps the store holds, in the run's order (one for ``method="name"``)."""
        method = self.settings.get("method")
        return list(method) if isinstance(method, list) else [str(method)]

    @property
    def several(self) -> bool:
        """Whether the store is a run of several methods (``method=[...]``: maps under ``methods/``)."""
        return isinstance(self.settings.get("method"), list)

    def maps(self, method: str | None = None) -> dict[str, Any]:
        """``{"attribution": array, "layer_attribution": array (layer methods)}`` of ``method``.

        Parameters
        ----------
        method : str, optional
            One of :attr:`methods`; may be left out when the store holds one.

        Returns
        -------
        dict of str to zarr.Array
            Read lazily (slice to get NumPy): ``store.maps("gradcam")["attribution"][:8]``.
        """
        names = self.methods
        if method is None:
            if len(names) != 1:
                raise argument_error("method", f"one of the store's methods {names}", None,
                                     f"e.g. store.maps({names[0]!r})")
            method = names[0]
        if method not in names:
            raise argument_error("method", f"one of the store's methods {names}", method,
                                 did_you_mean(str(method), names))
        prefix = method if self.several else None
        return {name: self.group[map_path(prefix, name)] for name in METHOD_ARRAYS
                if map_path(prefix, name) in self.group}

    def __len__(self) -> int:
        """Samples in the completed batches that start at sample 0 with no gap."""
        count = 0
        for offset, size in sorted(self._done.values()):
            if offset != count:
                break
            count += size
        return count

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.group

    def __getitem__(self, name: str) -> Any:
        """The Zarr array ``name`` (read lazily; slice it to get NumPy).

        In a store of several methods the maps are ``"methods/NAME/attribution"``
        (or :meth:`maps`).
        """
        if name in METHOD_ARRAYS and self.several and name not in self.group:
            raise argument_error(
                "name", "an array of the store; its maps are per method", name,
                f"This store holds the maps of {self.methods}: store.maps({self.methods[0]!r})"
                f"[{name!r}] or store[{map_path(self.methods[0], name)!r}].")
        return self.group[name]

    def arrays(self) -> list[str]:
        """Names of the per-sample arrays in the store (paths under ``methods/`` for several methods)."""
        return sorted([*(k for k in self.group.array_keys() if k != MARKER),
                       *self._method_array_paths()])

    def metrics(self) -> dict[str, Any]:
        """``{name: array}`` of the per-sample metrics under ``metrics/``."""
        if "metrics" not in self.group:
            return {}
        metrics = self.group["metrics"]
        return {k: metrics[k] for k in sorted(metrics.array_keys())}

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays())

    def __repr__(self) -> str:
        s = self.settings
        return (f"MapStore({str(self.path) if self.path else self.group.store!r}, method="
                f"{s.get('method')!r}, samples={len(self)}, batches={self.completed_batches})")


def _remove_partial_writes(path: Path) -> None:
    """Delete the temporary files of writes a killed run left behind (zarr writes ``*.partial``)."""
    for partial in path.rglob("*.partial"):
        partial.unlink(missing_ok=True)


def open_maps(path: Any) -> MapStore:
    """Open the store a dataset run wrote, read-only.

    Parameters
    ----------
    path : str or path-like
        E.g. ``"maps.zarr"``.

    Returns
    -------
    MapStore
        ``store["attribution"][i:j]`` gives NumPy rows; ``store.settings`` the run's settings;
        ``len(store)`` the samples written completely.
    """
    zarr = _zarr()
    if isinstance(path, (str, os.PathLike)) and not (Path(os.fspath(path)) / "zarr.json").is_file():
        raise argument_error("path", "the folder of a store written by attrib.explain_dataset",
                             shown(repr(os.fspath(path))))
    group = zarr.open_group(path, mode="r")
    if SETTINGS_KEY not in group.attrs:
        raise argument_error("path", "a store written by attrib.explain_dataset",
                             shown(f"a Zarr group without attrib settings at {path!r}"))
    return MapStore(group, Path(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None)


def _nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    return sum(int(array.nbytes) for array in arrays.values())
