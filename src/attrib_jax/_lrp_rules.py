"""The LRP rules of :mod:`attrib.rules` in jax, for :mod:`attrib_jax._relevance`.

Each mirrors its NumPy reference (and the torch backend's
:func:`attrib_torch._relevance.linear_relevance`): a layer is a function
``f(x, w, b)`` and its transpose is taken with ``jax.vjp``, so one rule serves
convolutions, dense layers, pooling windows and additions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from attrib._errors import AttribError
from attrib.rules import AlphaBeta, Epsilon, Flat, Gamma, LinearRule, Norm, WSquare, ZBox, ZPlus

__all__ = ["divide", "linear_relevance"]

Array = Any
Linear = Callable[[Array, Array, Array | None], Array]


def divide(r: Array, den: Array, epsilon: float) -> Array:
    """``r / (den + ε sign den)`` with sign(0) = +1; 0 where that denominator is 0."""
    den = den + epsilon * jnp.where(den >= 0, 1.0, -1.0).astype(den.dtype)
    zero = den == 0
    return jnp.where(zero, jnp.zeros_like(r), r / jnp.where(zero, jnp.ones_like(den), den))


def _share(f: Linear, terms: list[tuple[float, Array | None, Array | None, Array | None]],
           r: Array, epsilon: float, like: Array) -> Array:
    """``Σ c_i in_i * f^T(s, w_i)`` with ``s = r / stab(Σ c_i f(in_i, w_i, b_i))``.

    Terms whose input is ``None`` are known to be zero (the negative part of
    a rectified input) and add exactly nothing.
    """
    kept = [t for t in terms if t[1] is not None]
    if not kept:
        return jnp.zeros_like(like)

    def total(*inputs: Array) -> Array:
        out = None
        for (c, _, w, b), inp in zip(kept, inputs):
            term = c * f(inp, w, b)
            out = term if out is None else out + term
        return out

    z, vjp = jax.vjp(total, *[t[1] for t in kept])
    grads = vjp(divide(r, z, epsilon))
    out = None
    for (_, inp, _, _), g in zip(kept, grads):
        out = inp * g if out is None else out + inp * g
    return out


def _pos(a: Array | None) -> Array | None:
    return None if a is None else jnp.maximum(a, 0)


def _neg(a: Array | None) -> Array | None:
    return None if a is None else jnp.minimum(a, 0)


def linear_relevance(rule: LinearRule | None, f: Linear, x: Array, w: Array | None,
                     b: Array | None, r: Array, nonnegative: bool = False) -> Array:
    """Relevance at the input of ``f(x, w, b)`` given ``r`` at its output, under ``rule``.

    ``rule=None`` is the transposed layer (the true gradient); ``nonnegative``
    says ``x >= 0`` everywhere (its negative part is then skipped, exactly).
    """
    if rule is None:
        return jax.vjp(lambda inp: f(inp, w, None), x)[1](r)[0]
    xp = x if nonnegative else jnp.maximum(x, 0)
    xn = None if nonnegative else jnp.minimum(x, 0)
    if isinstance(rule, (Epsilon, Norm)):
        eps = rule.epsilon if isinstance(rule, Epsilon) else rule.stabilizer
        return _share(f, [(1.0, x, w, b)], r, eps, x)
    if w is None:
        raise AttribError(f"rules: rule {rule.name!r} needs a layer with weights")
    wp, wn = jnp.maximum(w, 0), jnp.minimum(w, 0)
    if isinstance(rule, ZPlus):
        return _share(f, [(1.0, xp, wp, _pos(b)), (1.0, xn, wn, None)], r, rule.stabilizer, x)
    if isinstance(rule, AlphaBeta):
        positive = _share(f, [(1.0, xp, wp, _pos(b)), (1.0, xn, wn, None)], r,
                          rule.stabilizer, x)
        negative = _share(f, [(1.0, xp, wn, _neg(b)), (1.0, xn, wp, None)], r,
                          rule.stabilizer, x)
        return rule.alpha * positive - rule.beta * negative
    if isinstance(rule, Gamma):
        g = rule.gamma
        wu, wd = w + g * wp, w + g * wn
        bu = None if b is None else b + g * jnp.maximum(b, 0)
        bd = None if b is None else b + g * jnp.minimum(b, 0)
        z = f(x, w, b)
        up = _share(f, [(1.0, xp, wu, bu), (1.0, xn, wd, None)], r * (z > 0), rule.stabilizer, x)
        down = _share(f, [(1.0, xp, wd, bd), (1.0, xn, wu, None)], r * (z < 0), rule.stabilizer, x)
        return up + down
    ones = jnp.ones_like(x)
    if isinstance(rule, Flat):
        return _share(f, [(1.0, ones, jnp.ones_like(w), None)], r, rule.stabilizer, x)
    if isinstance(rule, WSquare):
        return _share(f, [(1.0, ones, w * w, None if b is None else b * b)], r, rule.stabilizer, x)
    if isinstance(rule, ZBox):
        low, high = (jnp.asarray(a, dtype=x.dtype) for a in rule.bounds(tuple(x.shape)))
        return _share(f, [(1.0, x, w, b), (-1.0, low, wp, _pos(b)), (-1.0, high, wn, _neg(b))],
                      r, rule.stabilizer, x)
    raise AttribError(f"rules: no jax implementation of the LRP rule {rule!r}")
