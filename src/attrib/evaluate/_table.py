"""Plain-text tables for the results' ``.table()`` (no pandas)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, text left-aligned, numbers right-aligned.

    >>> print(format_table(["method", "hit"], [["gradcam", "0.91"]]))
    method   hit
    gradcam  0.91
    """
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [cell.rjust(w) if _numeric(cell) else cell.ljust(w) for cell, w in zip(row, widths)]
        return "  ".join(parts).rstrip()

    return "\n".join(line(row) for row in cells)


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
