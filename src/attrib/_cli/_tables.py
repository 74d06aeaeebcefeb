"""The tables ``attrib backends`` and ``attrib methods`` print."""

from __future__ import annotations

from collections.abc import Sequence

from .._registry import default_registry

__all__ = ["backends_table", "methods_table", "table"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, [ "-" * w for w in widths], *rows]]
    return "\n".join(lines)


def backends_table() -> str:
    """Name, installed, distribution and description of each registered backend."""
    rows = [(b.name, "yes" if b.is_installed() else f"no ({b.install_hint})" if b.install_hint
             else "no", b.distribution, b.description)
            for b in sorted(default_registry().backends().values(), key=lambda b: b.name)]
    return table(("name", "installed", "distribution", "description"), rows)


def methods_table() -> str:
    """Name, whether it needs a layer, and the first docstring line of each method."""
    rows = []
    for name, cls in sorted(default_registry().methods().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append((name, "yes" if cls.needs_layer else "no", doc[0] if doc else ""))
    return table(("name", "layer", "description"), rows)
