"""The plugin hooks (pluggy) through which backends and methods are registered.

A plugin is a module (or object) with functions named like the specs below,
decorated with :data:`hookimpl`, and declared as an entry point in the group
``attrib``::

    [project.entry-points.attrib]
    mybackend = "attrib_mybackend._plugin"

The built-in backends and methods are registered through these same hooks.
Specs only ever gain arguments; an implementation may accept any subset of a
spec's arguments (pluggy passes only those it names), so plugins written
today keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._attributor import Attributor
    from ._backend import Backend

__all__ = ["PROJECT", "hookspec", "hookimpl", "AttribSpecs"]

PROJECT = "attrib"
hookspec = pluggy.HookspecMarker(PROJECT)
#: decorator for a plugin's hook implementations
hookimpl = pluggy.HookimplMarker(PROJECT)


class AttribSpecs:
    """Hook specifications. Each is called once, when the registry first loads."""

    @hookspec
    def attrib_register_backends(self, register: Callable[[Backend], None]) -> None:
        """Register backends by calling ``register(Backend(...))`` once for each.

        Called once per registry, the first time a backend or method is looked
        up. It must not import its framework (``import attrib`` stays free of
        torch and jax); put the framework import in the module named by
        ``Backend.adapter``, which is imported only on first use.
        """

    @hookspec
    def attrib_register_methods(self, register: Callable[[type[Attributor]], None]) -> None:
        """Register attribution methods by calling ``register(cls)`` for each.

        ``cls`` is an :class:`attrib.Attributor` subclass with a unique
        ``name`` (what :func:`attrib.explain` takes as ``method=``). Called
        once per registry; it must not import a framework.
        """
