"""DeepLIFT's rescale rules on an unmodified JAX program, by rewriting its jaxpr.

The program is flattened as for LRP (:mod:`attrib_jax._relevance`: ``jit``
calls and non-rectifier custom-derivative bodies inlined, activations found by
data flow) and evaluated on the input and the reference in **one batch**
(inputs first, references after), so every activation holds both, row ``n``
and row ``N + n``. Then:

- element-wise nonlinearities of one activation (the rectifiers
  ``jax.nn.relu`` / ``relu6``, the primitives ``max`` / ``min`` / ``clamp``
  with constants, ``logistic``, ``tanh``, ``exp``, ``expm1``, ``log1p``,
  ``erf``, ``erfc``, ``abs``, ``integer_pow``, ``square``, and the ``jax.nn``
  activations :data:`WHOLE` names, kept whole as torch keeps ``F.elu``) get
  the rescale rule: ``m_in = m_out Δy/Δz``, or ``g'(z0)`` where
  ``|Δz| <= RESCALE_TINY`` (:func:`attrib.rules.rescale`). Other functions
  of several primitives (``silu = x * logistic(x)``, ``gelu``,
  ``hard_swish``) are rescaled primitive by primitive, with the products
  below: for a function of one value, multipliers that sum to the delta
  element by element are ``Δy/Δz`` whatever the split, so this is the
  function's rescale multiplier up to rounding (and to ``O(RESCALE_TINY)``
  where ``|Δz|`` is that small);
- ``reduce_window_max`` (max pooling): each window one nonlinearity, its change
  split between the winners on the input and on the reference
  (:func:`attrib.rules.max_pool_multipliers`; XLA's window gradient picks the
  first maximum, as torch's indices do);
- ``mul`` of two activations (broadcast or not): the Shapley split ``½(b + b0)``, ``½(a + a0)``
  (:func:`attrib.rules.product_multipliers`);
- linear operations keep their true derivative: convolutions and dense layers
  with a constant kernel, ``add`` / ``sub`` / ``neg``, products and quotients
  by constants (bias, BatchNorm in eval mode), sum and average pooling, and
  the structural primitives (reshapes, slicing, padding, concatenation).

Any other primitive on an activation (including ``remat``, ``scan``, ``cond``
and ``while`` around activations) raises :class:`attrib.AttribError` naming it.
Every rule returns zero for the reference rows; the score reads the input rows.

References
----------
Shrikumar, Greenside, Kundaje (2017). Learning important features through
propagating activation differences. Ancona, Ceolini, Öztireli, Gross (2018).
Towards better understanding of gradient-based attribution methods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attrib._errors import argument_error, shown
from attrib._model import GradientRequest, GradientResult
from attrib.rules import RESCALE_TINY, RuleSet

from ._relevance import (
    _LINEAR,
    _POOLS,
    STRUCTURAL,
    Plan,
    _activations,
    _bind,
    _BindStep,
    _floating,
    _Graph,
    _graph,
    _Lit,
    _Node,
    _read,
    _Step,
    _where,
    class_targets,
)
from ._rewrite import _CALLS, match_rectifier, trace
from ._rules import _forward as _rectified

__all__ = ["deeplift_gradients", "plan"]

Array = Any

#: element-wise primitives of one activation (and constants) that get the rescale rule
ELEMENTWISE = frozenset({"max", "min", "clamp", "logistic", "tanh", "exp", "exp2", "expm1",
                         "log1p", "erf", "erfc", "abs", "integer_pow", "square"})
#: ``jax.nn`` activations kept whole (one ``jit`` equation named after the function): the
#: ones whose primitives have no rule (``select_n``, a quotient of two activations); the
#: others (``silu``, ``hard_silu``, ``celu``, ...) are exact primitive by primitive
WHOLE = frozenset({"elu", "selu", "leaky_relu", "hard_tanh", "softplus", "log_sigmoid",
                   "mish", "soft_sign"})
#: what an element-wise function of one value may be built of (with rectifiers)
_POINTWISE = ELEMENTWISE | {"add", "sub", "mul", "div", "neg", "sign", "log", "sqrt", "rsqrt",
                            "pow", "select_n", "gt", "ge", "lt", "le", "eq", "ne", "copy",
                            "copy_p", "convert_element_type", "stop_gradient"}
#: primitives linear in their activation arguments (true derivative), besides the layers
_LINEAR_OPS = frozenset({"add", "add_any", "sub", "neg"}) | _POOLS | (STRUCTURAL - {
    "reduce_window_max", "reduce_max", "argmax", "argmin", "select_and_gather_add"})
_SUPPORTED = ("Supported: convolutions and dense layers with a constant kernel, additions, "
              "products and quotients by constants (bias, BatchNorm in eval mode), sum / "
              "average / max pooling, rectifiers and element-wise max, min, clamp, logistic, "
              "tanh, exp, expm1, log1p, erf, erfc, abs, powers, the jax.nn activations (elu, "
              "selu, leaky_relu, hard_tanh, softplus, log_sigmoid, mish, soft_sign, silu, gelu, "
              "hard_swish, ...), the product of two activations, reshapes, slicing, padding "
              "and concatenation.")


def _halves(t: Array) -> tuple[Array, Array]:
    n = t.shape[0] // 2
    return t[:n], t[n:]


def _with_zero_reference(m: Array) -> Array:
    return jnp.concatenate([m, jnp.zeros_like(m)])


@dataclass
class _RescaleStep(_Step):
    """``y = g(z)`` on [input; reference] rows; backward: ``Δy/Δz`` or ``g'(z0)``."""

    node: _Node
    pos: int  # the activation's position among the equation's inputs
    upper: float | None = None
    rectifier: bool = False
    whole: bool = False  # a jit call kept whole: its body has the full batch's shapes

    def g(self, z: Array, others: dict[int, Any]) -> Array:
        if self.rectifier:
            return _rectified(z, self.upper)
        values = [z if k == self.pos else _read(others, a) for k, a in enumerate(self.node.ins)]
        return _bind(self.node.eqn, values)[0]

    def derivative(self, z: Array, others: dict[int, Any]) -> Array:
        if self.rectifier:  # torch's convention: 0 at the kinks
            inside = z > 0 if self.upper is None else (z > 0) & (z < self.upper)
            return inside.astype(z.dtype)
        return jax.jvp(lambda v: self.g(v, others), (z,), (jnp.ones_like(z),))[1]

    def run(self, env: dict[int, Any]) -> None:
        others = {a: env[a] for a in self.node.ins if isinstance(a, int)}

        @jax.custom_vjp
        def f(z: Array) -> Array:
            return self.g(z, others)

        def fwd(z: Array) -> tuple[Array, Any]:
            y = f(z)
            return y, (z, y)

        def bwd(res: Any, grad: Array) -> tuple[Array]:
            z, y = res
            (z1, z0), (y1, y0) = _halves(z), _halves(y)
            dz = z1 - z0
            small = jnp.abs(dz) <= RESCALE_TINY
            slope = _halves(self.derivative(z, others))[1] if self.whole \
                else self.derivative(z0, others)
            m = jnp.where(small, slope, (y1 - y0) / jnp.where(small, jnp.ones_like(dz), dz))
            return (_with_zero_reference(_halves(grad)[0] * m),)

        f.defvjp(fwd, bwd)
        env[self.node.outs[0]] = f(_read(env, self.node.ins[self.pos]))


@dataclass
class _MaxPoolStep(_Step):
    """``reduce_window_max``: each window one nonlinearity (see the module docs)."""

    node: _Node

    def run(self, env: dict[int, Any]) -> None:
        eqn = self.node.eqn

        def pool(x: Array) -> Array:
            return _bind(eqn, [x])[0]

        @jax.custom_vjp
        def f(x: Array) -> Array:
            return pool(x)

        def fwd(x: Array) -> tuple[Array, Any]:
            out = f(x)
            return out, x

        def bwd(x: Array, grad: Array) -> tuple[Array]:
            x1, x0 = _halves(x)
            (o1, route1), (o0, route0) = jax.vjp(pool, x1), jax.vjp(pool, x0)
            top = jnp.maximum(o1, o0)
            g = _halves(grad)[0]
            contribution = route1(g * (top - o0))[0] + route0(g * (o1 - top))[0]
            dx = x1 - x0
            small = jnp.abs(dx) <= RESCALE_TINY
            m = jnp.where(small, route0(g)[0],
                          contribution / jnp.where(small, jnp.ones_like(dx), dx))
            return (_with_zero_reference(m),)

        f.defvjp(fwd, bwd)
        env[self.node.outs[0]] = f(_read(env, self.node.ins[0]))


def _sum_to(t: Array, shape: tuple[int, ...]) -> Array:
    """``t`` summed over the axes it was broadcast along (size-1 axes of ``shape``)."""
    axes = tuple(i for i, (have, want) in enumerate(zip(t.shape, shape)) if want == 1 and have != 1)
    return jnp.sum(t, axis=axes, keepdims=True) if axes else t


@dataclass
class _ProductStep(_Step):
    """``a * b`` of two activations; backward: the Shapley split."""

    node: _Node

    def run(self, env: dict[int, Any]) -> None:
        @jax.custom_vjp
        def f(a: Array, b: Array) -> Array:
            return a * b

        def fwd(a: Array, b: Array) -> tuple[Array, Any]:
            return f(a, b), (a, b)

        def bwd(res: Any, grad: Array) -> tuple[Array, Array]:
            (a1, a0), (b1, b0) = (_halves(v) for v in res)
            g = _halves(grad)[0]
            return (_with_zero_reference(_sum_to(g * 0.5 * (b1 + b0), a1.shape)),
                    _with_zero_reference(_sum_to(g * 0.5 * (a1 + a0), b1.shape)))

        f.defvjp(fwd, bwd)
        a, b = (_read(env, atom) for atom in self.node.ins)
        env[self.node.outs[0]] = f(a, b)


def _no_rule(rules: RuleSet, node: _Node, what: str = "") -> Exception:
    name = node.eqn.primitive.name
    return argument_error(
        "model", f"operations rule set {rules.name!r} has rules for",
        shown(what or f"the primitive {name!r}{_where(node)} applied to an activation"),
        f"It has no DeepLIFT rule, so no map is returned. {_SUPPORTED}")


def _shape(graph: _Graph, atom: Any) -> tuple[int, ...]:
    return tuple(np.shape(atom.value)) if isinstance(atom, _Lit) else tuple(graph.avals[atom].shape)


# -- whole element-wise functions ---------------------------------------------------------------
def _scalar(graph: _Graph, atom: Any) -> bool:
    return int(np.prod(_shape(graph, atom))) == 1


def _pointwise(graph: _Graph, nodes: Sequence[_Node], x: int) -> bool:
    """Whether ``nodes`` compute element-wise functions of ``x``: every value made from ``x``
    has its shape and comes from :data:`_POINTWISE` primitives (or a rectifier), and every
    other operand they read is a scalar (broadcast or not)."""
    shape = _shape(graph, x)
    made = {i for node in nodes for i in node.outs}
    derived, constant = {x}, set()
    for node in nodes:
        reads = [a for a in node.ins if isinstance(a, int) and a in derived]
        if any(not (isinstance(a, int) and (a in derived or a in constant)) and not
               _scalar(graph, a) for a in node.ins):
            return False
        if not reads:  # a constant made of scalars (a broadcast 0 in jax.nn.elu)
            constant.update(node.outs)
            continue
        if node.eqn.primitive.name not in _POINTWISE and match_rectifier(node.eqn) is None:
            return False
        if any(_shape(graph, i) != shape for i in node.outs):
            return False
        derived.update(node.outs)
    return all(i in derived or i in constant or i not in made for n in nodes for i in n.outs)


def _whole_call(eqn: Any) -> bool:
    """Whether ``eqn`` is a ``jit`` call of a :data:`WHOLE` activation of its first input."""
    params = eqn.params
    if eqn.primitive.name not in _CALLS or params.get("name") not in WHOLE \
            or "jaxpr" not in params or len(eqn.outvars) != 1 or not eqn.invars:
        return False
    body = _graph(params["jaxpr"])
    x = body.invars[0]
    return (len(body.outs) == 1 and isinstance(body.outs[0], int)
            and _shape(body, body.outs[0]) == _shape(body, x)
            and all(_scalar(body, i) for i in body.invars[1:])
            and _pointwise(body, body.nodes, x))


def plan(graph: _Graph, act_in: Sequence[bool], rules: RuleSet) -> Plan:
    """The :class:`Plan` of ``graph`` under DeepLIFT (raises for an operation without a rule)."""
    act = _activations(graph, act_in)
    counts: Counter[str] = Counter()
    steps: list[_Step] = []
    for node in graph.nodes:
        live = [isinstance(a, int) and act.get(a, False) for a in node.ins]
        name = node.eqn.primitive.name
        out_shape = _shape(graph, node.outs[0]) if node.outs else ()
        if not any(live) or not any(_floating(graph.avals[i]) for i in node.outs):
            steps.append(_BindStep(node))
            continue
        matched = match_rectifier(node.eqn)
        if name in _CALLS and node.eqn.params.get("name") in WHOLE:  # kept whole: _whole_call
            if live != [True] + [False] * (len(live) - 1):
                raise _no_rule(rules, node, f"{node.eqn.params['name']!r}{_where(node)} with "
                               "an activation in an argument other than its first")
            counts["nonlinearity"] += 1
            steps.append(_RescaleStep(node, 0, whole=True))
        elif matched is not None:
            counts["rectifier"] += 1
            steps.append(_RescaleStep(node, 0, matched.upper, rectifier=True))
        elif name in ELEMENTWISE and live.count(True) == 1 and len(node.outs) == 1 \
                and _shape(graph, node.ins[live.index(True)]) == out_shape:
            counts["nonlinearity"] += 1
            steps.append(_RescaleStep(node, live.index(True)))
        elif name == "reduce_window_max":
            counts["max_pool"] += 1
            steps.append(_MaxPoolStep(node))
        elif name == "mul" and all(live):
            counts["product"] += 1
            steps.append(_ProductStep(node))
        elif name in _LINEAR and live.count(True) == 1 and not (
                name == "dot_general" and any(node.eqn.params["dimension_numbers"][1])):
            counts[_LINEAR[name]] += 1
            steps.append(_BindStep(node))
        elif name in _LINEAR_OPS or (name in ("mul", "div") and live == [True, False]) or \
                (name == "mul" and live[1]):
            steps.append(_BindStep(node))
        else:
            raise _no_rule(rules, node)
    return Plan(graph, steps, counts)


def _program(forward: Any, entry: Any, rules: RuleSet, objective: str) -> Callable[..., Any]:
    from ._model import _scores, _traced_forward, _weighted_values

    def run(params: Any, both: Any, targets: Any, weights: Any) -> dict[str, Any]:
        entry.traces += 1
        n = both.shape[0] // 2
        program = _traced_forward(forward, params, both, ())
        if program is None:
            program = trace(lambda p, x, e: forward.fn(p, x, e, ()), params, both, {})
        leaves = jax.tree_util.tree_leaves(params)
        graph = _graph(program.closed, keep=_whole_call)
        n_in = len(graph.invars)
        ruled = plan(graph, [False] * len(leaves) + [True] * (n_in - len(leaves)), rules)

        def logits_of(x: Any) -> Any:
            outs = ruled.call(*leaves, x)
            return jax.tree_util.tree_unflatten(program.out_tree, outs)[0]

        logits, vjp = jax.vjp(logits_of, both)
        ours = logits[:n]
        if weights is not None:
            chosen = jnp.argmax(weights, axis=1)
            g = jax.grad(lambda v: jnp.sum(_weighted_values(v, objective)
                                           * weights.astype(v.dtype)))(ours)
        else:
            chosen = (jnp.argmax(jax.lax.stop_gradient(ours), axis=1)
                      if targets is None else targets)
            g = jax.grad(lambda v: jnp.sum(_scores(v, chosen, objective)))(ours)
        (multipliers,) = vjp(jnp.concatenate([g, jnp.zeros_like(g)]))
        return {"logits": ours, "reference_logits": logits[n:], "targets": chosen,
                "input_gradient": multipliers[:n],
                "counts": {k: jnp.int32(v) for k, v in ruled.counts.items()}}

    return jax.jit(run)


def deeplift_gradients(model: Any, request: GradientRequest, rules: RuleSet) -> GradientResult:
    """:meth:`JaxModel.gradients` for DeepLIFT: the multipliers at the input (one backward)."""
    from attrib._targets import check_objective

    from ._model import _array_shape, _cached, _check_finite

    check_objective(request.objective)
    if request.reference is None:
        raise argument_error("reference", f"the reference inputs of rule set {rules.name!r}",
                             None, "Pass GradientRequest(reference=...) (the baselines)")
    if request.layers:
        raise argument_error("layers", f"no layer captures with rule set {rules.name!r}",
                             request.layers)
    _array_shape(request.inputs)
    numpy_inputs = np.asarray(request.inputs)
    reference = np.asarray(request.reference)
    if reference.shape != numpy_inputs.shape:
        raise argument_error("reference", f"one reference per input, shape {numpy_inputs.shape}",
                             shown(f"shape {reference.shape}"))
    _check_finite(numpy_inputs)
    _check_finite(reference)
    x = jnp.asarray(numpy_inputs)
    both = jnp.concatenate([x, jnp.asarray(reference, dtype=x.dtype)])
    targets, weights = class_targets(model, request, x)
    forward = model._forward
    objective = request.objective
    entry = _cached((forward.key, "deeplift", rules, objective),
                    lambda entry: _program(forward, entry, rules, objective))
    out = jax.device_get(entry.program(forward.params, both, targets, weights))
    counts = {k: int(v) for k, v in out["counts"].items()}
    return GradientResult(
        inputs=numpy_inputs, logits=np.asarray(out["logits"]),
        targets=np.asarray(out["targets"], dtype=np.int64),
        input_gradient=np.asarray(out["input_gradient"]),
        stats={"rule": rules.name, "rules": counts, "backward_passes": 1,
               "reference_logits": np.asarray(out["reference_logits"])})
