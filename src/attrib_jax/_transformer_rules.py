"""AttnLRP / CP-LRP (:class:`attrib.rules.TransformerRules`) in the flattened jaxpr of a JAX model.

Used by :mod:`attrib_jax._relevance` when a rule set has ``transformer`` rules.
What an operation is, is decided by the data flow, as for the other rules
(flax's ``dot_product_attention``, ``jax.nn.dot_product_attention``,
``nn.LayerNorm`` and ``jax.nn.gelu`` are all plain primitives once traced):

- **product**: a ``dot_general`` of two activations (``q kᵀ``, ``A v``), with
  the scalar constant scalings read only by it (flax scales the query,
  ``jax.nn`` the logits) taken into it, as torch's ``scale``: the uniform
  ε-rule of :meth:`TransformerRules.product` (CP-LRP: all to the operand that
  is not a softmax's output);
- **regions**: from a non-linear element-wise primitive (``exp``, ``rsqrt``,
  ``erfc``, ``tanh``, ``logistic``, ``square``, …) the region around it is
  found: its entry ``x`` is the value every path to it passes through, and
  the region is every element-wise, reduction or broadcast equation computed
  from ``x`` alone; it must leave by one value. It is then
  - a **normalisation** (LayerNorm, RMSNorm) when holding each ``rsqrt`` /
    ``sqrt`` output constant leaves a map affine in ``x``: LRP-ε on that map
    (:meth:`TransformerRules.layer_norm`, scale and bias included);
  - a **softmax** ``exp(x − shift) / Σ exp(x − shift)`` (the shift constant
    along the summed axes): :meth:`TransformerRules.softmax` (CP-LRP: 0);
  - a **gated activation** ``x · g(x)`` (GELU, SiLU): the identity rule;
- **constant**: an activation plus a parameter that follows no layer (a
  position embedding): :meth:`TransformerRules.constant`.

Every step's forward is the model's own equations; its backward is the rule.
An equation inside attention none of these covers (a mask's ``select_n``,
dropout's ``mul``) is left to the planner, which raises naming it.

References
----------
Achtibat et al. (2024). AttnLRP: attention-aware layer-wise relevance
propagation for transformers. ICML. Ali et al. (2022). XAI for transformers:
better explanations through conservative propagation. ICML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from attrib.rules import Epsilon, TransformerRules

from ._lrp_rules import divide, linear_relevance

if TYPE_CHECKING:
    from ._relevance import _Node, _Planner

__all__ = ["Group", "groups", "constant_relevance"]

Array = Any

_ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "exp", "log", "log1p",
    "expm1", "tanh", "logistic", "erf", "erfc", "integer_pow", "square", "sqrt", "rsqrt", "pow",
    "copy", "copy_p", "convert_element_type", "stop_gradient"})
_SHAPING = frozenset({"reduce_sum", "reduce_max", "broadcast_in_dim", "reshape", "transpose",
                      "squeeze", "expand_dims"})
_REGION = _ELEMENTWISE | _SHAPING
#: non-linear element-wise primitives a region is searched around
_SEEDS = frozenset({"exp", "tanh", "logistic", "erf", "erfc", "integer_pow", "square", "sqrt",
                    "rsqrt", "log", "log1p", "expm1", "pow"})
#: held constant by the normalisation rule (1/σ, σ)
_FROZEN = frozenset({"rsqrt", "sqrt"})
#: unary primitives that move values without computing (layout, dtype)
_MOVES = frozenset({"convert_element_type", "copy", "copy_p", "transpose", "reshape",
                    "broadcast_in_dim", "squeeze", "expand_dims"})
_LINEAR_LIVE = frozenset({"add", "sub", "neg", "mul", "div", "reduce_sum"}) | _MOVES
_MAX_REGION = 64


@dataclass
class Group:
    """Equations (indices, program order) replaced by one step: ``kind`` names its rule."""

    kind: str
    nodes: list[int]
    step: Any


# -- the graph around the planner ---------------------------------------------------------------
class _View:
    def __init__(self, planner: _Planner) -> None:
        self.p = planner
        self.nodes = planner.graph.nodes
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for k, node in enumerate(self.nodes):
            for i in node.outs:
                self.producer[i] = k
            for a in node.ins:
                if isinstance(a, int):
                    self.consumers.setdefault(a, []).append(k)
        self.outs = {a for a in planner.graph.outs if isinstance(a, int)}
        self.owned: set[int] = set()

    def prim(self, k: int) -> str:
        return str(self.nodes[k].eqn.primitive.name)

    def acts(self, k: int) -> list[int]:
        return [a for a in self.nodes[k].ins if self.p.is_act(a)]

    def scalar_constant(self, atom: Any) -> bool:
        if self.p.is_act(atom):
            return False
        shape = np.shape(atom.value) if not isinstance(atom, int) \
            else self.p.graph.avals[atom].shape
        return int(np.prod(shape)) == 1

    def single_use(self, value: int) -> bool:
        return len(self.consumers.get(value, ())) == 1 and value not in self.outs


def _external(nodes: list[_Node], inputs: set[int]) -> list[int]:
    made = {i for node in nodes for i in node.outs}
    out: list[int] = []
    for node in nodes:
        for a in node.ins:
            if isinstance(a, int) and a not in inputs and a not in made and a not in out:
                out.append(a)
    return out


def _run(nodes: list[_Node], env: dict[int, Any],
         fixed: dict[int, Any] | None = None) -> dict[int, Any]:
    from ._relevance import _bind, _read
    for node in nodes:
        if fixed and node.outs[0] in fixed:
            env[node.outs[0]] = fixed[node.outs[0]]
            continue
        env.update(zip(node.outs, _bind(node.eqn, [_read(env, a) for a in node.ins])))
    return env


# -- products of two activations ------------------------------------------------------------------
def _scaling(view: _View, k: int, value: int) -> bool:
    """Whether node ``k`` multiplies (or divides) the activation ``value`` by a scalar constant."""
    node = view.nodes[k]
    if view.prim(k) not in ("mul", "div") or len(node.ins) != 2:
        return False
    side = 0 if node.ins[0] == value else 1
    return node.ins[side] == value and node.ins[1 - side] != value \
        and view.scalar_constant(node.ins[1 - side]) and not (view.prim(k) == "div" and side == 1)


def _products(view: _View, rules: TransformerRules) -> list[tuple[list[int], list[int], int]]:
    """``(nodes, [a, b], out)`` of each ``dot_general`` of two activations."""
    found = []
    for k, node in enumerate(view.nodes):
        if view.prim(k) != "dot_general" or len(view.acts(k)) != 2:
            continue
        lead: list[int] = []
        operands = list(node.ins)
        for pos in (0, 1):
            v = operands[pos]
            while view.single_use(v) and v in view.producer \
                    and _scaling(view, view.producer[v], view.acts(view.producer[v])[0]):
                j = view.producer[v]
                lead.insert(0, j)
                v = view.acts(j)[0]
            operands[pos] = v
        trail: list[int] = []
        out = node.outs[0]
        while view.single_use(out) and _scaling(view, view.consumers[out][0], out):
            trail.append(view.consumers[out][0])
            out = view.nodes[trail[-1]].outs[0]
        found.append((sorted(lead) + [k] + trail, operands, out))
    return found


def _behind(view: _View, value: Any, targets: set[int]) -> bool:
    """Whether ``value`` is one of ``targets`` seen through unary moves (casts, transposes)."""
    for _ in range(16):
        if value in targets:
            return True
        k = view.producer.get(value) if isinstance(value, int) else None
        if k is None or view.prim(k) not in _MOVES or len(view.acts(k)) != 1:
            return False
        value = view.acts(k)[0]
    return False


@dataclass
class _ProductStep:
    """``z = scale · a ⋅ b`` (a ``dot_general`` and its scalings): the uniform ε-rule."""

    nodes: list[_Node]
    a: int
    b: int
    others: list[int]
    out: int
    shares: tuple[float, float]
    epsilon: float

    def forward(self, a: Array, b: Array, *others: Array) -> Array:
        env = {**dict(zip(self.others, others)), self.a: a, self.b: b}
        return _run(self.nodes, env)[self.out]

    def run(self, env: dict[int, Any]) -> None:
        from ._relevance import _zero_cotangent
        fn = jax.custom_vjp(self.forward)

        def fwd(a: Array, b: Array, *others: Array) -> tuple[Array, Any]:
            out = self.forward(a, b, *others)
            return out, (a, b, others, out)

        def bwd(res: Any, r: Array) -> tuple[Any, ...]:
            a, b, others, out = res
            s = divide(r, out, self.epsilon)
            _, vjp = jax.vjp(lambda a_, b_: self.forward(a_, b_, *others), a, b)
            ga, gb = vjp(s)
            share_a, share_b = self.shares
            return (share_a * a * ga, share_b * b * gb, *[_zero_cotangent(o) for o in others])

        fn.defvjp(fwd, bwd)
        env[self.out] = fn(env[self.a], env[self.b], *[env[i] for i in self.others])


# -- regions around a non-linear element-wise primitive ------------------------------------------
def _entry(view: _View, frontier: set[int], visited: set[int]) -> int | None:
    """The value every path to ``frontier`` passes through (``visited`` gains the equations
    between), or None."""
    frontier = set(frontier)
    while len(frontier) > 1:
        v = max(frontier)  # the latest value first: ids follow program order
        frontier.discard(v)
        k = view.producer.get(v)
        if k is None or k in view.owned or view.prim(k) not in _REGION \
                or len(visited) >= _MAX_REGION:
            return None
        visited.add(k)
        frontier.update(view.acts(k))
    return frontier.pop() if frontier else None


def _region(view: _View, x: int, before: set[int]) -> tuple[list[int], int] | None:
    """``(nodes, out)``: the single-exit region computed from ``x`` alone that holds
    ``before``, or None."""
    values, region = {x}, []
    start = view.producer.get(x, -1) + 1
    for k in range(start, len(view.nodes)):
        acts = view.acts(k)
        if k in view.owned or view.prim(k) not in _REGION or not acts \
                or not all(a in values for a in acts):
            continue
        region.append(k)
        values.update(view.nodes[k].outs)
        if len(region) > _MAX_REGION:
            return None
    made = {i for k in region for i in view.nodes[k].outs}
    sinks = [v for v in made if v in view.outs
             or any(c not in region for c in view.consumers.get(v, ()))]
    if len(sinks) != 1:
        return None
    out = sinks[0]
    needed, stack = set(), [out]  # the region is what computes its exit
    while stack:
        k = view.producer[stack.pop()]
        if k in needed or k not in region:
            continue
        needed.add(k)
        stack.extend(a for a in view.acts(k) if a != x)
    if not before <= needed:
        return None
    return sorted(needed), out


def _frozen_affine(view: _View, x: int, nodes: list[int], out: int) -> list[int] | None:
    """The ``rsqrt``/``sqrt`` outputs that, held constant, leave ``out`` affine in ``x``."""
    frozen = {view.nodes[k].outs[0] for k in nodes if view.prim(k) in _FROZEN}
    if not frozen:
        return None
    derived = set(frozen)  # values computed from frozen values and constants only
    for k in nodes:
        acts = view.acts(k)
        if acts and all(a in derived for a in acts):
            derived.update(view.nodes[k].outs)
    used, stack = False, [out]
    seen: set[int] = set()
    while stack:  # the live path: from out back to x, not through held values
        v = stack.pop()
        if v == x or v in seen:
            continue
        seen.add(v)
        k = view.producer[v]
        acts = view.acts(k)
        live = [a for a in acts if a not in derived]
        held = [a for a in acts if a in derived]
        used = used or bool(held)
        p = view.prim(k)
        if p not in _LINEAR_LIVE or (p == "mul" and len(live) != 1) or \
                (p == "div" and (len(live) != 1 or view.nodes[k].ins[0] != live[0])):
            return None
        stack.extend(live)
    return sorted(frozen) if used else None


def _through_moves(view: _View, value: int, stop: int, nodes: set[int]) -> list[int] | None:
    """The unary moves from ``stop`` to ``value`` (program order), or None if it is not so reached."""
    chain: list[int] = []
    while value != stop:
        k = view.producer.get(value)
        if k is None or k not in nodes or view.prim(k) not in _MOVES or len(view.acts(k)) != 1:
            return None
        chain.insert(0, k)
        value = view.acts(k)[0]
    return chain


def _softmax(view: _View, x: int, nodes: list[int], out: int) -> dict[str, Any] | None:
    """The parts of a softmax region (``pre`` moves to x', the ``div``, ``post`` moves), or None."""
    inside = set(nodes)
    divs = [k for k in nodes if view.prim(k) == "div" and len(view.acts(k)) == 2]
    if len(divs) != 1:
        return None
    d = divs[0]
    post = _through_moves(view, out, view.nodes[d].outs[0], inside)
    num, den = view.nodes[d].ins
    e = view.producer.get(num)
    if post is None or e is None or view.prim(e) != "exp":
        return None
    v = den
    while view.producer.get(v) is not None and view.prim(view.producer[v]) in _MOVES:
        v = view.acts(view.producer[v])[0]
    total = view.producer.get(v)
    if total is None or view.prim(total) != "reduce_sum" or view.nodes[total].ins[0] != num:
        return None
    axes = tuple(int(a) for a in view.nodes[total].eqn.params["axes"])
    base = view.nodes[e].ins[0]
    k = view.producer.get(base)
    if k is not None and view.prim(k) == "sub" and len(view.acts(k)) == 2:
        base, shift = view.nodes[k].ins
        shape = view.p.graph.avals[shift].shape
        if any(shape[a] != 1 for a in axes):
            return None
        stack, found_max = [shift], False
        while stack:  # the shift: a maximum over the axes, broadcast back (stop_gradient)
            v = stack.pop()
            j = view.producer.get(v)
            if v == x or j is None:
                continue
            if j not in inside or view.prim(j) not in (_MOVES | {"reduce_max", "max",
                                                                  "stop_gradient"}):
                return None
            found_max = found_max or view.prim(j) == "reduce_max"
            stack.extend(view.acts(j))
        if not found_max:
            return None
    pre = _through_moves(view, base, x, inside)
    if pre is None:
        return None
    return {"pre": pre, "base": base, "div": view.nodes[d].outs[0], "post": post, "axes": axes}


def _gated(view: _View, x: int, nodes: list[int], out: int) -> bool:
    """Whether the region is ``x · g(x)`` (GELU, SiLU), element-wise, one shape in and out."""
    graph = view.p.graph
    if any(view.prim(k) not in _ELEMENTWISE for k in nodes) \
            or graph.avals[x].shape != graph.avals[out].shape:
        return False
    v = out
    while view.prim(view.producer[v]) in ("copy", "copy_p", "convert_element_type"):
        v = view.acts(view.producer[v])[0]
    k = view.producer[v]
    if view.prim(k) != "mul" or len(view.acts(k)) != 2:
        return False
    for a in view.acts(k):  # one factor is x times constants
        while a != x and a in view.producer and view.producer[a] in nodes and \
                (_scaling(view, view.producer[a], view.acts(view.producer[a])[0])
                 or view.prim(view.producer[a]) in ("neg", "convert_element_type")):
            a = view.acts(view.producer[a])[0]
        if a == x:
            return True
    return False


def _layer_norm(nodes: list[_Node], x: int, out: int, frozen: list[int],
                epsilon: float) -> Callable[[Array, dict[int, Any], Array], Array]:
    def relevance(xv: Array, values: dict[int, Any], r: Array) -> Array:
        env = _run(nodes, {**values, x: xv})
        fixed = {i: jax.lax.stop_gradient(env[i]) for i in frozen}

        def f(inp: Array, _w: Any, _b: Any) -> Array:
            return _run(nodes, {**values, x: inp}, fixed)[out]

        return linear_relevance(Epsilon(epsilon), f, xv, None, None, r)
    return relevance


def _softmax_rule(nodes: list[_Node], x: int, parts: dict[str, Any], by_index: Callable[[int], _Node],
                  conservative: bool) -> Callable[[Array, dict[int, Any], Array], Array]:
    pre = [by_index(k) for k in parts["pre"]]
    post = [by_index(k) for k in parts["post"]]
    base, div, axes = parts["base"], parts["div"], parts["axes"]
    out = post[-1].outs[0] if post else div

    def relevance(xv: Array, values: dict[int, Any], r: Array) -> Array:
        if conservative:
            return jnp.zeros_like(xv)
        env = _run(nodes, {**values, x: xv})
        s = env[div]
        rs = jax.vjp(lambda v: _run(post, {**values, div: v})[out], s)[1](r)[0]
        xb = env[base]
        rb = xb * (rs - s * jnp.sum(rs, axis=axes, keepdims=True))
        return jax.vjp(lambda v: _run(pre, {**values, x: v})[base], xv)[1](rb)[0]
    return relevance


def _identity(xv: Array, values: dict[int, Any], r: Array) -> Array:
    return r.astype(xv.dtype)


def constant_relevance(epsilon: float) -> Callable[[Array, Array, Array], Array]:
    """``x + c`` (``c`` a parameter): ``x ⊙ R / (x + c)``, mirrors :meth:`TransformerRules.constant`."""
    def relevance(xv: Array, out: Array, r: Array) -> Array:
        return xv * divide(r, out, epsilon)
    return relevance


def _classify(view: _View, seed: int, rules: TransformerRules) -> tuple[str, list[int], Any] | None:
    """The rule step of the region around ``seed``: its entry is moved back (a softmax's
    ``x − max x``) until the region is a normalisation, a softmax or a gated activation."""
    from ._relevance import _Fused

    nodes = view.nodes
    visited, frontier = {seed}, set(view.acts(seed))
    for _ in range(4):
        x = _entry(view, frontier, visited)
        region = None if x is None else _region(view, x, visited)
        if x is None:
            return None
        if region is not None:
            members, out = region
            chosen = [nodes[j] for j in members]
            others = _external(chosen, {x})
            frozen = _frozen_affine(view, x, members, out)
            parts = None if frozen else _softmax(view, x, members, out)
            if frozen:
                rule = _layer_norm(chosen, x, out, frozen, rules.epsilon)
                return "layer_norm", members, _Fused(chosen, x, others, out, rule)
            if parts is not None:
                rule = _softmax_rule(chosen, x, parts, nodes.__getitem__, rules.conservative)
                return "softmax", members, _Fused(chosen, x, others, out, rule)
            if _gated(view, x, members, out):
                return "elementwise", members, _Fused(chosen, x, others, out, _identity)
        k = view.producer.get(x)
        if k is None or k in view.owned or view.prim(k) not in _REGION:
            return None
        visited.add(k)
        frontier = set(view.acts(k))
    return None


def groups(planner: _Planner) -> list[Group]:
    """The products and regions of ``planner``'s graph under its rule set's transformer rules."""
    rules = planner.rules.transformer
    assert rules is not None
    view = _View(planner)
    nodes = view.nodes
    found: list[Group] = []
    products = _products(view, rules)
    for members, _, _ in products:
        view.owned.update(members)
    softmax_outs: set[int] = set()
    for k in range(len(nodes)):
        if k in view.owned or view.prim(k) not in _SEEDS or not view.acts(k):
            continue
        classified = _classify(view, k, rules)
        if classified is None:
            continue
        kind, members, step = classified
        if kind == "softmax":
            softmax_outs.add(step.out)
        view.owned.update(members)
        found.append(Group(kind, members, step))
    for members, (a, b), out in products:
        chosen = [nodes[j] for j in members]
        if not rules.conservative:
            shares = (0.5, 0.5)
        elif _behind(view, b, softmax_outs) and not _behind(view, a, softmax_outs):
            shares = (1.0, 0.0)  # CP-LRP: the attention takes none, the values all
        else:
            shares = (0.0, 1.0)
        step = _ProductStep(chosen, a, b, _external(chosen, {a, b}), out, shares, rules.epsilon)
        found.append(Group("product", members, step))
    return found
