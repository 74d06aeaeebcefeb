"""The Zarr store of a dataset run: layout, settings check, completed-batch markers.

Layout (a Zarr v3 group; every array has one row per sample, chunked by the
run's batch size along the first axis, compressed with Blosc LZ4 and byte shuffle)::

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

The group's attribute ``"attrib"`` holds the run's settings (method, options,
layer, target, objective, backend, layout, versions). A batch counts as done
only once its row in ``batches`` is written, which happens after all of its
data: a run killed half-way through a batch redoes that batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import argument_error, shown

__all__ = ["MapStore", "open_maps", "SETTINGS_KEY", "MARKER"]

#: The group attribute holding the run's settings.
SETTINGS_KEY = "attrib"
#: The array of completed-batch markers.
MARKER = "batches"


def _compressor(zarr: Any) -> Any:
    """Blosc LZ4 with byte shuffle: fast, and about zstd's ratio on maps and thumbnails."""
    return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _write_rows(pending: list[tuple[Any, np.ndarray]], rows: slice) -> None:
    """Write ``values`` at ``rows`` of each array, all at once in zarr's event loop.

    Every write finishes (or fails) before the first failure is raised, so
    nothing of this batch is still being written when the caller moves on.
    """
    try:
        from zarr.core.sync import sync

        arrays = [(array._async_array, values) for array, values in pending]
    except (ImportError, AttributeError):  # another zarr 3 layout: one write after the other
        for array, values in pending:
            array[rows] = values
        return

    async def write_all() -> list[Any]:
        return list(await asyncio.gather(*(array.setitem(rows, values) for array, values in arrays),
                                         return_exceptions=True))

    for outcome in sync(write_all()):
        if isinstance(outcome, BaseException):
            raise outcome


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

    def __init__(self, group: Any, path: Path | None) -> None:
        self.group = group
        self.path = path
        self._done: dict[int, tuple[int, int]] = {}
        self._arrays: dict[str, Any] = {}  # open arrays: a look-up reads and parses metadata
        self._read_markers()

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, out: Any, settings: Mapping[str, Any]) -> MapStore:
        """Open ``out`` for writing: a new store, or one made with the same ``settings``.

        Raises
        ------
        AttribError
            ``out`` is not an attrib store, or one made with other settings.
        """
        zarr = _zarr()
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
        return cls(group, path)

    # -- markers -----------------------------------------------------------------------
    def _read_markers(self) -> None:
        if MARKER not in self.group:
            return
        marker = self.group[MARKER]
        for k in range(marker.shape[0]):
            try:
                offset, size = (int(v) for v in marker[k])
            except Exception:  # a marker cut half-way by a kill: that batch is not done
                continue
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

    # -- writing -----------------------------------------------------------------------
    def write_batch(self, batch: int, offset: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write one batch's arrays at rows ``offset:offset + n``, then its marker.

        Arrays grow by doubling (few metadata writes); :meth:`finish` trims
        them to the rows written.
        """
        zarr = _zarr()
        n = len(arrays["checksums"])
        end = offset + n
        pending = []
        for name, values in arrays.items():
            values = np.asarray(values)
            array = self._array(name)
            if array is None:
                array = self._arrays[name] = self.group.create_array(
                    name, shape=(end, *values.shape[1:]), dtype=values.dtype,
                    chunks=(n, *values.shape[1:]), fill_value=0, compressors=_compressor(zarr),
                    config={"write_empty_chunks": True})  # every chunk is data: skip the scan
            elif array.shape[0] < end:
                array.resize((max(end, 2 * array.shape[0]), *array.shape[1:]))
            pending.append((array, values))
        _write_rows(pending, slice(offset, end))
        marker = self._array(MARKER)
        if marker is None:
            marker = self._arrays[MARKER] = self.group.create_array(
                MARKER, shape=(batch + 1, 2), dtype=np.int64, chunks=(1, 2), fill_value=0)
        elif marker.shape[0] <= batch:
            marker.resize((max(batch + 1, 2 * marker.shape[0]), 2))
        marker[batch] = np.array([offset, n], dtype=np.int64)
        self._done[batch] = (offset, n)

    def _array(self, name: str) -> Any:
        """The open array ``name``, or None if the store has none."""
        if name not in self._arrays:
            if name not in self.group:
                return None
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    def finish(self) -> None:
        """Trim every array to the rows of the completed batches (after the last batch)."""
        if not self._done:
            return
        rows = max(offset + size for offset, size in self._done.values())
        batches = max(self._done) + 1
        for name in list(self.group.array_keys()):
            array = self._array(name)
            wanted = batches if name == MARKER else rows
            if array.shape[0] != wanted:
                array.resize((wanted, *array.shape[1:]))

    # -- reading -----------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings (method, options, target, backend, versions, ...)."""
        return dict(self.group.attrs.get(SETTINGS_KEY, {}))

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
        """The Zarr array ``name`` (read lazily; slice it to get NumPy)."""
        return self.group[name]

    def arrays(self) -> list[str]:
        """Names of the per-sample arrays in the store."""
        return sorted(k for k in self.group.array_keys() if k != MARKER)

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
