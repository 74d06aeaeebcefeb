"""Rectifier rules on an unmodified torch model: autograd-graph hooks, or a ``TorchFunctionMode``.

Two mechanisms apply the rule held by a shared, switchable :class:`RuleState`
(vanilla, guided or deconvnet; see :mod:`attrib._rules`), and give the same
maps:

- :class:`RectifierGraph` (the fast path, for eager models): after the
  forward pass, the autograd graph is walked from the output and every
  rectifier node (``ReluBackward``, ``HardtanhBackward`` with lower bound 0,
  whichever spelling or in-place op made it) gets hooks that apply the rule
  around torch's own backward kernel. Nothing runs in Python per element;
  the cost over a plain gradient is one ``clamp`` per rectifier.
- :class:`RectifierMode`: while entered, every rectifier call the model makes
  from Python is routed to :class:`Rectify`, an ``autograd.Function`` whose
  backward applies the rule. It reaches code the graph cannot show: a
  ``torch.compile``'d model (its graph holds one ``CompiledFunctionBackward``
  node) and ``torch.func`` transforms.

The model, its modules and torch itself are never patched: leaving either
``with`` block (in a ``finally``) undoes everything.

Rectifiers caught, in every spelling that reaches Python:

- ``F.relu(x)`` and ``F.relu(x, inplace=True)`` (what ``nn.ReLU`` calls, also
  one module reused several times), ``torch.relu``, ``torch.relu_``
  (``F.relu_``), ``Tensor.relu``, ``Tensor.relu_``, ``torch.ops.aten.relu`` and
  ``torch.ops.aten.relu_``;
- clipped rectifiers with lower bound 0: ``F.relu6`` / ``nn.ReLU6`` /
  ``torch.ops.aten.relu6``, and ``F.hardtanh`` / ``F.hardtanh_`` /
  ``nn.Hardtanh`` / ``torch.ops.aten.hardtanh(_)`` **only** with
  ``min_val == 0`` (another lower bound is not a rectifier).

The graph path sees the same set as nodes (``relu``, ``relu_`` and every
spelling above make ``ReluBackward0``; ``relu6`` and ``hardtanh(_)`` make
``HardtanhBackward0``, whose saved ``min_val``/``max_val`` decide).

Not rectifiers, left alone: ``clamp(min=0)``, ``clamp_min``, ``torch.maximum(x, 0)``,
``F.threshold``, ``leaky_relu``, smooth activations (GELU, SiLU, ...).
Out of reach: TorchScript models (``torch.jit``) and code under reentrant
activation checkpointing (``torch.utils.checkpoint(..., use_reentrant=True)``
re-runs the forward inside backward, outside the mode), and rectifiers called
from inside another ``__torch_function__`` override (the mode does not see
nested calls). The count of intercepted rectifiers is reported so a caller can
warn when a guided rule changed nothing.

References
----------
Springenberg, Dosovitskiy, Brox, Riedmiller (2015). Striving for simplicity:
the all convolutional net. Zeiler & Fergus (2014). Visualizing and
understanding convolutional networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from attrib._errors import check_choice
from attrib.rules import rule_set

__all__ = ["RuleState", "Rectify", "RectifierMode", "RectifierGraph", "rectified", "NOT_A_RECTIFIER"]

_RULES = ("vanilla", "guided", "deconvnet")


class RuleState:
    """The rule set of one call; its rectifier rule is switchable between passes.

    ``rule`` is the rectifier rule every :class:`Rectify` node applies
    (``"vanilla"``, ``"guided"``, ``"deconvnet"``, or LRP's ``"pass"``);
    ``exact`` asks every operation routed by :class:`attrib_torch._relevance.RelevanceMode`
    for its true derivative (a pass whose layer gradients must be true).
    ``masks``: whether a rectifier's mask may still be needed (a rule other
    than ``"pass"``, or a true-derivative pass to come); with ``False`` an LRP
    pass-through keeps no mask and an in-place rectifier runs in place.
    ``copies``: LRP's addition rule keeps copies of its terms, not the tensors
    (a pass again after a later in-place operation changed one).
    """

    def __init__(self, rule: Any) -> None:
        self.rule_set = rule_set(rule)
        self.rule = check_choice("rule", self.rule_set.rectifier, _RULES + ("pass",))
        self.exact = False
        self.masks = True
        self.copies = False


class Rectify(torch.autograd.Function):
    """``min(max(x, 0), upper)`` whose backward applies ``state.rule``.

    Forward values equal ``torch.relu`` / ``F.hardtanh(x, 0, upper)`` bitwise.
    The **output** is saved for the mask (``[0 < out < upper]`` equals the
    true local gradient ``[0 < x < upper]``), so an in-place caller may
    overwrite the input afterwards.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, state: RuleState) -> torch.Tensor:
        out = torch.relu(x) if upper is None else torch.clamp(x, 0, upper)
        if state.masks or state.rule != "pass":
            ctx.save_for_backward(out)
        ctx.upper = upper
        ctx.state = state
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        rule = ctx.state.rule
        if rule == "pass":  # LRP: relevance passes through activations unchanged
            return grad_output, None, None
        (out,) = ctx.saved_tensors
        if rule == "deconvnet":  # relu(grad_out), the forward mask ignored (Zeiler 2014)
            return grad_output.clamp(min=0), None, None
        passed = grad_output.clamp(min=0) if rule == "guided" else grad_output
        # the true local gradient [0 < out < upper], as torch's own backward kernels apply it
        if ctx.upper is None:
            grad_input = torch.ops.aten.threshold_backward(passed, out, 0)
        else:
            grad_input = torch.ops.aten.hardtanh_backward(passed, out, 0, ctx.upper)
        return grad_input, None, None


class _PassInPlace(torch.autograd.Function):
    """An in-place rectifier under LRP's pass-through with no mask to keep.

    Rectifies ``x`` in place (``mark_dirty``; values as :class:`Rectify`'s),
    so the forward writes no copy and the backward adds no zero gradient for
    the overwritten input.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None) -> torch.Tensor:
        if upper is None:
            x.relu_()
        else:
            x.clamp_(0, upper)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


def in_place_ok(x: torch.Tensor) -> bool:
    """Whether an ``autograd.Function`` may overwrite ``x`` (``mark_dirty``): not a view,
    not a leaf that requires grad."""
    return x._base is None and (x.grad_fn is not None or not x.requires_grad)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# Each matcher returns (inplace, upper) for a rectifier call, or None when the call
# is not a rectifier (e.g. hardtanh with a lower bound other than 0).
_Match = tuple[bool, float | None] | None


def _relu(inplace: bool) -> Callable[[tuple[Any, ...], dict[str, Any]], _Match]:
    return lambda args, kwargs: (inplace, None)


def _f_relu(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Match:
    return bool(_arg(args, kwargs, 1, "inplace", False)), None


def _f_relu6(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Match:
    return bool(_arg(args, kwargs, 1, "inplace", False)), 6.0


def _relu6(inplace: bool) -> Callable[[tuple[Any, ...], dict[str, Any]], _Match]:
    return lambda args, kwargs: (inplace, 6.0)


def _hardtanh_bounds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float] | None:
    low = _arg(args, kwargs, 1, "min_val", -1.0)
    high = _arg(args, kwargs, 2, "max_val", 1.0)
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        return None
    low, high = float(low), float(high)
    if low != 0.0 or not high > 0.0:
        return None
    return low, high


def _f_hardtanh(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Match:
    bounds = _hardtanh_bounds(args, kwargs)
    if bounds is None:
        return None
    return bool(_arg(args, kwargs, 3, "inplace", False)), bounds[1]


def _hardtanh(inplace: bool) -> Callable[[tuple[Any, ...], dict[str, Any]], _Match]:
    def match(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Match:
        bounds = _hardtanh_bounds(args, kwargs)
        return None if bounds is None else (inplace, bounds[1])

    return match


def _matchers() -> dict[Any, Callable[[tuple[Any, ...], dict[str, Any]], _Match]]:
    aten = torch.ops.aten
    table: dict[Any, Callable[[tuple[Any, ...], dict[str, Any]], _Match]] = {
        F.relu: _f_relu,
        torch.relu: _relu(False),
        torch.relu_: _relu(True),
        torch.Tensor.relu: _relu(False),
        torch.Tensor.relu_: _relu(True),
        aten.relu: _relu(False),
        aten.relu_: _relu(True),
        F.relu6: _f_relu6,
        torch._C._nn.relu6: _relu6(False),
        aten.relu6: _relu6(False),
        F.hardtanh: _f_hardtanh,
        F.hardtanh_: _hardtanh(True),
        torch._C._nn.hardtanh: _hardtanh(False),
        torch._C._nn.hardtanh_: _hardtanh(True),
        aten.hardtanh: _hardtanh(False),
        aten.hardtanh_: _hardtanh(True),
    }
    return table


_MATCHERS: dict[Any, Callable[[tuple[Any, ...], dict[str, Any]], _Match]] | None = None


def _lookup(func: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], _Match] | None:
    global _MATCHERS
    if _MATCHERS is None:
        _MATCHERS = _matchers()
    if isinstance(func, torch._ops.OpOverload):
        func = func.overloadpacket
    try:
        return _MATCHERS.get(func)
    except TypeError:  # an unhashable callable is not one of ours
        return None


#: what :func:`rectified` returns for a call that is not a rectifier
NOT_A_RECTIFIER: Any = object()


def rectified(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], state: RuleState) -> Any:
    """The rectifier call ``func(*args, **kwargs)`` routed to :class:`Rectify`, or :data:`NOT_A_RECTIFIER`.

    Shared by every ``TorchFunctionMode`` that applies rectifier rules
    (:class:`RectifierMode`, and the LRP relevance mode).
    """
    matcher = _lookup(func)
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    if matcher is None or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return NOT_A_RECTIFIER
    found = matcher(args, kwargs)
    if found is None:
        return NOT_A_RECTIFIER
    inplace, upper = found
    if inplace and not state.masks and state.rule == "pass" and in_place_ok(x):
        return _PassInPlace.apply(x, upper)
    out = Rectify.apply(x, upper, state)
    # in place as ``copy_`` of the result (not ``mark_dirty``), so the saved output
    # stays intact and compile/vmap keep working
    return x.copy_(out) if inplace else out


class RectifierMode(TorchFunctionMode):
    """Routes every rectifier call to :class:`Rectify` while entered.

    Use as ``with RectifierMode(state): logits = model(x)``; scoped to the
    ``with`` block. :attr:`count` is the number of rectifier calls routed.
    """

    def __init__(self, state: RuleState) -> None:
        super().__init__()
        self.state = state
        self.count = 0

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = rectified(func, args, kwargs, self.state)
        if out is NOT_A_RECTIFIER:
            return func(*args, **kwargs)
        self.count += 1
        return out


# -- the graph-hook fast path ------------------------------------------------------------

# Autograd nodes whose backward the graph cannot show: code compiled by
# ``torch.compile`` (AOTAutograd), fused by TorchScript, and ``CopySlices``, which
# wraps the backward of an in-place op on a view (e.g. ``relu_`` on a reshaped
# Linear output in Swin V2's position-bias MLP) without exposing it. A rectifier
# inside one has no node of its own: the rule must go through :class:`RectifierMode`.
_OPAQUE_NODES = ("CompiledFunctionBackward", "DifferentiableGraphBackward", "CopySlices")


def _rectifier_upper(node: Any) -> tuple[bool, float | None]:
    """Whether ``node`` is a rectifier's backward node, and its upper bound (None: ReLU).

    ``ReluBackward*`` is ``relu``/``relu_`` (every spelling, in place or not);
    ``HardtanhBackward*`` is ``relu6``/``hardtanh(_)`` and counts only with
    ``min_val == 0`` and ``max_val > 0``, as :class:`RectifierMode` decides.
    """
    name = type(node).__name__
    if name.startswith("ReluBackward"):
        return True, None
    if name.startswith("HardtanhBackward"):
        low = getattr(node, "_saved_min_val", None)
        high = getattr(node, "_saved_max_val", None)
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) \
                and float(low) == 0.0 and float(high) > 0.0:
            return True, float(high)
    return False, None


class RectifierGraph:
    """The rectifier nodes of one autograd graph, hooked to apply ``state.rule``.

    Built after the forward pass from the output's ``grad_fn``: every
    ``ReluBackward`` node and every ``HardtanhBackward`` node with lower bound
    0 gets hooks that read ``state.rule`` when the backward pass reaches them:

    - guided: a pre-hook replaces the incoming gradient by ``relu(grad_out)``
      and torch's own kernel applies the forward mask, so
      ``grad_in = relu(grad_out) * [0 < x < upper]`` (Springenberg 2015);
    - deconvnet: a post-hook replaces the node's result by ``relu(grad_out)``,
      the forward mask ignored (Zeiler & Fergus 2014);
    - vanilla: both hooks return ``None`` (the true gradient).

    Only the hooks of ``rules`` (the rules ``state`` may switch to besides
    vanilla) are registered. Use as a context manager; leaving it removes
    every hook (in ``finally``).
    ``count`` is the number of rectifier nodes; ``opaque`` is True when the
    graph holds nodes whose inner operations it cannot show (compiled code),
    where :class:`RectifierMode` must be used instead.
    """

    def __init__(self, output: torch.Tensor, state: RuleState,
                 rules: tuple[str, ...] = ("guided", "deconvnet")) -> None:
        self.state = state
        self.rules = rules
        self.rectifiers: list[Any] = []
        self.opaque = False
        self._parents: dict[Any, list[Any]] = {}
        self._leaves: dict[int, Any] = {}
        self._handles: list[Any] = []
        root = output.grad_fn
        if root is None:
            return
        seen = {root}
        stack = [root]
        while stack:
            node = stack.pop()
            name = type(node).__name__
            if name == "AccumulateGrad":
                self._leaves[id(node.variable)] = node  # type: ignore[attr-defined]
                continue
            if name.startswith(_OPAQUE_NODES):
                self.opaque = True
            if _rectifier_upper(node)[0]:
                self.rectifiers.append(node)
            for child, _ in node.next_functions:
                if child is None:
                    continue
                self._parents.setdefault(child, []).append(node)
                if child not in seen:
                    seen.add(child)
                    stack.append(child)

    @property
    def count(self) -> int:
        return len(self.rectifiers)

    def rectifier_above(self, tensor: torch.Tensor) -> bool:
        """Whether a rectifier lies between ``tensor`` and the output.

        True when some rectifier node's backward runs before the gradient
        reaches ``tensor`` (so the rule would change that gradient). The node
        that produced ``tensor`` does not count: the gradient at ``tensor`` is
        taken before that node's backward runs.
        """
        start = tensor.grad_fn if tensor.grad_fn is not None else self._leaves.get(id(tensor))
        if start is None:
            return False
        rectifiers = set(self.rectifiers)
        seen = {start}
        stack = list(self._parents.get(start, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            if node in rectifiers:
                return True
            seen.add(node)
            stack.extend(self._parents.get(node, ()))
        return False

    def __enter__(self) -> RectifierGraph:
        try:
            for node in self.rectifiers:
                if "guided" in self.rules:
                    self._handles.append(node.register_prehook(self._guided))
                if "deconvnet" in self.rules:
                    self._handles.append(node.register_hook(self._deconvnet))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def _guided(self, grad_outputs: tuple[torch.Tensor | None, ...]) -> Any:
        if self.state.rule != "guided" or grad_outputs[0] is None:
            return None
        return (grad_outputs[0].clamp(min=0),) + tuple(grad_outputs[1:])

    def _deconvnet(
        self, grad_inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]
    ) -> Any:
        if self.state.rule != "deconvnet" or grad_outputs[0] is None or grad_inputs[0] is None:
            return None
        return (grad_outputs[0].clamp(min=0),) + tuple(grad_inputs[1:])
