"""attrib's JAX/Flax backend (registered through the ``attrib`` entry points).

Importing this package does not import jax; the names below are loaded on
first access (module ``__getattr__``):

- :func:`guided_relu`, :func:`deconvnet_relu` — the rectifier rules as
  ``jax.custom_vjp`` functions, for models that write the rule in;
- :func:`from_torch` — a torchvision ResNet, a timm EfficientNet-Lite or
  Vision Transformer as the identical Flax ``(module, variables)`` pair;
- :class:`ResNet`, :func:`resnet18`, :func:`resnet34`, :func:`resnet50` —
  Flax linen ResNets with torchvision's layer names and numerics (NHWC);
- :class:`JaxModel` — the backend's :class:`attrib.Model` adapter;
- :func:`enable_compilation_cache`, :func:`default_cache_dir` — JAX's
  persistent compilation cache in the user's cache folder (opt-in).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["guided_relu", "deconvnet_relu", "from_torch", "ResNet", "resnet18", "resnet34",
           "resnet50", "JaxModel", "enable_compilation_cache", "default_cache_dir"]

_LAZY: dict[str, str] = {
    "guided_relu": "attrib_jax._rules",
    "deconvnet_relu": "attrib_jax._rules",
    "from_torch": "attrib_jax._convert",
    "ResNet": "attrib_jax._resnet",
    "resnet18": "attrib_jax._resnet",
    "resnet34": "attrib_jax._resnet",
    "resnet50": "attrib_jax._resnet",
    "JaxModel": "attrib_jax._model",
    "enable_compilation_cache": "attrib_jax._cache",
    "default_cache_dir": "attrib_jax._cache",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attrib_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
