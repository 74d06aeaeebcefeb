"""Guided and deconvnet rectifiers as ``jax.custom_vjp`` functions.

The forward pass is the rectifier ``min(max(x, 0), upper)`` (``upper=None``:
plain relu); the backward pass applies the rule of :mod:`attrib._rules`:

- guided (Springenberg et al. 2015): ``grad_in = relu(grad_out) * [0 < x < upper]``
- deconvnet (Zeiler & Fergus 2014): ``grad_in = relu(grad_out)``

:func:`guided_relu` and :func:`deconvnet_relu` are public (``attrib_jax.guided_relu``)
for people who write the rule into their own model; the program rewrite of
:mod:`attrib_jax._rewrite` uses :func:`rectifier` to put the same rule in place
of every ``jax.nn.relu`` / ``jax.nn.relu6`` of an unmodified model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from attrib._errors import check_choice

__all__ = ["guided_relu", "deconvnet_relu", "rectifier"]

Array = Any


def _forward(x: Array, upper: float | None) -> Array:
    y = jnp.maximum(x, jnp.zeros((), x.dtype))
    if upper is not None:
        y = jnp.minimum(y, jnp.asarray(upper, x.dtype))
    return y


@functools.cache
def rectifier(rule: str, upper: float | None = None) -> Callable[[Array], Array]:
    """The rectifier ``min(max(x, 0), upper)`` whose backward pass follows ``rule``.

    Parameters
    ----------
    rule : {"guided", "deconvnet"}
    upper : float or None
        ``None`` for relu, ``6.0`` for relu6.

    Returns
    -------
    callable(x) -> array, same shape and dtype as ``x``
    """
    check_choice("rule", rule, ("guided", "deconvnet"))

    @jax.custom_vjp
    def rect(x: Array) -> Array:
        return _forward(x, upper)

    def fwd(x: Array) -> tuple[Array, Array]:
        return _forward(x, upper), x

    def bwd(x: Array, g: Array) -> tuple[Array]:
        passed = jnp.maximum(g, jnp.zeros((), g.dtype))
        if rule == "deconvnet":
            return (passed,)
        local = x > 0
        if upper is not None:
            local = local & (x < upper)
        return (jnp.where(local, passed, jnp.zeros((), g.dtype)),)

    rect.defvjp(fwd, bwd)
    return rect


def guided_relu(x: Array) -> Array:
    """``relu(x)`` whose gradient follows guided backpropagation.

    ``grad_in = relu(grad_out) * [x > 0]`` (Springenberg et al. 2015).

    Parameters
    ----------
    x : array, any shape

    Returns
    -------
    array, shape of ``x``

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([-1.0, 1.0, 2.0, 4.0])
    >>> jax.grad(lambda x: jnp.sum(jnp.sin(guided_relu(x))))(x)  # cos(2), cos(4) < 0
    Array([0.       , 0.5403023, 0.       , 0.       ], dtype=float32)
    """
    return rectifier("guided")(x)


def deconvnet_relu(x: Array) -> Array:
    """``relu(x)`` whose gradient follows the deconvnet rule.

    ``grad_in = relu(grad_out)``, whatever the sign of ``x`` (Zeiler & Fergus 2014).

    Parameters
    ----------
    x : array, any shape

    Returns
    -------
    array, shape of ``x``
    """
    return rectifier("deconvnet")(x)
