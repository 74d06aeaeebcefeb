"""Several methods on one batch: the gradient passes they can share (issue 19).

Each single-pass method states what it needs from a gradient pass
(:class:`attrib.GradientNeeds`); methods whose needs one
:class:`attrib.GradientRequest` can serve without changing what either gets
share it:

- methods that need the **input gradient** share a pass when they ask for it
  under the same rule set (:func:`attrib.rules.rule_set` of the request's
  ``rule``, compared for equality: ``"guided"`` and ``rules.GUIDED`` group
  together, and so does any LRP composite built twice alike);
- methods that need only **layers** (activations, layer gradients: Grad-CAM
  and the CAM family) join the vanilla input-gradient pass if there is one,
  else the first pass under a rectifier-only rule set (never a relevance
  pass), else a pass of their own; layer gradients are the true gradient whatever the
  rule (the backend runs a second backward pass when a rectifier under the
  rule lies between the layer and the logits), so they are the same there;
- the layers of a pass are merged (each captured once).

Every method then runs its own :meth:`attrib.Attributor.compute` on the
shared pass's arrays: its map is the one it computes alone. Methods that run
many passes of their own (integrated gradients, SmoothGrad, occlusion:
:class:`attrib.methods._batched.MultiPassMethod`, and any method overriding
:meth:`attrib.Attributor.attribute`) run on their own: their passes are on
other images (interpolated, noisy, occluded), so nothing is shared honestly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from types import MappingProxyType
from typing import Any

from ._attributor import Attributor, GradientNeeds, call_target
from ._checks import check_finite, one_zero_warning, warn_zero, zero_gradients
from ._explanation import Explanation
from ._inputs import first_shape
from .rules import VANILLA, RuleSet, rule_set
from .targets import Target

__all__ = ["Pass", "plan", "explain_planned"]


@dataclass
class Pass:
    """One gradient call: the merged needs and the methods it serves (in call order)."""

    members: list[tuple[Attributor, GradientNeeds]] = field(default_factory=list)

    @property
    def needs(self) -> GradientNeeds:
        return reduce(GradientNeeds.merge, (needs for _, needs in self.members))

    @property
    def rule(self) -> str | RuleSet | None:
        """The input-gradient rule of the pass, ``None`` when no member needs the input gradient."""
        return next((n.rule for _, n in self.members if n.input_gradient), None)


def runs_alone(method: Attributor) -> bool:
    """Whether ``method`` runs its own passes (it overrides :meth:`Attributor.attribute`)."""
    return type(method).attribute is not Attributor.attribute


def plan(methods: Sequence[Attributor], inputs: Any) -> tuple[list[Pass], list[Attributor]]:
    """``(shared passes, methods run alone)`` for ``methods`` on ``inputs``.

    Calls each single-pass method's ``_prepare`` (the CAM methods' default
    layer) before reading its needs.
    """
    passes: list[Pass] = []
    by_rule: dict[RuleSet, Pass] = {}
    layer_only: list[tuple[Attributor, GradientNeeds]] = []
    alone: list[Attributor] = []
    for method in methods:
        if runs_alone(method):
            alone.append(method)
            continue
        method._prepare(inputs)
        needs = method.needs()
        if not needs.input_gradient:
            layer_only.append((method, needs))
            continue
        key = rule_set(needs.rule)
        if key not in by_rule:
            by_rule[key] = Pass()
            passes.append(by_rule[key])
        by_rule[key].members.append((method, needs))
    if layer_only:
        host = by_rule.get(VANILLA) or next(
            (shared for key, shared in by_rule.items() if key.rectifier_only), None)
        if host is None:
            host = Pass()
            passes.append(host)
        host.members.extend(layer_only)
    return passes, alone


def explain_planned(methods: Sequence[Attributor], inputs: Any,
                    target: Any = None) -> dict[str, Explanation]:
    """One :class:`Explanation` per method (keyed by its name, in the given order).

    All ``methods`` hold the same :class:`attrib.Model` and objective. Each
    explanation's ``stats["plan"]`` describes every pass that ran for the
    call: ``gradient_calls`` (one :class:`attrib.GradientRequest` each, all
    sent in one :meth:`attrib.Model.gradients_many`), ``forward_passes`` (the
    forward passes they ran: 1 when the backend shared one between rule sets),
    ``backward_passes`` (their sum), ``passes`` (per call: its rule, methods,
    forward and backward passes) and ``alone`` (the methods that ran their own
    passes).
    """
    first = methods[0]
    refusing = [m.name for m in methods if not m.several_inputs]  # of several inputs
    n = first_shape(first.model, inputs, refusing[0] if refusing else first.name,
                    not refusing)[0]
    targets, weights = first._split_target(inputs, target, n)
    passes, alone = plan(methods, inputs)
    described: dict[str, Any] = {}  # filled once every pass ran; shared read-only by every result
    stats = {"plan": MappingProxyType(described)}
    done: dict[str, Explanation] = {}
    runs: list[MappingProxyType[str, Any]] = []
    scored = target if isinstance(target, Target) else None
    requests = [shared.needs.request(inputs, targets, first.objective, weights, scored)
                for shared in passes]
    with one_zero_warning():  # a map that is zero everywhere: one warning for the call
        # one batch, several rule sets: the backend may run one forward pass for all
        results = first.model.gradients_many(requests) if requests else []
        for shared, request, result in zip(passes, requests, results):
            check_finite(result)
            runs.append(MappingProxyType({
                "rule": shared.rule, "methods": tuple(m.name for m, _ in shared.members),
                "forward_passes": int(result.stats.get("forward_passes", 1)),
                "backward_passes": int(result.stats.get("backward_passes", 0))}))
            with call_target(target):
                for method, _ in shared.members:
                    done[method.name] = method._from_result(result, weights, stats)
            causes = zero_gradients(request, result)
            for method, needs in shared.members:
                ignored = [c for c in causes if (c == "the inputs" and needs.input_gradient
                                                 and rule_set(needs.rule) == VANILLA)
                           or (needs.layer_gradients
                               and c in {f"layer {n!r}" for n in needs.layers})]
                if ignored:
                    warn_zero(method.name, ignored)
        for method in alone:
            own = method.attribute(inputs, target)
            done[method.name] = replace(own, stats={**own.stats, **stats})
    described.update(
        gradient_calls=len(passes),
        forward_passes=sum(int(run["forward_passes"]) for run in runs),
        backward_passes=sum(int(run["backward_passes"]) for run in runs),
        passes=tuple(runs),
        alone=tuple(m.name for m in alone),
    )
    return {m.name: done[m.name] for m in methods}
