"""Registers the jax backend. Imports no jax: the adapter module does, on first use."""

from __future__ import annotations

import sys
from collections.abc import Callable

from attrib import Backend, hookimpl


def _is_jax_model(model: object) -> bool:
    """A Flax ``(module, variables)`` pair, an nnx module, or ``(apply_fn, params)``."""
    if "jax" not in sys.modules:
        return False
    linen = sys.modules.get("flax.linen")
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return True
    if isinstance(model, tuple) and len(model) == 2:
        first, second = model
        if linen is not None and isinstance(first, linen.Module):
            return isinstance(second, dict) or hasattr(second, "keys")
        return callable(first) and not isinstance(first, type) and _is_pytree_of_arrays(second)
    return False


def _is_pytree_of_arrays(params: object) -> bool:
    jax = sys.modules["jax"]
    leaves = jax.tree_util.tree_leaves(params)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves)


@hookimpl
def attrib_register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            name="jax",
            frameworks=("jax", "flax"),
            detect=_is_jax_model,
            adapter="attrib_jax._model:JaxModel",
            install_hint="pip install 'attrib[jax]'",
            layout="NHWC",
            description="Flax linen (module, variables), nnx modules, or (apply_fn, params); inputs NHWC",
        )
    )
