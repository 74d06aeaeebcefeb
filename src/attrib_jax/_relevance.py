"""Rule sets beyond rectifiers (LRP) on an unmodified JAX program, by rewriting its jaxpr.

The model's forward function is traced once to a jaxpr, flattened (``jit``
calls and non-rectifier ``custom_jvp`` / ``custom_vjp`` bodies inlined) and
evaluated again with the operations a :class:`attrib.rules.RuleSet` names
replaced by ``jax.custom_vjp`` functions. Each forward is the original
equations (the logits are bitwise those of the model); each backward applies
the rule of :mod:`attrib.rules` (mirroring its NumPy reference and the torch
backend's :mod:`attrib_torch._relevance`). What an operation is, is decided by
the data flow, never by names: a value is an *activation* when it depends on
the input, a *constant* when it depends only on parameters and literals.

- ``conv_general_dilated`` / ``dot_general`` of one activation and one
  constant (the kernel) is a convolution / dense layer. The element-wise
  constant arithmetic that follows it alone (``add``/``sub``/``mul``/``div``
  /``neg`` with a constant: the bias add and BatchNorm in eval mode, however
  Flax spells them) is affine, ``y = z * s + t``; it is merged into the layer
  exactly (``W * s``, bias ``t``) when ``s`` is per output feature, as zennit's
  canonizers do by hand. The layer's name, for per-layer rules, is the path of
  its kernel in the parameters (``"layer1/0/conv1"``; linen without the
  ``"params"`` collection, nnx without ``.value``).
- ``reduce_window_sum`` / ``reduce_sum`` and the constant scaling after them
  (average pooling, ``jnp.mean``) get the pooling rule; ``add`` of two
  activations the addition rule (a constant added to an activation is a bias,
  never an addition); rectifiers (``jax.nn.relu``/``relu6``, matched as in
  :mod:`attrib_jax._rewrite`) the set's rectifier rule (``"pass"`` for LRP).
- Max pooling (``reduce_window_max``, ``reduce_max``), reshapes, transposes,
  broadcasts, slicing, padding, concatenation and dtype conversions keep their
  true derivative (XLA routes a window's gradient to its first maximum). A
  convolution of a zero ``pad`` of an activation is one layer ``conv(pad(x))``,
  so every rule sees the unpadded input as it sees the convolution's own
  padding (as the torch backend treats ``F.pad``).
- ``remat`` / ``checkpoint``, ``scan`` and ``cond`` are re-expressed with the
  public functions around rewritten bodies (a layer and the BatchNorm after it
  must sit in the same body to be merged); an activation carried by a
  ``while_loop`` raises (reverse mode cannot pass it).

With ``transformer`` rules (AttnLRP / CP-LRP) products of two activations,
softmax, LayerNorm, gated activations and added parameters get theirs too
(:mod:`attrib_jax._transformer_rules`).

Under a strict rule set (every LRP set) any other operation on an activation
raises :class:`attrib.AttribError` naming the primitive and where it is in the
model: a map the rules do not define is never returned.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from attrib._errors import AttribError, argument_error, did_you_mean, shown
from attrib._model import GradientRequest, GradientResult
from attrib._targets import resolve_target_weights, resolve_targets
from attrib.rules import Epsilon, LinearRule, Norm, RuleSet, ZBox

from ._lrp_rules import divide as _divide
from ._lrp_rules import linear_relevance
from ._rewrite import _CALLS, _REMATS, Program, match_rectifier, trace
from ._rules import _forward as _rectified
from ._rules import rectifier

__all__ = ["relevance_gradients", "Plan", "plan"]

Array = Any

#: primitives that keep their true derivative on activations (structure, max pooling, dtypes)
STRUCTURAL = frozenset({
    "reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims", "rev", "slice",
    "dynamic_slice", "gather", "pad", "concatenate", "split", "convert_element_type", "copy",
    "copy_p", "reduce_precision", "reduce_window_max", "reduce_max", "select_and_gather_add",
    "argmax", "argmin", "stop_gradient", "optimization_barrier",
})
#: element-wise arithmetic with a constant: the affine tail of a layer (bias, BatchNorm)
_AFFINE = frozenset({"add", "sub", "mul", "div", "neg", "convert_element_type"})
_SCALING = frozenset({"mul", "div", "convert_element_type"})
_POOLS = frozenset({"reduce_window_sum", "reduce_sum"})
_LINEAR = {"conv_general_dilated": "convolution", "dot_general": "dense"}
#: unary structural primitives through which a constant keeps naming its parameter
_NAMING = frozenset({"convert_element_type", "reshape", "broadcast_in_dim", "transpose", "copy",
                     "copy_p", "squeeze", "expand_dims"})
_NONNEG_KEEP = frozenset({"reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims",
                          "rev", "slice", "dynamic_slice", "gather", "convert_element_type",
                          "copy", "copy_p", "reduce_window_max", "reduce_max",
                          "reduce_window_sum", "reduce_sum"})


# -- the flattened program --------------------------------------------------------------------
@dataclass(frozen=True)
class _Lit:
    """A literal or closed-over constant operand."""

    value: Any


Atom = Any  # int (a value's id) or _Lit


@dataclass
class _Node:
    eqn: Any
    ins: list[Atom]
    outs: list[int]
    within: tuple[str, ...] = ()  # names of the inlined jax functions around it (jnp, jax.nn)


@dataclass
class _Graph:
    invars: list[int]
    nodes: list[_Node]
    outs: list[Atom]
    avals: dict[int, Any]


class _Ids:
    def __init__(self) -> None:
        self.next = 0

    def new(self) -> int:
        self.next += 1
        return self.next - 1


def _graph(jaxpr: Any, ids: _Ids | None = None,
           keep: Callable[[Any], bool] | None = None) -> _Graph:
    """``jaxpr`` (closed or open) with ``jit`` calls and custom-derivative bodies inlined
    (but the ``jit`` equations ``keep`` says to keep whole)."""
    ids = ids or _Ids()
    open_ = getattr(jaxpr, "jaxpr", jaxpr)
    invars = [ids.new() for _ in open_.invars]
    graph = _Graph(invars, [], [], {})
    for i, var in zip(invars, open_.invars):
        graph.avals[i] = var.aval
    graph.outs = _flatten(jaxpr, list(invars), graph, ids, (), keep)
    return graph


def _flatten(jaxpr: Any, ins: list[Atom], graph: _Graph, ids: _Ids,
             within: tuple[str, ...], keep: Callable[[Any], bool] | None = None) -> list[Atom]:
    consts: list[Any] = []
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        consts, jaxpr = list(jaxpr.consts), jaxpr.jaxpr
    env: dict[Any, Atom] = {var: _Lit(value) for var, value in zip(jaxpr.constvars, consts)}
    env.update(zip(jaxpr.invars, ins))

    def read(atom: Any) -> Atom:
        return _Lit(atom.val) if isinstance(atom, jcore.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        args = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        params = eqn.params
        inner = (*within, str(params.get("name", name)))
        if name in _CALLS and "jaxpr" in params and not (keep and keep(eqn)):
            outs = _flatten(params["jaxpr"], args, graph, ids, inner, keep)
        elif name == "custom_jvp_call" and match_rectifier(eqn) is None:
            outs = _flatten(params["call_jaxpr"], args, graph, ids, inner, keep)
        elif name == "custom_vjp_call" and "call_jaxpr" in params:
            outs = _flatten(params["call_jaxpr"], args, graph, ids, inner, keep)
        else:
            outs = [ids.new() for _ in eqn.outvars]
            for i, var in zip(outs, eqn.outvars):
                graph.avals[i] = var.aval
            graph.nodes.append(_Node(eqn, args, outs, within))
        for var, atom in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = atom
    return [read(v) for v in jaxpr.outvars]


def _read(env: dict[int, Any], atom: Atom) -> Any:
    return atom.value if isinstance(atom, _Lit) else env[atom]


def _bind(eqn: Any, values: Sequence[Any]) -> list[Any]:
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(bind_params, tuple):  # JAX < 0.7 returned (subfuns, params)
        subfuns, bind_params = bind_params
    context = getattr(getattr(eqn, "ctx", None), "manager", contextlib.nullcontext())
    with context:
        out = eqn.primitive.bind(*subfuns, *values, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _floating(aval: Any) -> bool:
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _where(node: _Node) -> str:
    """Where ``node`` is: the enclosing jax functions and the Flax module path, if known."""
    out = ""
    functions = [name for name in node.within if not name.startswith("<")]
    if functions:
        out += f" (inside {functions[-1]!r})"
    source = getattr(node.eqn, "source_info", None)
    stack = str(getattr(source, "name_stack", "") or "")
    if stack:
        out += f" in module {stack!r}"
    return out + _user_frame(getattr(source, "traceback", None))


@functools.cache
def _libraries() -> tuple[str, ...]:
    """Folders of the libraries between a model's code and its equations."""
    import contextlib as _contextlib
    import os
    import sys

    import attrib

    modules = [jax, attrib, sys.modules.get("flax"), sys.modules.get("jaxlib")]
    files = [getattr(m, "__file__", None) for m in modules] + [__file__]
    folders = [os.path.dirname(f) + os.sep for f in files if f]
    return (*folders, str(_contextlib.__file__))


def _user_frame(traceback: Any) -> str:
    """`` called from file:line (via jax's 'gelu')``: the model's line that made the equation."""
    try:
        frames = list(traceback.frames)  # innermost first
    except Exception:  # noqa: BLE001 - no traceback kept: say nothing
        return ""
    library = None
    for frame in frames:
        name = str(frame.file_name)
        if name.startswith(_libraries()):
            library = frame.function_name
            continue
        named = library and library.isidentifier() and not library.startswith("_")
        via = f" via {library!r}" if named else ""
        return f" at {name.rsplit('/', 1)[-1]}:{frame.line_num}{via}"
    return ""


# -- planning: what each equation becomes -----------------------------------------------------
@dataclass
class _Context:
    """What planning shares across bodies: the rule set, parameter names, counts, first layer."""

    rules: RuleSet
    counts: Counter[str] = field(default_factory=Counter)
    first_seen: bool = False
    names: set[str] = field(default_factory=set)


class _Step:
    def run(self, env: dict[int, Any]) -> None:
        raise NotImplementedError


@dataclass
class _BindStep(_Step):
    node: _Node

    def run(self, env: dict[int, Any]) -> None:
        outs = _bind(self.node.eqn, [_read(env, a) for a in self.node.ins])
        env.update(zip(self.node.outs, outs))


def _zero_cotangent(value: Any) -> Any:
    if jnp.issubdtype(value.dtype, jnp.inexact):
        return jnp.zeros_like(value)
    return np.zeros(value.shape, dtype=jax.dtypes.float0)


def _run_nodes(nodes: list[_Node], env: dict[int, Any]) -> None:
    for node in nodes:
        env.update(zip(node.outs, _bind(node.eqn, [_read(env, a) for a in node.ins])))


@dataclass
class _Fused(_Step):
    """Equations replaced by one ``custom_vjp``: forward as written, backward by ``relevance``."""

    nodes: list[_Node]
    x: int
    others: list[int]
    out: int
    relevance: Callable[[Array, dict[int, Any], Array], Array]

    def forward(self, x: Array, *others: Array) -> Array:
        env = {self.x: x, **dict(zip(self.others, others))}
        _run_nodes(self.nodes, env)
        return env[self.out]

    def run(self, env: dict[int, Any]) -> None:
        fn = jax.custom_vjp(self.forward)

        def fwd(x: Array, *others: Array) -> tuple[Array, Any]:
            return self.forward(x, *others), (x, others)

        def bwd(res: Any, r: Array) -> tuple[Any, ...]:
            x, others = res
            relevance = self.relevance(x, dict(zip(self.others, others)), r)
            return (relevance, *[_zero_cotangent(o) for o in others])

        fn.defvjp(fwd, bwd)
        env[self.out] = fn(env[self.x], *[env[i] for i in self.others])


@dataclass
class _AddStep(_Step):
    node: _Node
    rule: LinearRule | None

    def run(self, env: dict[int, Any]) -> None:
        eqn, rule = self.node.eqn, self.rule

        @jax.custom_vjp
        def add(a: Array, b: Array) -> Array:
            return _bind(eqn, [a, b])[0]

        def fwd(a: Array, b: Array) -> tuple[Array, Any]:
            out = add(a, b)
            return out, (a, b, out)

        def bwd(res: Any, r: Array) -> tuple[Array, Array]:
            a, b, out = res
            if rule is None:
                return r, r
            eps = rule.epsilon if isinstance(rule, Epsilon) else getattr(rule, "stabilizer", 0.0)
            s = _divide(r, out, eps)
            return a * s, b * s

        add.defvjp(fwd, bwd)
        a, b = (_read(env, atom) for atom in self.node.ins)
        env[self.node.outs[0]] = add(a, b)


@functools.cache
def _passed(upper: float | None) -> Callable[[Array], Array]:
    """The rectifier whose backward pass hands the relevance on unchanged (LRP's "pass")."""

    @jax.custom_vjp
    def rect(x: Array) -> Array:
        return _rectified(x, upper)

    rect.defvjp(lambda x: (_rectified(x, upper), None), lambda _, r: (r,))
    return rect


@dataclass
class _RectStep(_Step):
    node: _Node
    rule: str
    upper: float | None

    def run(self, env: dict[int, Any]) -> None:
        x = _read(env, self.node.ins[0])
        if self.rule == "vanilla":
            out = _bind(self.node.eqn, [x])[0]
        elif self.rule == "pass":
            out = _passed(self.upper)(x)
        else:
            out = rectifier(self.rule, self.upper)(x)
        env[self.node.outs[0]] = out


@dataclass
class Plan:
    """A flattened program and what each of its equations becomes under a rule set.

    ``call(*flat_args)`` evaluates it (a list of outputs); ``counts`` says how
    many operations of each kind got a rule (``convolution``, ``dense``,
    ``normalisation`` merged, ``pooling``, ``addition``, ``rectifier``).
    """

    graph: _Graph
    steps: list[_Step]
    counts: Counter[str] = field(default_factory=Counter)
    #: the value of the tokens entering the first transformer block (transformer rules),
    #: else None; ``token_status`` 0 when found, 1 when no attention ran, 2 when no
    #: normalisation over the tokens preceded it (see :func:`_token_value`)
    token: int | None = None
    token_status: int = 1

    def call(self, *args: Any, taps: dict[int, Any] | None = None) -> list[Any]:
        """The outputs; ``taps`` maps values to zeros added to them where they are made, so
        that the cotangent of a tap is the quantity the backward pass carries at its value."""
        env: dict[int, Any] = dict(zip(self.graph.invars, args))
        pending = dict(taps or {})
        for step in [None, *self.steps]:
            if step is not None:
                step.run(env)
            for i in [i for i in pending if i in env]:
                env[i] = env[i] + pending.pop(i)
        return [_read(env, a) for a in self.graph.outs]


@dataclass
class _RematStep(_Step):
    node: _Node
    body: Plan

    def run(self, env: dict[int, Any]) -> None:
        params = self.node.eqn.params
        fn = jax.checkpoint(self.body.call, prevent_cse=params.get("prevent_cse", True),
                            policy=params.get("policy"))
        env.update(zip(self.node.outs, fn(*[_read(env, a) for a in self.node.ins])))


@dataclass
class _ScanStep(_Step):
    node: _Node
    body: Plan

    def run(self, env: dict[int, Any]) -> None:
        params = self.node.eqn.params
        invals = [_read(env, a) for a in self.node.ins]
        n_consts, n_carry = params["num_consts"], params["num_carry"]
        consts = invals[:n_consts]
        init, xs = invals[n_consts:n_consts + n_carry], invals[n_consts + n_carry:]

        def body(carry: list[Any], x: list[Any]) -> tuple[list[Any], list[Any]]:
            outs = self.body.call(*consts, *carry, *x)
            return outs[:n_carry], outs[n_carry:]

        carry, ys = jax.lax.scan(body, list(init), list(xs), length=params["length"],
                                 reverse=params["reverse"], unroll=params.get("unroll", 1))
        env.update(zip(self.node.outs, [*carry, *ys]))


@dataclass
class _CondStep(_Step):
    node: _Node
    branches: list[Plan]

    def run(self, env: dict[int, Any]) -> None:
        index, *ops = [_read(env, a) for a in self.node.ins]
        outs = jax.lax.switch(index, [branch.call for branch in self.branches], *ops)
        env.update(zip(self.node.outs, outs))


def _activations(graph: _Graph, act_in: Sequence[bool]) -> dict[int, bool]:
    """Which values depend on the marked inputs (floating values only; conservative for bodies)."""
    act = dict(zip(graph.invars, act_in))
    for node in graph.nodes:
        live = any(isinstance(a, int) and act.get(a, False) for a in node.ins)
        for i in node.outs:
            act[i] = live and _floating(graph.avals[i])
    return act


def _shape(graph: _Graph, atom: Atom) -> tuple[int, ...]:
    if isinstance(atom, _Lit):
        return tuple(np.shape(atom.value))
    return tuple(graph.avals[atom].shape)


_SUPPORTED = ("Supported: convolutions and dense layers (conv_general_dilated, dot_general with "
              "a constant kernel) with the bias and BatchNorm arithmetic after them, rectifiers "
              "(jax.nn.relu, relu6), average, sum and max pooling, the sum of two "
              "activations, reshapes, slicing, padding and concatenation.")


_TRANSFORMER = (" AttnLRP's transformer rules add: products of two activations (attention's "
                "q·kᵀ and A·v), softmax, LayerNorm / RMSNorm, gated activations x·g(x) (GELU, "
                "SiLU) and a parameter added to an activation (a position embedding); masks, "
                "dropout and other operations inside attention have no rule.")


def _no_rule(rules: RuleSet, node: _Node, what: str | None = None, why: str = "") -> AttribError:
    name = node.eqn.primitive.name
    return argument_error(
        "model", f"operations rule set {rules.name!r} has rules for",
        shown(what or f"the primitive {name!r}{_where(node)} applied to an activation"),
        f"{why or 'It has no LRP rule'}, so no map is returned. {_SUPPORTED}"
        + (_TRANSFORMER if rules.transformer is not None else ""))


def _check_parameter_free(rules: RuleSet, kind: str, rule: LinearRule | None) -> None:
    if rule is not None and not isinstance(rule, (Epsilon, Norm)):
        raise argument_error(f"rules[{kind!r}]", "Norm, Epsilon or 'gradient' for a "
                             "parameter-free operation", shown(repr(rule)),
                             "Rules with weights (z+, gamma, flat, ...) apply to convolutions "
                             "and dense layers")


class _Planner:
    """Plans one graph: classifies its equations and builds the fused rule steps."""

    def __init__(self, graph: _Graph, act_in: Sequence[bool], nonneg_in: Sequence[bool],
                 names_in: Sequence[str | None], ctx: _Context) -> None:
        self.graph, self.ctx, self.rules = graph, ctx, ctx.rules
        self.act = _activations(graph, act_in)
        self.nonneg = {i for i, n in zip(graph.invars, nonneg_in) if n}
        self.names = {i: n for i, n in zip(graph.invars, names_in) if n}
        self.uses: Counter[int] = Counter(a for node in graph.nodes for a in node.ins
                                          if isinstance(a, int))
        self.uses.update(a for a in graph.outs if isinstance(a, int))
        self.consumer: dict[int, int] = {}
        self.producer = {i: node for node in graph.nodes for i in node.outs}
        for k, node in enumerate(graph.nodes):
            for a in node.ins:
                if isinstance(a, int):
                    self.consumer[a] = k
        self.owned: dict[int, Any] = {}  # node index -> its transformer group

    def is_act(self, atom: Atom) -> bool:
        return isinstance(atom, int) and self.act.get(atom, False)

    def plan(self) -> Plan:
        steps: list[_Step] = []
        pending: dict[int, _Step] = {}
        absorbed: set[int] = set()
        token, status = None, 1
        if self.rules.transformer is not None:
            from ._transformer_rules import groups

            found = groups(self)
            token, status = _token_value(self.graph, found)
            for group in found:
                self.ctx.counts[group.kind] += 1
                absorbed.update(group.nodes[:-1])
                pending[group.nodes[-1]] = group.step
                self.owned.update(dict.fromkeys(group.nodes, group))
        for k, node in enumerate(self.graph.nodes):
            if k in pending:
                steps.append(pending.pop(k))
                continue
            if k in absorbed:
                continue
            step, chain = self.classify(node)
            if chain:
                absorbed.update(chain[:-1])
                pending[chain[-1]] = step
            else:
                steps.append(step)
        return Plan(self.graph, steps, self.ctx.counts, token, status)

    # -- one equation ----------------------------------------------------------------------
    def classify(self, node: _Node) -> tuple[_Step, list[int]]:
        eqn, rules = node.eqn, self.rules
        name = eqn.primitive.name
        live = [self.is_act(a) for a in node.ins]
        floating = any(_floating(self.graph.avals[i]) for i in node.outs)
        if not any(live) or not floating:  # constants, or no relevance flows (comparisons)
            if name in _NAMING and node.ins and isinstance(node.ins[0], int) \
                    and node.ins[0] in self.names:
                self.names[node.outs[0]] = self.names[node.ins[0]]
            return _BindStep(node), []
        matched = match_rectifier(eqn)
        if matched is not None:
            self.ctx.counts["rectifier"] += 1
            self.nonneg.add(node.outs[0])
            return _RectStep(node, rules.rectifier, matched.upper), []
        if name in _LINEAR:
            return self.linear(node, live)
        if name in _POOLS:
            return self.pool(node)
        if name in ("add", "add_any") and all(live) and \
                _shape(self.graph, node.ins[0]) == _shape(self.graph, node.ins[1]):
            _check_parameter_free(rules, "addition", rules.addition)
            self.ctx.counts["addition"] += 1
            if all(a in self.nonneg for a in node.ins):
                self.nonneg.add(node.outs[0])
            return _AddStep(node, rules.addition), []
        if name == "add" and rules.transformer is not None and live.count(True) == 1 \
                and len(node.ins) == 2 and _shape(self.graph, node.ins[live.index(True)]) \
                == _shape(self.graph, node.outs[0]):
            return self.constant(node, live.index(True)), []
        if name in _AFFINE and not all(live):
            if rules.strict:
                raise _no_rule(rules, node, f"the primitive {name!r}{_where(node)} of an "
                               "activation and a constant that follows no convolution or dense "
                               "layer", "A bias or BatchNorm outside a layer (after a "
                               "concatenation, an addition or a pooling, or input normalisation "
                               "inside the model) has no LRP rule")
            return _BindStep(node), []
        if name in STRUCTURAL:
            if name in _NONNEG_KEEP and node.ins[0] in self.nonneg:
                self.nonneg.add(node.outs[0])
            return _BindStep(node), []
        if name in _REMATS and "jaxpr" in eqn.params:
            return _RematStep(node, self.body(eqn.params["jaxpr"], node.ins)), []
        if name == "scan":
            return self.scan(node), []
        if name == "cond":
            branches = [self.body(b, node.ins[1:]) for b in eqn.params["branches"]]
            return _CondStep(node, branches), []
        if name == "while":
            raise _no_rule(rules, node, f"a while_loop carrying an activation{_where(node)}",
                           "Reverse mode cannot pass relevance through it (use lax.scan or "
                           "lax.fori_loop with static bounds)")
        if rules.strict:
            raise _no_rule(rules, node)
        return _BindStep(node), []

    def body(self, jaxpr: Any, ins: Sequence[Atom], act: Sequence[bool] | None = None,
             keep: Sequence[bool] | None = None) -> Plan:
        graph = _graph(jaxpr)
        keep = keep if keep is not None else [True] * len(ins)
        act = act if act is not None else [self.is_act(a) for a in ins]
        nonneg = [k and isinstance(a, int) and a in self.nonneg for a, k in zip(ins, keep)]
        names = [self.names.get(a) if k and isinstance(a, int) else None
                 for a, k in zip(ins, keep)]
        return _Planner(graph, act, nonneg, names, self.ctx).plan()

    def scan(self, node: _Node) -> _ScanStep:
        params = node.eqn.params
        n_consts, n_carry = params["num_consts"], params["num_carry"]
        act = [self.is_act(a) for a in node.ins]
        graph = _graph(params["jaxpr"])
        for _ in range(len(act) + 1):  # carries that become activations inside the loop
            inner = _activations(graph, act)
            out = [isinstance(a, int) and inner.get(a, False) for a in graph.outs[:n_carry]]
            new = act[:n_consts] + [a or o for a, o in
                                    zip(act[n_consts:n_consts + n_carry], out)] \
                + act[n_consts + n_carry:]
            if new == act:
                break
            act = new
        keep = [i < n_consts for i in range(len(node.ins))]  # carries and slices change
        return _ScanStep(node, self.body(params["jaxpr"], node.ins, act, keep))

    # -- layers ------------------------------------------------------------------------------
    def chain(self, start: int, allowed: frozenset[str]) -> tuple[list[int], list[Any]]:
        """The single-use constant arithmetic after ``start``: node indices and (op, side, const)."""
        nodes: list[int] = []
        ops: list[tuple[str, int, Atom | None]] = []
        cur = start
        merge = self.rules.normalisation == "merge" or self.rules.strict
        while self.uses[cur] == 1 and cur in self.consumer:
            k = self.consumer[cur]
            node = self.graph.nodes[k]
            p = node.eqn.primitive.name
            if k in self.owned or p not in allowed or (not merge and (p != "add" or ops)):
                break
            if p in ("neg", "convert_element_type"):
                if not _floating(self.graph.avals[node.outs[0]]):
                    break
                ops.append((p, 0, None))
            else:
                if len(node.ins) != 2 or node.ins[0] == node.ins[1]:
                    break
                side = 0 if node.ins[0] == cur else 1
                other = node.ins[1 - side]
                if self.is_act(other) or (p == "div" and side == 1):
                    break
                ops.append((p, side, other))
            nodes.append(k)
            cur = node.outs[0]
        return nodes, ops

    def linear(self, node: _Node, live: list[bool]) -> tuple[_Step, list[int]]:
        eqn, rules = node.eqn, self.rules
        name = eqn.primitive.name
        kind = _LINEAR[name]
        x_pos = live.index(True) if live.count(True) == 1 else -1
        batched = name == "dot_general" and any(eqn.params["dimension_numbers"][1])
        if x_pos < 0 or (name == "conv_general_dilated" and x_pos != 0) or batched:
            if rules.strict:
                raise _no_rule(rules, node, f"the primitive {name!r}{_where(node)} of two "
                               "activations or with batch dimensions", "A layer takes one "
                               "activation and a constant kernel; this one has no LRP rule")
            return _BindStep(node), []
        kernel = node.ins[1 - x_pos]
        x = node.ins[x_pos]
        pad = self.zero_pad(x) if name == "conv_general_dilated" else None
        if pad is not None:  # one layer conv(pad(x)): the rules see the unpadded input
            x = pad.ins[0]
        chain, ops = self.chain(node.outs[0], _AFFINE)
        out = self.graph.nodes[chain[-1]].outs[0] if chain else node.outs[0]
        out_rank = len(self.graph.avals[node.outs[0]].shape)
        features, kernel_axes = _feature_axes(eqn, x_pos, len(_shape(self.graph, kernel)))
        scale_shape: tuple[int, ...] = ()
        for p, _, other in ops:
            if p in ("mul", "div"):
                scale_shape = np.broadcast_shapes(scale_shape, _shape(self.graph, other))
        padded = (1,) * (out_rank - len(scale_shape)) + tuple(scale_shape)
        if any(size != 1 for axis, size in enumerate(padded) if axis not in features):
            raise _no_rule(rules, node, f"a scaling after the primitive {name!r}{_where(node)} "
                           "that is not one factor per output feature", "It cannot be merged "
                           "into the layer")
        layer = self.names.get(kernel) if isinstance(kernel, int) else None
        if layer:
            self.ctx.names.add(layer)
        first = not self.ctx.first_seen
        self.ctx.first_seen = True
        rule = rules.linear_rule(kind, layer, first=first)
        if isinstance(rule, ZBox):
            rule.bounds(tuple(self.graph.avals[x].shape))  # raises on bounds of the wrong shape
        self.ctx.counts[kind] += 1
        if any(p in ("mul", "div") for p, _, _ in ops):
            self.ctx.counts["normalisation"] += 1
        nodes = [node] + [self.graph.nodes[k] for k in chain]
        relevance = _LinearRelevance(eqn, x_pos, kernel, ops, rule, x in self.nonneg,
                                     features, kernel_axes, out_rank,
                                     None if pad is None else pad.eqn)
        nodes = ([] if pad is None else [pad]) + nodes
        step = _Fused(nodes, x, _external(nodes, x), out, relevance)
        return step, chain

    def constant(self, node: _Node, x_pos: int) -> _Step:
        """An activation plus a parameter that follows no layer (a position embedding)."""
        from ._transformer_rules import constant_relevance

        assert self.rules.transformer is not None
        rule = constant_relevance(self.rules.transformer.epsilon)
        self.ctx.counts["constant"] += 1
        x, out = node.ins[x_pos], node.outs[0]

        def relevance(xv: Array, values: dict[int, Any], r: Array) -> Array:
            env = {**values, x: xv}
            _run_nodes([node], env)
            return rule(xv, env[out], r)

        return _Fused([node], x, _external([node], x), out, relevance)

    def zero_pad(self, x: Atom) -> _Node | None:
        """The ``pad`` with zeros of an activation that computes ``x``, if it is one."""
        node = self.producer.get(x) if isinstance(x, int) else None
        if node is None or node.eqn.primitive.name != "pad" or not self.is_act(node.ins[0]):
            return None
        value = node.ins[1]  # jnp.pad: a literal 0 through a dtype conversion
        while isinstance(value, int) and value in self.producer and \
                self.producer[value].eqn.primitive.name in _NAMING:
            value = self.producer[value].ins[0]
        return node if isinstance(value, _Lit) and np.all(np.asarray(value.value) == 0) \
            else None

    def pool(self, node: _Node) -> tuple[_Step, list[int]]:
        rule = self.rules.pooling
        _check_parameter_free(self.rules, "pooling", rule)
        chain, ops = self.chain(node.outs[0], _SCALING)
        nodes = [node] + [self.graph.nodes[k] for k in chain]
        out = nodes[-1].outs[0]
        x = node.ins[0]
        if x in self.nonneg and all(p == "convert_element_type" or (
                isinstance(c, _Lit) and np.all(np.asarray(c.value) > 0)) for p, _, c in ops):
            self.nonneg.add(out)
        self.ctx.counts["pooling"] += 1
        step = _Fused(nodes, x, _external(nodes, x), out, _PoolRelevance(nodes, x, out, rule))
        return step, chain


def _token_value(graph: _Graph, found: Sequence[Any]) -> tuple[int | None, int]:
    """The tokens entering the first transformer block among the transformer ``found`` groups.

    The entry of the first LayerNorm region over an (N, T, C) value, T the
    first softmax's token count, that comes before that softmax in program
    order: a pre-norm block reads it in its normalisation and its residual
    connection (as :meth:`attrib_torch._relevance.RelevanceMode.token_input`).
    ``(value, 0)``, or ``(None, 1)`` with no softmax, ``(None, 2)`` with no such norm.
    """
    softmaxes = [g for g in found if g.kind == "softmax"]
    if not softmaxes:
        return None, 1
    first = min(softmaxes, key=lambda g: g.nodes[0])
    tokens = _shape(graph, first.step.out)[-1]
    for group in sorted(found, key=lambda g: g.nodes[0]):
        if group.nodes[0] > first.nodes[0]:
            break
        shape = _shape(graph, group.step.x) if group.kind == "layer_norm" else ()
        if len(shape) >= 3 and shape[-2] == tokens:
            return group.step.x, 0
    return None, 2


def _external(nodes: list[_Node], x: int) -> list[int]:
    """The values ``nodes`` read that they do not compute, other than ``x`` (constants)."""
    made = {i for node in nodes for i in node.outs}
    out: list[int] = []
    for node in nodes:
        for a in node.ins:
            if isinstance(a, int) and a != x and a not in made and a not in out:
                out.append(a)
    return out


def _feature_axes(eqn: Any, x_pos: int, kernel_rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output axes of the layer's features and the kernel axes they come from (same order)."""
    if eqn.primitive.name == "conv_general_dilated":
        numbers = eqn.params["dimension_numbers"]
        return (numbers.out_spec[1],), (numbers.rhs_spec[0],)
    (contract_l, contract_r), _ = eqn.params["dimension_numbers"]
    contract = contract_r if x_pos == 0 else contract_l
    free = tuple(a for a in range(kernel_rank) if a not in contract)
    x_rank = len(eqn.invars[x_pos].aval.shape)
    x_free = x_rank - len(contract)
    start = x_free if x_pos == 0 else 0
    return tuple(range(start, start + len(free))), free


def _affine(ops: list[tuple[str, int, Atom | None]], values: dict[int, Any]) -> tuple[Any, Any]:
    """``(s, t)`` with the chain's output ``= z * s + t`` (``None``: 1 and 0)."""
    s: Any = None
    t: Any = None
    for p, side, other in ops:
        c: Any = None if other is None else jnp.asarray(_read(values, other))
        if p == "add":
            t = c if t is None else t + c
        elif p == "sub" and side == 0:
            t = -c if t is None else t - c
        elif p == "sub":
            s = -1.0 if s is None else -s
            t = c if t is None else c - t
        elif p == "mul":
            s = c if s is None else s * c
            t = None if t is None else t * c
        elif p == "div":
            s = 1.0 / c if s is None else s / c
            t = None if t is None else t / c
        elif p == "neg":
            s = -1.0 if s is None else -s
            t = None if t is None else -t
    return s, t


@dataclass
class _LinearRelevance:
    """The backward pass of a convolution / dense layer with its affine tail merged."""

    eqn: Any
    x_pos: int
    kernel: Atom
    ops: list[tuple[str, int, Atom | None]]
    rule: LinearRule | None
    nonnegative: bool
    features: tuple[int, ...]
    kernel_axes: tuple[int, ...]
    out_rank: int
    pad: Any = None  # a zero ``pad`` before the convolution: part of the layer

    def f(self, inp: Array, w: Array, b: Array | None) -> Array:
        if self.pad is not None:
            inp = _bind(self.pad, [inp, jnp.zeros((), inp.dtype)])[0]
        args = [inp, w] if self.x_pos == 0 else [w, inp]
        out = _bind(self.eqn, args)[0]
        return out if b is None else out + b

    def __call__(self, x: Array, values: dict[int, Any], r: Array) -> Array:
        w = jnp.asarray(_read(values, self.kernel))
        s, t = _affine(self.ops, values)
        if s is not None:
            s = jnp.asarray(s, dtype=w.dtype)
            padded = jnp.reshape(s, (1,) * (self.out_rank - s.ndim) + tuple(s.shape))
            shape = [1] * w.ndim
            for out_axis, axis in zip(self.features, self.kernel_axes):
                shape[axis] = padded.shape[out_axis]
            w = w * jnp.reshape(padded, shape)
        return linear_relevance(self.rule, self.f, x, w, t, r, self.nonnegative)


@dataclass
class _PoolRelevance:
    """The backward pass of a sum / average pooling (and the constant scaling after it)."""

    nodes: list[_Node]
    x: int
    out: int
    rule: LinearRule | None

    def __call__(self, x: Array, values: dict[int, Any], r: Array) -> Array:
        def f(inp: Array, _w: Any, _b: Any) -> Array:
            env = {**values, self.x: inp}
            _run_nodes(self.nodes, env)
            return env[self.out]

        return linear_relevance(self.rule, f, x, None, None, r)


# -- the program --------------------------------------------------------------------------------
def _leaf_names(params: Any, kind: str) -> list[str | None]:
    """The layer path of each parameter leaf (``"layer1/0/conv1"`` for its kernel)."""
    out: list[str | None] = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        if kind == "linen" and keys:
            keys = keys[1:]  # the collection ("params")
        if kind == "nnx" and keys and keys[-1] == "value":
            keys = keys[:-1]
        out.append("/".join(keys[:-1]) or None)
    return out


def plan(program: Program, params: Any, kind: str, rules: RuleSet) -> Plan:
    """The :class:`Plan` of ``program`` (traced on ``(params, x, eps)``) under ``rules``.

    Raises :class:`attrib.AttribError` for an operation ``rules`` has no rule
    for (strict sets), a layer rule naming no convolution / dense layer, and
    box bounds that do not fit the layer's input.
    """
    graph = _graph(program.closed)
    names = _leaf_names(params, kind)
    n_in = len(graph.invars)
    act = [False] * len(names) + [True] * (n_in - len(names))
    ctx = _Context(rules)
    result = _Planner(graph, act, [False] * n_in, names + [None] * (n_in - len(names)),
                      ctx).plan()
    for name, _ in rules.layers:
        if name not in ctx.names:
            raise argument_error(
                "rules", "names of this model's convolution / dense layers (or a kind)", name,
                did_you_mean(str(name), sorted(ctx.names), every=True)
                or f"Layers with a kernel: {sorted(ctx.names)[:10]} (jax names are parameter "
                "paths joined by '/', e.g. 'layer1/0/conv1')")
    return result


def _program(forward: Any, entry: Any, rules: RuleSet, objective: str,
             tokens: bool = False) -> Any:
    from ._model import _scores, _traced_forward, _weighted_values

    def run(params: Any, x: Any, targets: Any, weights: Any) -> dict[str, Any]:
        entry.traces += 1
        program = _traced_forward(forward, params, x, ())
        if program is None:
            program = trace(lambda p, x, e: forward.fn(p, x, e, ()), params, x, {})
        ruled = plan(program, params, forward.kind, rules)
        leaves = jax.tree_util.tree_leaves(params)
        token = ruled.token if tokens else None
        aval = None if token is None else ruled.graph.avals[token]
        zeros = () if aval is None else (jnp.zeros(aval.shape, aval.dtype),)

        def logits_of(x: Any, *eps: Any) -> Any:
            outs = ruled.call(*leaves, x, taps={token: eps[0]} if token is not None else None)
            return jax.tree_util.tree_unflatten(program.out_tree, outs)[0]

        logits, vjp = jax.vjp(logits_of, x, *zeros)
        if weights is not None:
            chosen = jnp.argmax(weights, axis=1)
            g = jax.grad(lambda v: jnp.sum(_weighted_values(v, objective)
                                           * weights.astype(v.dtype)))(logits)
        else:
            chosen = (jnp.argmax(jax.lax.stop_gradient(logits), axis=1)
                      if targets is None else targets)
            g = jax.grad(lambda v: jnp.sum(_scores(v, chosen, objective)))(logits)
        seed = g * logits if rules.seed == "relevance" else g
        relevance, *at_tokens = vjp(seed)
        out = {"logits": logits, "targets": chosen, "input_gradient": relevance,
               "counts": {k: jnp.int32(v) for k, v in ruled.counts.items()},
               "token_status": jnp.int32(ruled.token_status)}
        if at_tokens:
            out["token_relevance"] = at_tokens[0]
        return out

    return jax.jit(run)


def class_targets(model: Any, request: GradientRequest, x: Any) -> tuple[Any, Any]:
    """The request's class targets and target weights as program arguments, checked.

    ``(targets (N,) int32 or None, weights (N, classes) or None)``; the logits'
    shape comes from the model's cached abstract evaluation of ``x``.
    """
    out_shape, _ = model._out_shape(x)
    zeros = np.zeros(out_shape, dtype=np.float32)
    targets = None
    if request.targets is not None:
        targets = jnp.asarray(resolve_targets(np.asarray(request.targets, dtype=np.int64), zeros),
                              dtype=jnp.int32)
    else:
        resolve_targets(None, zeros)
    weights = None
    if request.target_weights is not None:
        weights, targets = jnp.asarray(resolve_target_weights(request.target_weights, zeros)), None
    return targets, weights


def relevance_gradients(model: Any, request: GradientRequest, rules: RuleSet) -> GradientResult:
    """:meth:`JaxModel.gradients` for a rule set beyond rectifiers (one forward, one backward).

    Layer activations and gradients, when asked for, are the true ones, from a
    second (vanilla) program.
    """
    from attrib._targets import check_objective

    from ._model import _array_shape, _cached, _check_finite

    check_objective(request.objective)
    if not request.input_gradient and not request.token_relevance:
        return model.gradients(replace(request, rule="vanilla"))  # rules act on inputs only
    layers = tuple(request.layers)
    if layers:
        model._check_layers(layers)
    _array_shape(request.inputs)
    numpy_inputs = np.asarray(request.inputs)
    _check_finite(numpy_inputs)
    x = jnp.asarray(request.inputs)
    targets, weights = class_targets(model, request, x)
    forward = model._forward
    objective = request.objective
    tokens = bool(request.token_relevance)
    entry = _cached((forward.key, "relevance", rules, objective, tokens),
                    lambda entry: _program(forward, entry, rules, objective, tokens))
    out = jax.device_get(entry.program(forward.params, x, targets, weights))
    counts = {k: int(v) for k, v in out["counts"].items()}
    stats: dict[str, Any] = {"rule": rules.name, "rules": counts,
                             "rectifiers": counts.get("rectifier", 0), "backward_passes": 1}
    status = int(out["token_status"])
    if tokens and status:
        stats["token_relevance"] = _TOKEN_STATUS[status]
    activations: dict[str, np.ndarray] = {}
    layer_gradients: dict[str, np.ndarray] = {}
    if layers:
        side = model.gradients(replace(request, rule="vanilla", input_gradient=False))
        activations, layer_gradients = side.activations, side.layer_gradients
        stats["backward_passes"] += side.stats.get("backward_passes", 0)
    return GradientResult(
        inputs=numpy_inputs, logits=np.asarray(out["logits"]),
        targets=np.asarray(out["targets"], dtype=np.int64),
        input_gradient=np.asarray(out["input_gradient"]), activations=activations,
        layer_gradients=layer_gradients, stats=stats,
        token_relevance=np.asarray(out["token_relevance"]) if "token_relevance" in out else None)


#: why :attr:`Plan.token_status` found no token value
_TOKEN_STATUS = {
    1: "no attention (softmax) was found in the traced program, outside scan / remat bodies",
    2: "no normalisation over the tokens ran before the first attention (a post-norm "
       "transformer has no pre-norm residual stream to read the token relevance from; "
       "blocks inside a scan / remat body are not searched)",
}
