"""Test-session settings: cheap XLA compilation, and one core per pytest-xdist worker.

The programs these tests compile are used a handful of times, mostly on tiny
inputs, so LLVM's expensive passes cost more than they save. Optimisation
level 1, not 0: at 0 XLA's float64 convolutions (no Eigen kernel, plain loops)
run ~10x slower, and the float64 parity tests on ResNet/EfficientNet took 188 s
instead of 105 s, while the tiny programs of tests/jax compile only ~11 s
faster in all. ``setdefault`` leaves an ``XLA_FLAGS`` the caller set alone; it
only takes effect if jax has not started its CPU client yet, and changes no
result beyond rounding (the tests compare at tolerances far above it).

``pyproject.toml`` runs the suite on up to two pytest-xdist workers (``-n auto
--maxprocesses=2 --dist loadfile``; ``-n 0`` runs it in one process). Each
worker then gets one intra-op thread in torch and XLA, so two workers share
two cores instead of four busy threads fighting over them; one thread also
makes float32 sums come out in the same order on every code path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
)

# The command line keeps JAX's compiled programs in ~/.cache/attrib/jax; tests write
# nothing there (tests/jax/test_jax_cache.py turns it on in temporary folders).
os.environ.setdefault("ATTRIB_JAX_CACHE", "off")

#: "gw0", "gw1", ... in a pytest-xdist worker (set before this file is imported)
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if XDIST_WORKER:
    # before torch or jax start (subprocesses the tests run inherit it too)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "multi_thread_eigen" not in os.environ["XLA_FLAGS"]:
        os.environ["XLA_FLAGS"] += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@pytest.fixture(autouse=True)
def _one_torch_thread_per_worker() -> Iterator[None]:
    """Under xdist, every test starts with one torch thread, whatever an earlier test set."""
    torch = sys.modules.get("torch")  # never imports torch: tests/core checks what loads
    if XDIST_WORKER and torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield
