"""The command line keeps JAX's compiled programs on disk, so a second run starts fast.

On by default for the jax backend, in :func:`attrib_jax.default_cache_dir`
(``$XDG_CACHE_HOME/attrib/jax`` or ``~/.cache/attrib/jax``). The environment
variable ``ATTRIB_JAX_CACHE`` names another folder, or turns it off with
``0`` / ``off``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["CACHE_VARIABLE", "use_jax_compilation_cache"]

CACHE_VARIABLE = "ATTRIB_JAX_CACHE"
_OFF = ("0", "off", "no", "false")


def use_jax_compilation_cache() -> Path | None:
    """Turn JAX's persistent compilation cache on as ``ATTRIB_JAX_CACHE`` says; its folder.

    A folder that cannot be created costs only speed: a note on stderr, no error.
    """
    value = os.environ.get(CACHE_VARIABLE, "").strip()
    if value.lower() in _OFF:
        return None
    import attrib_jax

    try:
        return attrib_jax.enable_compilation_cache(value or None)
    except OSError as error:
        print(f"attrib: note: JAX compilation cache off ({error}); set {CACHE_VARIABLE}=DIR "
              "to choose a writable folder", file=sys.stderr)
        return None
