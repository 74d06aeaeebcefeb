"""Apply a rectifier rule to an unmodified JAX program by rewriting its jaxpr.

A function is traced to a jaxpr and evaluated again, equation by equation,
with every rectifier replaced by the ``jax.custom_vjp`` rule of
:mod:`attrib_jax._rules`. Nothing global is patched and the user's model is
not touched: the rule lives only in the re-evaluated program.

Which equations are rectifiers is decided by **structure**, never by name:
``jax.nn.relu`` (which is ``flax.linen.relu`` and ``flax.nnx.relu``) is a
``custom_jvp_call`` whose body, possibly wrapped in ``jit`` calls, is exactly
``max(x, 0.0)``; ``jax.nn.relu6`` is the same followed by ``min(., 6.0)``. A
bare ``max(x, 0)`` outside such a call is **not** a rectifier: LayerNorm and
BatchNorm compute ``max(0, var)`` and rewriting it corrupts gradients.

The rewrite recurses into ``jit``/``pjit`` and ``closed_call`` (inlined),
``remat``/``checkpoint``, ``scan``, ``cond``/``switch`` and ``while_loop``
(re-expressed with the public ``jax.checkpoint`` / ``jax.lax`` functions).
Other higher-order primitives (user ``custom_jvp`` / ``custom_vjp``
functions, ``shard_map``) are kept as they are: rectifiers inside them keep
their true gradient.

This module uses the semi-internal jaxpr API (``jax.extend.core``), whose
shape may change between JAX releases; attrib pins the JAX range it supports
and tests that the rewrite finds the rectifiers of ``jax.nn.relu``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from ._rules import rectifier

__all__ = ["Rectifier", "match_rectifier", "Program", "trace", "analyse"]

#: call primitives whose body is evaluated inline
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
#: remat / checkpoint primitive names across JAX releases
_REMATS = frozenset({"remat2", "checkpoint", "remat"})


@dataclass(frozen=True)
class Rectifier:
    """A matched rectifier: ``min(max(x, 0), upper)``; ``upper=None`` is relu."""

    upper: float | None


def _literal_value(atom: Any) -> float | None:
    if not isinstance(atom, jcore.Literal):
        return None
    value = np.asarray(atom.val)
    if value.shape != () or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value)


def _body(jaxpr: Any) -> Any:
    """The innermost body of ``jaxpr`` after unwrapping single-call wrappers."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    while len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in _CALLS:
        eqn = jaxpr.eqns[0]
        if list(eqn.invars) != list(jaxpr.invars) or list(eqn.outvars) != list(jaxpr.outvars):
            return jaxpr
        jaxpr = getattr(eqn.params["jaxpr"], "jaxpr", eqn.params["jaxpr"])
    return jaxpr


def match_rectifier(eqn: Any) -> Rectifier | None:
    """The rectifier ``eqn`` computes, or ``None``.

    Matches ``custom_jvp_call`` equations whose body is exactly ``max(x, 0.0)``
    (optionally followed by ``min(., upper)``) on one floating input.
    """
    if eqn.primitive.name != "custom_jvp_call" or len(eqn.invars) != 1 or len(eqn.outvars) != 1:
        return None
    if eqn.params.get("num_consts", 0) != 0:
        return None
    aval = getattr(eqn.invars[0], "aval", None)
    if aval is None or not np.issubdtype(np.dtype(aval.dtype), np.floating):
        return None
    body = _body(eqn.params["call_jaxpr"])
    if len(body.invars) != 1 or len(body.outvars) != 1 or body.constvars:
        return None
    eqns = list(body.eqns)
    if not 1 <= len(eqns) <= 2:
        return None
    first = eqns[0]
    if first.primitive.name != "max" or len(first.invars) != 2:
        return None
    x = body.invars[0]
    a, b = first.invars
    zero = b if a is x else a if b is x else None
    if zero is None or _literal_value(zero) != 0.0:
        return None
    upper: float | None = None
    out = first.outvars[0]
    if len(eqns) == 2:
        second = eqns[1]
        if second.primitive.name != "min" or len(second.invars) != 2:
            return None
        c, d = second.invars
        bound = d if c is out else c if d is out else None
        upper = _literal_value(bound) if bound is not None else None
        if upper is None or not upper > 0:
            return None
        out = second.outvars[0]
    if body.outvars[0] is not out:
        return None
    return Rectifier(upper)


# -- evaluation with the rule ---------------------------------------------------------------


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], rule: str,
              found: set[int]) -> list[Any]:
    """Evaluate ``jaxpr`` on ``args`` with every rectifier following ``rule``."""
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        consts, jaxpr = list(jaxpr.consts), jaxpr.jaxpr
    env: dict[Any, Any] = {}

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jcore.Literal) else env[atom]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = value
    for var, value in zip(jaxpr.invars, args):
        env[var] = value
    for eqn in jaxpr.eqns:
        outs = _evaluate_eqn(eqn, [read(v) for v in eqn.invars], rule, found)
        for var, value in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = value
    return [read(v) for v in jaxpr.outvars]


def _closed(jaxpr: Any, rule: str, found: set[int]) -> Callable[..., list[Any]]:
    return lambda *args: _evaluate(jaxpr, (), args, rule, found)


def _evaluate_eqn(eqn: Any, invals: list[Any], rule: str, found: set[int]) -> list[Any]:
    name = eqn.primitive.name
    params = eqn.params
    matched = match_rectifier(eqn)
    if matched is not None:
        found.add(id(eqn))
        return [rectifier(rule, matched.upper)(invals[0])]
    if name in _CALLS and "jaxpr" in params:
        return _evaluate(params["jaxpr"], (), invals, rule, found)
    if name in _REMATS and "jaxpr" in params:
        body = _closed(params["jaxpr"], rule, found)
        remat = jax.checkpoint(body, prevent_cse=params.get("prevent_cse", True),
                               policy=params.get("policy"))
        return list(remat(*invals))
    if name == "scan":
        return _scan(params, invals, rule, found)
    if name == "cond":
        branches = [_closed(branch, rule, found) for branch in params["branches"]]
        return list(jax.lax.switch(invals[0], branches, *invals[1:]))
    if name == "while":
        return _while(params, invals, rule, found)
    bind_params = eqn.primitive.get_bind_params(params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(bind_params, tuple):  # JAX < 0.7 returned (subfuns, params)
        subfuns, bind_params = bind_params
    context = getattr(getattr(eqn, "ctx", None), "manager", contextlib.nullcontext())
    with context:
        out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _scan(params: dict[str, Any], invals: list[Any], rule: str, found: set[int]) -> list[Any]:
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    consts, init, xs = invals[:n_consts], invals[n_consts:n_consts + n_carry], invals[n_consts + n_carry:]
    jaxpr = params["jaxpr"]

    def body(carry: list[Any], x: list[Any]) -> tuple[list[Any], list[Any]]:
        outs = _evaluate(jaxpr, (), [*consts, *carry, *x], rule, found)
        return outs[:n_carry], outs[n_carry:]

    carry, ys = jax.lax.scan(body, list(init), list(xs), length=params["length"],
                             reverse=params["reverse"], unroll=params.get("unroll", 1))
    return [*carry, *ys]


def _while(params: dict[str, Any], invals: list[Any], rule: str, found: set[int]) -> list[Any]:
    n_cond, n_body = params["cond_nconsts"], params["body_nconsts"]
    cond_consts, body_consts = invals[:n_cond], invals[n_cond:n_cond + n_body]
    init = invals[n_cond + n_body:]

    def cond(carry: Any) -> Any:
        return _evaluate(params["cond_jaxpr"], (), [*cond_consts, *carry], rule, found)[0]

    def body(carry: Any) -> Any:
        return _evaluate(params["body_jaxpr"], (), [*body_consts, *carry], rule, found)

    return list(jax.lax.while_loop(cond, body, list(init)))


# -- dependency analysis --------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """Rectifiers of a program, and those that depend on the marked inputs.

    Attributes
    ----------
    rectifiers : int
        Rectifier sites the rewrite replaces (a loop body counts once).
    downstream : int
        Of those, the ones whose input depends on a marked input (the layer
        perturbation): for them a guided rule would change the layer gradient.
    """

    rectifiers: int
    downstream: int


def analyse(closed: Any, marked: Sequence[bool]) -> Analysis:
    """Count the rectifiers of ``closed`` and those downstream of the ``marked`` inputs.

    Exact through inlined calls and ``remat``; conservative for loops and
    conditionals (every rectifier of a body is downstream when any of its
    inputs is).
    """
    sites: set[int] = set()
    downstream: set[int] = set()
    _analyse(closed, list(marked), sites, downstream)
    return Analysis(len(sites), len(downstream))


def _analyse(jaxpr: Any, marked: list[bool], sites: set[int], downstream: set[int]) -> list[bool]:
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    env: dict[Any, bool] = {var: False for var in jaxpr.constvars}
    env.update(zip(jaxpr.invars, marked))

    def read(atom: Any) -> bool:
        return False if isinstance(atom, jcore.Literal) else env.get(atom, False)

    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if match_rectifier(eqn) is not None:
            sites.add(id(eqn))
            if ins[0]:
                downstream.add(id(eqn))
            outs = ins[:1]
        elif name in _CALLS | _REMATS and "jaxpr" in eqn.params:
            outs = _analyse(eqn.params["jaxpr"], ins, sites, downstream)
        elif name in ("scan", "cond", "while"):
            bodies = (list(eqn.params["branches"]) if name == "cond" else
                      [eqn.params["jaxpr"]] if name == "scan" else
                      [eqn.params["cond_jaxpr"], eqn.params["body_jaxpr"]])
            any_marked = any(ins)
            for body in bodies:
                n_in = len(getattr(body, "jaxpr", body).invars)
                _analyse(body, [any_marked] * n_in, sites, downstream)
            outs = [any_marked] * len(eqn.outvars)
        else:
            outs = [any(ins)] * len(eqn.outvars)
        for var, value in zip(eqn.outvars, outs):
            env[var] = value
    return [read(v) for v in jaxpr.outvars]


@functools.lru_cache(maxsize=1)
def _relu_is_recognised() -> bool:
    import jax.numpy as jnp

    eqns = jax.make_jaxpr(jax.nn.relu)(jnp.zeros((), jnp.float32)).jaxpr.eqns
    return any(match_rectifier(eqn) is not None for eqn in eqns)


def check_supported() -> None:
    """Raise a clear :class:`attrib.AttribError` if this JAX spells ``jax.nn.relu`` unrecognisably.

    The rewrite relies on how ``jax.nn.relu`` appears in a jaxpr; a JAX release
    outside the supported range may change that, and then every guided map
    would silently be a vanilla gradient.
    """
    if not _relu_is_recognised():
        from attrib._errors import BackendError

        raise BackendError(
            f"backend: the jax backend cannot find jax.nn.relu in programs traced by JAX "
            f"{jax.__version__}, so it cannot apply guided or deconvnet rules; attrib supports "
            "jax>=0.10,<0.11 (pip install 'attrib[jax]')"
        )


# -- public entry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """A function traced once, ready to be evaluated under a rule.

    Attributes
    ----------
    closed : ClosedJaxpr
        The traced program, on the flattened arguments.
    out_tree : PyTreeDef
        Structure of the function's output.
    """

    closed: Any
    out_tree: Any

    def call(self, rule: str, *args: Any) -> Any:
        """Evaluate on ``args`` (same structure as at tracing) with ``rule``'s rectifiers."""
        flat = jax.tree_util.tree_leaves(args)
        if rule == "vanilla":
            outs = jcore.jaxpr_as_fun(self.closed)(*flat)
        else:
            outs = _evaluate(self.closed, (), flat, rule, set())
        return jax.tree_util.tree_unflatten(self.out_tree, outs)

    def function(self, rule: str) -> Callable[..., Any]:
        """``lambda *args: self.call(rule, *args)``."""
        return functools.partial(self.call, rule)


def trace(fn: Callable[..., Any], *args: Any) -> Program:
    """Trace ``fn(*args)`` (arrays or abstract values) to a :class:`Program`."""
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    return Program(closed, jax.tree_util.tree_structure(shape))
