"""Helpers for dataset-store tests: batches of a small array dataset, a store's files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def array_batches(images: np.ndarray, labels: np.ndarray,
                  size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` cut into consecutive batches of ``size``."""
    return [(images[i:i + size], labels[i:i + size]) for i in range(0, len(images), size)]


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of a store by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def failing_write(monkeypatch: Any, key: str) -> Iterator[None]:
    """Zarr's local store raises ``OSError("disk full (injected)")`` when writing ``key``."""
    import zarr

    original = zarr.storage.LocalStore.set

    async def failing(self: Any, name: str, value: Any) -> Any:
        if name == key:
            raise OSError("disk full (injected)")
        return await original(self, name, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing)
    try:
        yield
    finally:
        monkeypatch.setattr(zarr.storage.LocalStore, "set", original)
