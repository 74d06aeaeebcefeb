"""Registers the ``numpy`` backend with attrib (entry point ``numpy`` in group ``attrib``).

This module is imported when attrib first looks up a backend. It names the
adapter by string, so the adapter module is imported only when the backend is
first used; a backend for a heavy framework must keep its plugin module free
of the framework import in the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import attrib


def _is_numpy_network(model: object) -> bool:
    """Whether ``model`` is an :class:`attrib_numpy.Sequential` (never imports anything)."""
    network = sys.modules.get("attrib_numpy._network")
    return network is not None and isinstance(model, network.Sequential)


@attrib.hookimpl
def attrib_register_backends(register: Callable[[attrib.Backend], None]) -> None:
    register(
        attrib.Backend(
            name="numpy",
            frameworks=("attrib_numpy",),
            detect=_is_numpy_network,
            adapter="attrib_numpy._model:NumpyModel",
            install_hint="pip install attrib-numpy",
            layout="NCHW",
            description="attrib_numpy.Sequential (pure NumPy CNNs and MLPs), inputs NCHW or (N, D)",
        )
    )
