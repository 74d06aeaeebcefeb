"""The plugin registry: finds backends and methods through pluggy entry points.

Plugins are loaded lazily, on the first look-up, from the entry-point group
``attrib``. The built-in plugins (attrib's methods, the torch and jax
backends) are entry points of the ``attrib`` distribution like any third
party's; they are also registered directly so that they are there when the
package runs from a source tree or ``ATTRIB_DISABLE_PLUGIN_AUTOLOAD=1`` turns
entry-point loading off.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import pluggy

from ._backend import Backend
from ._errors import AttribTypeError, AttribWarning, BackendError, argument_error, check_choice, did_you_mean
from ._hooks import PROJECT, AttribSpecs

if TYPE_CHECKING:
    from importlib import metadata

    from ._attributor import Attributor
    from ._model import Model

__all__ = ["Registry", "default_registry", "AUTOLOAD_ENV", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "attrib"
AUTOLOAD_ENV = "ATTRIB_DISABLE_PLUGIN_AUTOLOAD"
_SELF = "attrib"

#: entry-point name -> module of the plugins that ship with attrib
BUILTIN_PLUGINS: dict[str, str] = {
    "methods": "attrib.methods._plugin",
    "torch": "attrib_torch._plugin",
    "jax": "attrib_jax._plugin",
}


class Registry:
    """Backends and methods registered through the ``attrib`` hooks.

    Tests make a fresh one (``Registry(entry_points=False)``) and register
    plugins into it; the library uses :func:`default_registry`.
    """

    def __init__(self, *, builtins: bool = True, entry_points: bool | None = None) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(AttribSpecs)
        self._builtins = builtins
        if entry_points is None:
            entry_points = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")
        self._entry_points = entry_points
        self._backends: dict[str, Backend] = {}
        self._methods: dict[str, type[Attributor]] = {}
        self._loaded = False

    # -- loading -----------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None, distribution: str = "") -> None:
        """Register a plugin (module or object with hook implementations) now."""
        self._load()
        self._add(plugin, name, distribution)

    def _add(self, plugin: object, name: str | None, distribution: str) -> None:
        name = self._pm.register(plugin, name=name)
        source = distribution or name or repr(plugin)
        backends, methods = dict(self._backends), dict(self._methods)
        try:
            # Call this plugin's own implementations only (not every plugin's again).
            _call_own(self._pm, plugin, "attrib_register_backends",
                      lambda b: self._add_backend(b, source))
            _call_own(self._pm, plugin, "attrib_register_methods",
                      lambda m: self._add_method(m, source))
        except BaseException:
            # all or nothing: a plugin whose hook raised leaves no half registration behind
            self._backends, self._methods = backends, methods
            self._pm.unregister(plugin)
            raise

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._builtins:
            for entry_name, module_name in BUILTIN_PLUGINS.items():
                self._add(importlib.import_module(module_name), entry_name, _SELF)
        if self._entry_points:
            for entry_point in _entry_points():
                self._load_entry_point(entry_point)

    def _load_entry_point(self, entry_point: metadata.EntryPoint) -> None:
        dist = getattr(entry_point.dist, "name", None) or "an unknown distribution"
        if self._builtins and dist == _SELF and entry_point.name in BUILTIN_PLUGINS:
            return
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken plugin must not break the others
            warnings.warn(
                f"attrib plugin {entry_point.name!r} from distribution {dist!r} failed to load "
                f"and was skipped: {type(error).__name__}: {error}",
                AttribWarning,
                stacklevel=4,
            )
            return
        try:
            self._add(plugin, f"{dist}:{entry_point.name}", dist)
        except Exception as error:
            warnings.warn(
                f"attrib plugin {entry_point.name!r} from distribution {dist!r} failed to "
                f"register and was skipped: {type(error).__name__}: {error}",
                AttribWarning,
                stacklevel=4,
            )

    def _add_backend(self, backend: object, source: str) -> None:
        if not isinstance(backend, Backend):
            raise argument_error("register", "an attrib.Backend", backend, kind=AttribTypeError)
        if backend.name in self._backends:
            taken = self._backends[backend.name].distribution
            warnings.warn(
                f"attrib backend {backend.name!r} from {source!r} was ignored: the name is "
                f"already taken by {taken!r}",
                AttribWarning,
                stacklevel=5,
            )
            return
        object.__setattr__(backend, "distribution", source)
        self._backends[backend.name] = backend

    def _add_method(self, method: object, source: str) -> None:
        # a subclass of Attributor means attrib._attributor is loaded: look it up there
        # instead of importing it (_attributor reaches the default registry: no circle)
        base = sys.modules.get("attrib._attributor")
        if not (isinstance(method, type) and base is not None
                and issubclass(method, base.Attributor)):
            raise argument_error(
                "register", "an attrib.Attributor subclass", method, kind=AttribTypeError
            )
        method = cast("type[Attributor]", method)
        if method.name in self._methods and self._methods[method.name] is not method:
            warnings.warn(
                f"attrib method {method.name!r} from {source!r} was ignored: the name is "
                f"already taken by {self._methods[method.name].__module__}",
                AttribWarning,
                stacklevel=5,
            )
            return
        self._methods[method.name] = method

    # -- look-ups ----------------------------------------------------------------
    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        self._load()
        return self._pm

    def backends(self) -> dict[str, Backend]:
        """Registered backends by name."""
        self._load()
        return dict(self._backends)

    def methods(self) -> dict[str, type[Attributor]]:
        """Registered methods by name."""
        self._load()
        return dict(self._methods)

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; a clear error if unknown."""
        backends = self.backends()
        if isinstance(name, str) and name in backends:
            return backends[name]
        guess = did_you_mean(str(name), backends)
        raise BackendError(
            f"backend: expected one of {_describe(backends.values())}, got {name!r}"
            + (f". {guess}" if guess else "")
        )

    def method(self, name: str) -> type[Attributor]:
        """The method class called ``name``; a clear error if unknown."""
        methods = self.methods()
        return methods[check_choice("method", name, sorted(methods))]

    def detect(self, model: object) -> Backend:
        """The one backend that claims ``model``; an error if none or several do."""
        from ._model import Model

        backends = self.backends()
        if isinstance(model, Model):
            return self.backend(model.backend)
        claiming = [b for b in backends.values() if b.claims(model)]
        if len(claiming) == 1:
            return claiming[0]
        if claiming:
            names = sorted(b.name for b in claiming)
            raise BackendError(
                f"backend: expected one backend to claim the model, got {type(model).__name__} "
                f"claimed by several backends {names}; pass backend= one of them, e.g. "
                f"backend={names[0]!r}"
            )
        raise BackendError(
            f"model: expected a model of an installed backend's framework, got an object of "
            f"type {_type_name(model)} (no backend recognises an object of type "
            f"{_type_name(model)}). "
            f"Installed backends: {_describe(backends.values())}. Pass a model of one of "
            "these frameworks (a torch nn.Module; a Flax (module, variables) pair, an nnx "
            "module or an (apply_fn, params) pair), or name the backend with backend=."
        )

    def wrap(self, model: object, backend: str | None = None, **options: Any) -> Model:
        """``model`` as an :class:`attrib.Model` of ``backend`` (detected when ``None``)."""
        from ._model import Model

        if isinstance(model, Model):
            if backend is not None and backend != model.backend:
                raise BackendError(
                    f"backend: expected {model.backend!r} (the model is already wrapped for "
                    f"it), got backend={backend!r}"
                )
            if options:
                raise argument_error(
                    "options", "no backend options for an already wrapped model",
                    sorted(options), "Pass them to attrib.wrap() instead.",
                )
            return model
        chosen = self.detect(model) if backend is None else self.backend(backend)
        if not chosen.is_installed():
            raise BackendError(
                f"backend: expected a backend whose framework is installed, got "
                f"{chosen.name!r}: {chosen.name!r} is registered but its framework "
                f"{chosen.frameworks[0]!r} is not installed. "
                + (f"Run: {chosen.install_hint}" if chosen.install_hint else "")
            )
        return chosen.adapter_factory()(model, **options)


def _call_own(pm: pluggy.PluginManager, plugin: object, hook_name: str, register: Any) -> None:
    """Call ``plugin``'s own implementation of ``hook_name``, if it has one."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        if impl.plugin is plugin:
            impl.function(**{k: register for k in impl.argnames if k == "register"})


def _entry_points() -> Iterable[metadata.EntryPoint]:
    from importlib import metadata  # on first use: it imports email, zipfile, csv (~40 ms)

    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _describe(backends: Iterable[Backend]) -> str:
    parts = []
    for b in sorted(backends, key=lambda b: b.name):
        parts.append(f"{b.name!r}" + ("" if b.is_installed() else " (not installed)"))
    return "[" + ", ".join(parts) + "]" if parts else "[] (no backend is registered)"


def _type_name(obj: object) -> str:
    t = type(obj)
    if isinstance(obj, tuple):
        return "tuple(" + ", ".join(type(o).__name__ for o in obj) + ")"
    return f"{t.__module__}.{t.__qualname__}"


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry the public API uses (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry()
    return _DEFAULT


def _reset_default_registry() -> None:
    """Forget the process-wide registry (tests use this after installing a plugin)."""
    global _DEFAULT
    _DEFAULT = None
