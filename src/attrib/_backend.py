"""The :class:`Backend` record a plugin registers, and how a model is matched to one."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import argument_error

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["Backend"]


@dataclass(frozen=True)
class Backend:
    """A backend as a plugin registers it. Nothing here imports the framework.

    Attributes
    ----------
    name : str
        What users pass as ``backend=`` (``"torch"``, ``"jax"``).
    frameworks : tuple of str
        Top-level modules of the framework. Auto-detection considers this
        backend only when one of them is already in ``sys.modules`` (a model
        of that framework cannot exist otherwise), and the backend counts as
        installed when the first one can be found.
    detect : callable(object) -> bool
        Whether an object is a model this backend takes. Called only when a
        framework module is already imported, so it may import it.
    adapter : str
        ``"package.module:callable"``; the callable takes ``(model, **options)``
        and returns an :class:`attrib.Model`. Imported on first use only.
    install_hint : str
        What to run when the framework is missing, e.g. ``pip install 'attrib[torch]'``.
    layout : str
        The input layout models of this backend use by default (``"NCHW"``/``"NHWC"``).
    distribution : str
        The distribution that registered it (filled in by the registry).
    """

    name: str
    frameworks: tuple[str, ...]
    detect: Callable[[object], bool]
    adapter: str
    install_hint: str = ""
    layout: str = "NCHW"
    description: str = ""
    distribution: str = field(default="", compare=False)

    def is_installed(self) -> bool:
        """Whether the framework can be imported (checked without importing it)."""
        if self.frameworks[0] in sys.modules:
            return True
        try:
            return importlib.util.find_spec(self.frameworks[0]) is not None
        except (ImportError, ValueError):
            return False

    def is_loaded(self) -> bool:
        """Whether the framework is already imported (so a model of it may exist)."""
        return any(module in sys.modules for module in self.frameworks)

    def claims(self, model: object) -> bool:
        """Whether this backend takes ``model``; never imports a framework."""
        if not self.is_loaded():
            return False
        try:
            return bool(self.detect(model))
        except Exception:  # a detector must never break detection for the others
            return False

    def adapter_factory(self) -> Callable[..., Model]:
        """Import and return the adapter callable (imports the framework)."""
        module_name, _, attr = self.adapter.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            hint = self.install_hint or f"install the {self.name} framework"
            raise argument_error(
                "backend",
                f"an installed backend; {self.name!r} needs {self.frameworks[0]!r}",
                self.name,
                f"Run: {hint}" if self.install_hint else hint,
            ) from error
        factory: Any = module
        for part in attr.split("."):
            factory = getattr(factory, part)
        return factory  # type: ignore[no-any-return]
