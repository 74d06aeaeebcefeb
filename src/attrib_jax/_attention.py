"""Attention capture on an unmodified JAX program: the softmax that weights the values, found in its jaxpr.

The forward function is traced to a jaxpr and evaluated again equation by
equation (as the rectifier rewrite does); an **attention site** is a softmax
normalisation ``div(e, broadcast(reduce_sum(e)))`` with ``e = exp(...)`` whose
result is multiplied with the values by a ``dot_general``: what flax's
``dot_product_attention`` (linen ``MultiHeadDotProductAttention``, nnx
``MultiHeadAttention``) and ``jax.nn.dot_product_attention`` (its ``"xla"``
implementation) compute. A softmax whose result is not contracted by a
``dot_general`` (a classifier's final softmax) is not one. At each site a
zero perturbation is added to the probabilities, so the gradient with
respect to it is the true gradient at the attention; the values are those of
the unmodified program.

Layouts: flax's weights are (N, heads, T, S); ``jax.nn.dot_product_attention``
computes them as (G, N, K, T, S) (query heads grouped per key head, under a
``vmap``), returned as (N, K * G, T, S), head ``k * G + g`` as its query
heads are numbered.

Names: the module path of the site from the program's name stack (linen
modules name their scopes: ``"encoder/block0/attn"``, the root module's name
dropped); where the program carries none (nnx, plain functions) the sites
are named ``"attention0"``, ``"attention1"``, ... in call order. Sites inside
``scan``, ``while`` or ``cond`` bodies (``nn.scan``'d blocks) are not reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

__all__ = ["Site", "find_sites", "evaluate"]

_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


@dataclass(frozen=True)
class Site:
    """One attention site: its name and the shape of its probabilities as the program holds them."""

    name: str
    shape: tuple[int, ...]


def _producers(jaxpr: Any) -> dict[Any, Any]:
    return {var: eqn for eqn in jaxpr.eqns for var in eqn.outvars}


def _consumers(jaxpr: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for eqn in jaxpr.eqns:
        for var in eqn.invars:
            if not isinstance(var, jcore.Literal):
                out.setdefault(var, []).append(eqn)
    return out


def _is_site(eqn: Any, producers: dict[Any, Any], consumers: dict[Any, list[Any]]) -> bool:
    """Whether ``eqn`` is a softmax's ``div`` whose result a ``dot_general`` contracts."""
    if eqn.primitive.name != "div" or len(eqn.invars) != 2:
        return False
    num, den = eqn.invars
    exp = producers.get(num)
    if exp is None or exp.primitive.name != "exp":
        return False
    sums = producers.get(den)
    while sums is not None and sums.primitive.name in ("broadcast_in_dim", "reshape"):
        sums = producers.get(sums.invars[0])
    if sums is None or sums.primitive.name != "reduce_sum" or sums.invars[0] is not num:
        return False
    if len(eqn.outvars[0].aval.shape) < 3:
        return False
    stack = list(consumers.get(eqn.outvars[0], ()))
    for _ in range(4):  # through dtype casts and transposes
        nxt = []
        for use in stack:
            if use.primitive.name == "dot_general":
                return True
            if use.primitive.name in ("convert_element_type", "transpose", "reshape"):
                nxt += consumers.get(use.outvars[0], [])
        stack = nxt
    return False


def _scope(eqn: Any) -> str:
    stack = getattr(eqn.source_info.name_stack, "stack", ())
    names = [str(s.name) for s in stack if type(s).__name__ == "Scope"]
    # drop einsum scopes ('...qhd,...khd->...hqk') and the root module's class name
    names = [n for n in names if "->" not in n]
    return "/".join(names[1:])


class _Recorder:
    """Evaluation state: sites found in order, and the perturbations to add."""

    def __init__(self, eps: Sequence[Any] | None) -> None:
        self.eps = eps
        self.sites: list[Site] = []
        self.values: list[Any] = []
        self._names: dict[str, int] = {}

    def name(self, eqn: Any) -> str:
        base = _scope(eqn) or "attention"
        seen = self._names.get(base, 0)
        self._names[base] = seen + 1
        if base == "attention":
            return f"attention{seen}"
        return base if not seen else f"{base}#{seen}"


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], rec: _Recorder) -> list[Any]:
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        consts, jaxpr = list(jaxpr.consts), jaxpr.jaxpr
    env: dict[Any, Any] = {}

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jcore.Literal) else env[atom]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    producers, consumers = _producers(jaxpr), _consumers(jaxpr)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS and "jaxpr" in eqn.params:
            outs = _evaluate(eqn.params["jaxpr"], (), invals, rec)
        else:
            bind_params = eqn.primitive.get_bind_params(eqn.params)
            subfuns: tuple[Any, ...] = ()
            if isinstance(bind_params, tuple):
                subfuns, bind_params = bind_params
            out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
            outs = list(out) if eqn.primitive.multiple_results else [out]
            if _is_site(eqn, producers, consumers):
                index = len(rec.sites)
                rec.sites.append(Site(rec.name(eqn), tuple(outs[0].shape)))
                rec.values.append(outs[0])
                if rec.eps is not None and index < len(rec.eps):
                    outs = [outs[0] + rec.eps[index].astype(outs[0].dtype)]
        for var, value in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = value
    return [read(v) for v in jaxpr.outvars]


def evaluate(closed: Any, flat_args: Sequence[Any],
             eps: Sequence[Any] | None) -> tuple[list[Any], list[Site], list[Any]]:
    """``(outputs, sites, probabilities)`` of the traced program with ``eps[i]`` added at site ``i``."""
    rec = _Recorder(eps)
    outs = _evaluate(closed, (), list(flat_args), rec)
    return outs, rec.sites, rec.values


def find_sites(closed: Any, flat_args: Sequence[Any]) -> list[Site]:
    """The attention sites of ``closed`` (an abstract evaluation: nothing is computed)."""
    found: list[Site] = []

    def run(*args: Any) -> Any:
        outs, sites, _ = evaluate(closed, args, None)
        found.extend(sites)
        return outs

    jax.eval_shape(run, *flat_args)
    return found


def standard(value: Any) -> Any:
    """Probabilities as the program holds them -> (N, heads, T, S) (see module docs)."""
    if value.ndim == 4:
        return value
    if value.ndim == 5:  # jax.nn.dot_product_attention: (G, N, K, T, S)
        g, n, k, t, s = value.shape
        return jnp.transpose(value, (1, 2, 0, 3, 4)).reshape(n, k * g, t, s)
    return value.reshape((-1, *value.shape[-3:]))
