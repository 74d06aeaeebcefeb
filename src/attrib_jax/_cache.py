"""JAX's persistent compilation cache in the user's cache folder, so a new process starts fast.

Tracing and compiling a gradient program of a ResNet-50 takes seconds, paid
again in every new process (each ``attrib explain`` run). JAX can keep the
compiled executables on disk (``jax_compilation_cache_dir``); a later process
that builds the same program (same model structure, shapes, dtypes, rule,
layers, JAX version and machine) loads it instead of compiling it. The
command line turns it on; a library user opts in with
:func:`enable_compilation_cache`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "enable_compilation_cache"]

#: Programs that compile faster than this are not written (XLA's small helpers).
MIN_COMPILE_SECONDS = 0.05


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/attrib/jax``, or ``~/.cache/attrib/jax`` when it is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attrib" / "jax"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Keep JAX's compiled programs on disk at ``path`` for later processes.

    Sets JAX's own options for the whole process: ``jax_compilation_cache_dir``
    (``path``, default :func:`default_cache_dir`) and
    ``jax_persistent_cache_min_compile_time_secs`` (programs compiling in
    0.05 s or more are written). Effective also when called after programs
    were compiled; those are written the next time they are compiled.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder to keep the compiled programs in (created if missing). Only
        your own folder: JAX trusts what it reads there.

    Returns
    -------
    pathlib.Path
        The folder in use.

    Examples
    --------
    >>> import tempfile, attrib_jax
    >>> folder = attrib_jax.enable_compilation_cache(tempfile.mkdtemp())
    >>> folder.is_dir()
    True
    """
    import jax

    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _forget_cache_decision()
    return folder


def _forget_cache_decision() -> None:
    """Let JAX look at the cache options again if it already decided to use no cache.

    JAX decides once per process, at the first compilation, whether a cache is
    in use; ``reset_cache`` (public in ``jax.experimental.compilation_cache``)
    makes it decide again at the next one.
    """
    try:
        from jax.experimental.compilation_cache import compilation_cache
    except ImportError:  # pragma: no cover - older layouts: the options alone suffice
        return
    compilation_cache.reset_cache()
