"""Test-session settings: fast XLA compilation for every test that runs jax.

The programs these tests compile are used a handful of times on tiny inputs,
so XLA's optimisation passes cost more than they save. ``setdefault`` leaves
an ``XLA_FLAGS`` the caller set alone; it only takes effect if jax has not
started its CPU client yet, and changes no result beyond rounding (the tests
compare at tolerances far above it).
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

# The command line keeps JAX's compiled programs in ~/.cache/attrib/jax; tests write
# nothing there (tests/jax/test_jax_cache.py turns it on in temporary folders).
os.environ.setdefault("ATTRIB_JAX_CACHE", "off")
