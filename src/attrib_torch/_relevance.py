"""Rule sets beyond rectifiers (LRP) on an unmodified torch model, through a ``TorchFunctionMode``.

While :class:`RelevanceMode` is entered, the operations a rule set names are
routed to ``autograd.Function`` s whose forward is the original call (the
logits are bitwise those of the model) and whose backward applies the rule of
:mod:`attrib.rules` (each mirrors that rule's NumPy reference):

- convolutions (``F.conv1d/2d/3d``) and dense layers (``F.linear``), called by
  a module or functionally, reused or not; a module's name (for per-layer
  rules) is found from its weight parameter, never by editing the model;
- BatchNorm in eval mode (``F.batch_norm``) applied to the output of one of
  them is merged into it (``W * γ/√(var + eps)``, bias likewise, eps
  included): the rule then sees the merged layer, as zennit's canonizers do by
  hand; the BatchNorm passes the relevance on unchanged;
- a product of such an output and a constant per output channel (timm's
  ``LayerScale``: ``x * gamma``, ``x.mul_(gamma)``) is merged the same way
  (``W * γ``, ``b * γ``), as the JAX backend merges a layer's affine tail;
- average pooling (``F.avg_pool1d/2d/3d``, ``F.adaptive_avg_pool1d/2d/3d``,
  ``mean``) and the sum of two activations (``+``, ``+=``, ``torch.add``,
  ``add_``) get their kinds' rules; rectifiers go through
  :class:`attrib_torch._rectifiers.Rectify` with the set's rectifier rule;
- max pooling, reshapes, flattening, concatenation, indexing and dropout in
  eval mode keep their true derivative (relevance routed as the gradient is);
- zero padding (``F.pad``, constant 0, as timm's TF-``SAME`` convolutions
  write it) is linear and carries no relevance: relevance of the padded
  tensor is cropped back. A convolution of a zero-padded activation is one
  layer ``conv(pad(x))``, so every rule sees the unpadded input exactly as
  it sees a convolution's own padding (flat, w² and zᴮ included).

Tensors computed from parameters alone (a position embedding resampled to the
image's grid, as timm's ``dynamic_img_size`` does) are constants, not
activations: their operations run as written and carry no relevance.

Under a strict rule set (LRP) any other operation that takes an activation and
returns one raises :class:`attrib.AttribError` naming it: a map the rules do not
define is never returned. Limits are those of the rectifier mode (nested calls
inside another ``__torch_function__``, TorchScript and reentrant checkpointing
are out of reach).

References
----------
Bach et al. (2015). On pixel-wise explanations for non-linear classifier
decisions by layer-wise relevance propagation. Montavon et al. (2019).
Layer-wise relevance propagation: an overview.
"""

from __future__ import annotations

import functools
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from attrib._errors import AttribError, argument_error, shown
from attrib.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    LinearRule,
    Norm,
    RuleSet,
    WSquare,
    ZBox,
    ZPlus,
)

from ._attention import _mha_parameters
from ._rectifiers import NOT_A_RECTIFIER, RuleState, in_place_ok, rectified
from ._transformer_rules import (
    AddConstant,
    Elementwise,
    LayerNormRule,
    Product,
    Scale,
    Softmax,
    multi_head,
    sdpa,
)

__all__ = ["RelevanceMode", "linear_relevance"]

Linear = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


# -- the rules, in torch (each mirrors its NumPy reference in attrib.rules) ----------------
# Each full-size elementwise pass costs about as much as a small convolution on a CPU, so
# the rules below make as few as the formula allows, and give the values the plain
# formula gives (the same IEEE operations on the same operands, up to the sign of a zero).
def _divide(r: torch.Tensor, den: torch.Tensor, epsilon: float,
            inplace: bool = False, nonnegative: bool = False) -> torch.Tensor:
    """``r / (den + ε sign den)`` with sign(0) = +1; 0 where that denominator is 0.

    ``inplace``: the result is written into ``den`` (a scratch tensor of the
    result's shape), which saves the allocations of two full-size tensors.
    ``nonnegative``: ``den`` is a sum of non-negative products (z⁺ of ``x >= 0``,
    flat, w²), so its sign is +1 without looking (a NaN stays NaN either way).
    """
    scratch = inplace and den.shape == torch.broadcast_shapes(r.shape, den.shape) \
        and den.dtype == torch.result_type(r, den)
    if not scratch:
        den = den.clone()
    if nonnegative or (den.numel() and bool(den.min() >= 0)):  # sign +1 everywhere
        den.add_(epsilon)
    else:  # den + ε·(±1), the step's sign copied from den's (a boolean where() is slower)
        den.add_(0.0)  # -0 turns +0: sign(0) = +1
        den.add_(torch.copysign(torch.tensor(epsilon, dtype=den.dtype, device=den.device), den))
    zero = None if epsilon > 0 and bool(torch.tensor(epsilon, dtype=den.dtype) > 0) \
        else den == 0  # with ε > 0, |den ± ε| >= ε: no zero to guard (NaN stays NaN)
    out = torch.div(r, den, out=den) if scratch else r / den
    return out if zero is None else out.masked_fill_(zero, 0)


def _share(f: Linear, terms: list[tuple[float, torch.Tensor, Any, Any]], r: torch.Tensor,
           epsilon: float, checked: bool = False, nonnegative: bool = False) -> torch.Tensor:
    """``Σ c_i in_i * f^T(s, w_i)`` with ``s = r / stab(Σ c_i f(in_i, w_i, b_i))``.

    One forward per term and one backward through their sum. Terms whose input
    is all zero and that have no bias add exactly nothing and are skipped
    (``checked``: the caller already left them out). ``nonnegative``: every
    input, weight and bias of the terms is ``>= 0`` (see :func:`_divide`).
    """
    kept = terms if checked else [t for t in terms if t[3] is not None or bool(t[1].any())]
    if not kept:
        return torch.zeros_like(terms[0][1])
    leaves = [inp.detach().requires_grad_(True) for _, inp, _, _ in kept]
    with torch.enable_grad():
        total: torch.Tensor | None = None
        for (c, _, w, b), leaf in zip(kept, leaves):
            term = f(leaf, w, b)
            term = term if c == 1.0 else c * term
            total = term if total is None else total + term
        assert total is not None
        # the layer's backward reads its input and weights, never ``total``: it is scratch
        s = _divide(r, total.detach(), epsilon, inplace=True, nonnegative=nonnegative)
        grads = torch.autograd.grad(total, leaves, s)
    out: torch.Tensor | None = None
    for (_, inp, _, _), g in zip(kept, grads):
        # the gradient is a fresh tensor unless a layer's backward expanded one
        term = g.mul_(inp) if g.is_contiguous() and g.shape == inp.shape else inp * g
        out = term if out is None else out + term
    assert out is not None
    return out


def _pos(a: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None else a.clamp(min=0)


def _neg(a: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None else a.clamp(max=0)


def _signed_parts(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(x⁺, x⁻)``, each ``None`` where it is all zero; one pass when ``x >= 0`` (after a ReLU)."""
    low, high = torch.aminmax(x)
    positive, negative = not bool(high <= 0), not bool(low >= 0)  # NaN counts as both
    if not negative:
        return (x if positive else None), None
    return (x.clamp(min=0) if positive else None), x.clamp(max=0)


def _plus_terms(xp: torch.Tensor | None, xn: torch.Tensor | None, up: torch.Tensor,
                down: torch.Tensor | None, b: torch.Tensor | None) -> list[tuple[float, Any, Any, Any]]:
    """The terms ``up x⁺ + b, down x⁻`` of z⁺, αβ and γ, without the ones that add nothing."""
    terms: list[tuple[float, Any, Any, Any]] = []
    if xp is not None:
        terms.append((1.0, xp, up, b))
    elif b is not None and xn is not None:  # the bias counts in the denominator at x⁺ = 0 too
        terms.append((1.0, torch.zeros_like(xn), up, b))
    if xn is not None:
        terms.append((1.0, xn, down, None))
    return terms


def linear_relevance(rule: LinearRule | None, f: Linear, x: torch.Tensor, w: torch.Tensor | None,
                     b: torch.Tensor | None, r: torch.Tensor, *,
                     scratch_weight: bool = False) -> torch.Tensor:
    """Relevance at the input of ``f(x, w, b)`` given ``r`` at its output, under ``rule``.

    ``rule=None`` is the transposed layer (the true gradient). ``scratch_weight``:
    ``w`` is this call's own copy (a merged BatchNorm), which z⁺ may clamp in place.
    """
    if rule is None:
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(f(leaf, w, None), leaf, r)[0]
    if not x.numel():
        return torch.zeros_like(x)
    if isinstance(rule, (Epsilon, Norm)):
        eps = rule.epsilon if isinstance(rule, Epsilon) else rule.stabilizer
        return _share(f, [(1.0, x, w, b)], r, eps)
    assert w is not None, f"rule {rule.name!r} needs a layer with weights"
    if isinstance(rule, (ZPlus, AlphaBeta, Gamma)):
        xp, xn = _signed_parts(x)
        if xp is None and xn is None:
            return torch.zeros_like(x)
        if isinstance(rule, ZPlus):  # W⁻ only for a signed input
            wn = None if xn is None else w.clamp(max=0)
            wp = w.clamp_(min=0) if scratch_weight else w.clamp(min=0)
            return _share(f, _plus_terms(xp, xn, wp, wn, _pos(b)), r, rule.stabilizer, True,
                          nonnegative=xn is None)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        if isinstance(rule, AlphaBeta):
            positive = _share(f, _plus_terms(xp, xn, wp, wn, _pos(b)), r, rule.stabilizer, True,
                              nonnegative=xn is None)
            negative = _share(f, _plus_terms(xp, xn, wn, wp, _neg(b)), r, rule.stabilizer, True)
            return rule.alpha * positive - rule.beta * negative
        g = rule.gamma
        wu, wd = w + g * wp, w + g * wn
        bu = None if b is None else b + g * b.clamp(min=0)
        bd = None if b is None else b + g * b.clamp(max=0)
        z = f(x, w, b)
        up = _share(f, _plus_terms(xp, xn, wu, wd, bu), r * (z > 0), rule.stabilizer, True)
        down = _share(f, _plus_terms(xp, xn, wd, wu, bd), r * (z < 0), rule.stabilizer, True)
        return up + down
    ones = torch.ones_like(x)
    if isinstance(rule, Flat):
        return _share(f, [(1.0, ones, torch.ones_like(w), None)], r, rule.stabilizer, True,
                      nonnegative=True)
    if isinstance(rule, WSquare):
        return _share(f, [(1.0, ones, w * w, None if b is None else b * b)], r, rule.stabilizer,
                      True, nonnegative=True)
    if isinstance(rule, ZBox):
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        low, high = (torch.as_tensor(a, dtype=x.dtype, device=x.device)
                     for a in rule.bounds(tuple(x.shape)))
        return _share(f, [(1.0, x, w, b), (-1.0, low, wp, _pos(b)), (-1.0, high, wn, _neg(b))],
                      r, rule.stabilizer)
    raise AttribError(f"rules: no torch implementation of the LRP rule {rule!r}")


# -- the autograd Functions ------------------------------------------------------------------
class _LinearCall:
    """One convolution / dense call: its operation, parameters, rule, and a merged BatchNorm."""

    def __init__(self, f: Linear, weight: torch.Tensor, bias: torch.Tensor | None,
                 rule: LinearRule | None, state: RuleState, kind: str = "dense") -> None:
        self.f, self.weight, self.bias, self.rule, self.state = f, weight, bias, rule, state
        self.kind = kind  # "dense" (channels last) or "convolution" (channels at axis 1)
        self.norm: tuple[Any, ...] | None = None  # (mean, var, gamma, beta, eps)
        self.scale: torch.Tensor | None = None  # (C,): a per-channel product merged (LayerScale)
        self.scaled_in_place = False  # ``scale`` applied to the output in place (no node of its own)
        self.other_uses = 0
        self.uses = 0  # every differentiable use of the output (read for ``scale``)

    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight.detach(), None if self.bias is None else self.bias.detach()
        shape = (-1,) + (1,) * (w.ndim - 1)
        if self.norm is not None:
            mean, var, gamma, beta, eps = self.norm
            scale = 1.0 / torch.sqrt(var + eps)
            if gamma is not None:
                scale = gamma * scale
            merged_b = ((b if b is not None else torch.zeros_like(mean)) - mean) * scale
            if beta is not None:
                merged_b = merged_b + beta
            w, b = w * scale.reshape(shape), merged_b
        if self.scale is not None:
            w, b = w * self.scale.reshape(shape), None if b is None else b * self.scale
        return w, b


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, call: _LinearCall) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.call = call
        return call.f(x, call.weight, call.bias)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        call: _LinearCall = ctx.call
        if call.state.exact:
            w = call.weight.detach()
            if call.scaled_in_place:
                assert call.scale is not None
                w = w * call.scale.reshape((-1,) + (1,) * (w.ndim - 1))
            return linear_relevance(None, call.f, x, w, None, r), None
        w, b = call.merged()
        return linear_relevance(call.rule, call.f, x, w, b, r, scratch_weight=call.norm
                                is not None or call.scale is not None), None


class _Merged(torch.autograd.Function):
    """A BatchNorm merged into the layer before it: relevance passes unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, norm: Callable[[torch.Tensor], torch.Tensor],
                call: _LinearCall) -> torch.Tensor:
        ctx.call = call
        return norm(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        call: _LinearCall = ctx.call
        if call.state.exact:  # the true derivative of BatchNorm in eval mode
            assert call.norm is not None
            _, var, gamma, _, eps = call.norm
            scale = 1.0 / torch.sqrt(var + eps)
            if gamma is not None:
                scale = gamma * scale
            return r * scale.reshape((1, -1) + (1,) * (r.ndim - 2)), None, None
        return r, None, None


class _Scaled(torch.autograd.Function):
    """A per-channel constant product merged into the layer before it: relevance passes
    unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                factor: torch.Tensor, call: _LinearCall) -> torch.Tensor:
        ctx.factor, ctx.call = factor, call
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        if ctx.call.state.exact:  # the true derivative
            return r * ctx.factor, None, None, None
        return r, None, None, None


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                rule: LinearRule | None, state: RuleState) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.f, ctx.rule, ctx.state = f, rule, state
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors

        def f(inp: torch.Tensor, _w: Any, _b: Any) -> torch.Tensor:
            return ctx.f(inp)

        rule = None if ctx.state.exact else ctx.rule
        return linear_relevance(rule, f, x, None, None, r), None, None, None


class _Add(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, rule: LinearRule | None,
                state: RuleState, overwritten: bool = False) -> torch.Tensor:
        _save_terms(ctx, a, b, rule, state, overwritten)
        return a + b

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.state.exact or ctx.rule is None:
            return r, r, None, None, None
        a, b = ctx.saved_tensors
        if not isinstance(ctx.rule, (Epsilon, Norm)):
            raise AttribError(f"rules: the addition of two activations takes Norm or Epsilon, "
                              f"not {ctx.rule!r}")
        eps = ctx.rule.epsilon if isinstance(ctx.rule, Epsilon) else ctx.rule.stabilizer
        s = _divide(r, a + b, eps, inplace=True)
        own_a, own_b = ctx.own  # a copy of its own is this node's to overwrite
        return (a.mul_(s) if own_a else a * s), (b.mul_(s) if own_b else b * s), None, None, None


class _AddInPlace(_Add):
    """``a += b`` in place (``mark_dirty``): no copy of the sum back into ``a``, and no zero
    gradient for the overwritten ``a`` in backward. Backward as :class:`_Add`'s."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, rule: LinearRule | None,
                state: RuleState, overwritten: bool = True) -> torch.Tensor:
        _save_terms(ctx, a, b, rule, state, True)
        a.add_(b)
        ctx.mark_dirty(a)
        return a


def _save_terms(ctx: Any, a: torch.Tensor, b: torch.Tensor, rule: LinearRule | None,
                state: RuleState, overwritten: bool) -> None:
    """Keep ``a`` and ``b`` for the rule's backward, when it has a rule.

    ``a`` is copied when the addition overwrites it (``out += x``); otherwise
    both are kept as they are, and autograd's version counters say in backward
    whether a later in-place operation changed them: the model then runs again
    with ``state.copies`` (see :meth:`attrib_torch.TorchModel._relevance`), and
    both are copied. The sum is computed again in backward, as in forward
    (bitwise the same).
    """
    ctx.rule, ctx.state = rule, state
    if rule is None:
        return
    copy_a = overwritten or state.copies
    copy_b = state.copies or b is a
    ctx.own = (copy_a, copy_b)
    ctx.save_for_backward(a.detach().clone() if copy_a else a,
                          b.detach().clone() if copy_b else b)


# -- routing ----------------------------------------------------------------------------------
def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _activation(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad \
        and not isinstance(value, nn.Parameter)


def _tensors(values: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(v for v in value if isinstance(v, torch.Tensor))
    return out


def _tables() -> tuple[dict[Any, str], set[Any]]:
    T = torch.Tensor
    kinds: dict[Any, str] = {
        F.conv1d: "convolution", F.conv2d: "convolution", F.conv3d: "convolution",
        F.linear: "dense",
        F.batch_norm: "normalisation",
        F.avg_pool1d: "pooling", F.avg_pool2d: "pooling", F.avg_pool3d: "pooling",
        F.adaptive_avg_pool1d: "pooling", F.adaptive_avg_pool2d: "pooling",
        F.adaptive_avg_pool3d: "pooling", torch.mean: "pooling", T.mean: "pooling",
        T.add: "addition", T.add_: "addition", torch.add: "addition", T.__add__: "addition",
        T.__radd__: "addition", T.__iadd__: "addition",
        F.dropout: "dropout", F.dropout1d: "dropout", F.dropout2d: "dropout",
        F.dropout3d: "dropout", F.alpha_dropout: "dropout",
    }
    structural = {
        F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
        F.adaptive_max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices,
        F.max_pool3d_with_indices, torch.flatten, T.flatten, T.view, T.view_as, T.reshape,
        T.reshape_as, torch.reshape, T.permute, torch.permute, T.transpose, torch.transpose,
        T.contiguous, T.clone, torch.clone, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze,
        T.__getitem__, torch.cat, torch.concat, torch.concatenate, torch.stack, T.split,
        torch.split, T.chunk, torch.chunk, T.expand, T.expand_as, T.to, T.float, T.double,
        T.type_as, T.unflatten, torch.unflatten, T.narrow, torch.narrow, T.select, T.t,
        torch.t, T.detach, T.unbind, torch.unbind, T.flip, torch.flip, torch.squeeze,
    }
    return kinds, structural


_TABLES: tuple[dict[Any, str], set[Any]] | None = None


@functools.cache
def _explicit_tables() -> tuple[frozenset[Any], frozenset[Any], frozenset[Any], frozenset[Any]]:
    """Attention written out: (products, softmaxes, multiplications, divisions)."""
    T = torch.Tensor
    return (frozenset({T.__matmul__, T.matmul, torch.matmul}),
            frozenset({F.softmax, T.softmax, torch.softmax}),
            frozenset({T.__mul__, T.__rmul__, T.mul, torch.mul}),
            frozenset({T.__truediv__, T.div, torch.div}))


def _kind(func: Any) -> tuple[str | None, bool]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _tables()
    kinds, structural = _TABLES
    try:
        return kinds.get(func), func in structural
    except TypeError:
        return None, False


#: in-place products (``x.mul_(gamma)``, ``x *= gamma``)
_INPLACE_PRODUCTS = frozenset({torch.Tensor.mul_, torch.Tensor.__imul__})


def _scale_error() -> AttribError:
    return argument_error(
        "model", "a per-channel constant product (LayerScale) that alone reads the convolution "
        "/ dense output it scales (so it merges into that layer exactly)",
        shown("a layer output read by such a product and by another operation"),
        "LRP has no rule for this graph; no map is returned")


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


class RelevanceMode(TorchFunctionMode):
    """Routes the operations ``state.rule_set`` names to its rules while entered.

    Parameters
    ----------
    state : RuleState
        Holds the rule set; ``state.exact`` switches every routed operation to
        its true derivative for a pass that must be the true gradient.
    layer_names : dict of int to str
        ``id(weight parameter) -> module name`` of the layers ``rules.layers`` names.

    ``counts`` says how many operations of each kind were routed.
    """

    def __init__(self, state: RuleState, layer_names: dict[int, str]) -> None:
        super().__init__()
        self.state = state
        self.rules: RuleSet = state.rule_set
        self.layer_names = layer_names
        self.counts: Counter[str] = Counter()
        self._calls: dict[int, tuple[weakref.ref[torch.Tensor], _LinearCall]] = {}
        #: id(padded) -> (padded, its unpadded activation, F.pad's ``pad``): zero padding
        self._pads: dict[int, tuple[weakref.ref[torch.Tensor], torch.Tensor, Any]] = {}
        #: inputs of the normalisations run before the first attention, and that
        #: attention's token count (see :meth:`token_input`)
        self._norm_inputs: list[torch.Tensor] = []
        self._tokens: int | None = None
        #: id -> tensor computed from parameters alone (see :meth:`_live`)
        self._constants: dict[int, weakref.ref[torch.Tensor]] = {}

    @property
    def count(self) -> int:
        return self.counts["rectifier"]

    def _live(self, value: Any) -> bool:
        """``value`` is an activation: it needs a gradient, is no parameter, and was not
        computed from parameters alone (a resampled position embedding is a constant)."""
        if not _activation(value):
            return False
        entry = self._constants.get(id(value))
        return entry is None or entry() is not value

    def _call_of(self, tensor: Any) -> _LinearCall | None:
        entry = self._calls.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def token_input(self) -> tuple[torch.Tensor | None, str]:
        """The tokens entering the first transformer block, or ``None`` and why.

        That is the input of the first normalisation over the tokens (a
        LayerNorm of an (N, T, C) tensor with T the first attention's token
        count) run before the first attention: in a pre-norm block that tensor
        is read by the normalisation and by the residual connection, so the
        relevance autograd sums there is all the relevance the blocks pass
        down (see :attr:`attrib.GradientResult.token_relevance`).
        """
        if self._tokens is None:
            return None, "no attention ran in the forward pass"
        for x in self._norm_inputs:
            if x.dim() >= 3 and x.shape[-2] == self._tokens:
                return x, ""
        return None, (f"no normalisation over the {self._tokens} tokens ran before the first "
                      "attention (a post-norm transformer has no pre-norm residual stream to "
                      "read the token relevance from)")

    def _attention_ran(self, tokens: int) -> None:
        if self._tokens is None:
            self._tokens = int(tokens)

    def check(self) -> None:
        """Raise if a merged BatchNorm's or LayerScale's layer output was also used elsewhere
        (no exact merge)."""
        for _ref, call in self._calls.values():
            if call.norm is not None and call.other_uses:
                raise argument_error(
                    "model", "a BatchNorm that alone reads the convolution / dense output it "
                    "normalises (so it merges into that layer exactly)",
                    shown("a layer output read by a BatchNorm and by another operation"),
                    "LRP has no rule for this graph; no map is returned")
            if call.scale is not None and call.uses > 1:
                raise _scale_error()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if not self._calls:
            return self._dispatch(func, args, kwargs)
        sources = [(t, call) for t in _tensors(args) + _tensors(kwargs.values())
                   if (call := self._call_of(t)) is not None]
        out = self._dispatch(func, args, kwargs)
        if sources and isinstance(out, torch.Tensor) and out.requires_grad:
            for tensor, call in sources:  # a use; an identity (dropout in eval) is none
                if out is not tensor:
                    call.uses += 1
        return out

    def _dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        routed = rectified(func, args, kwargs, self.state)
        if routed is not NOT_A_RECTIFIER:
            self.counts["rectifier"] += 1
            return routed
        x = args[0] if args else kwargs.get("input", kwargs.get("self"))
        if self.rules.strict and func in _explicit_tables()[2] | _INPLACE_PRODUCTS:
            routed = self._layer_scale(func, args, kwargs)
            if routed is not NOT_A_RECTIFIER:
                return routed
        if self.rules.transformer is not None and isinstance(x, torch.Tensor) and self._live(x):
            routed = self._transformer(func, args, kwargs, x)
            if routed is not NOT_A_RECTIFIER:
                return routed
        kind, structural = _kind(func)
        if kind is not None and isinstance(x, torch.Tensor) and self._live(x):
            return self._route(kind, func, args, kwargs, x)
        out = func(*args, **kwargs)
        inputs = _tensors(args) + _tensors(kwargs.values())
        if not any(self._live(t) for t in inputs):
            for made in _tensors(out if isinstance(out, (list, tuple)) else [out]):
                if made.requires_grad:  # computed from parameters alone: a constant
                    self._constants[id(made)] = weakref.ref(made)
            return out
        if func is F.pad and isinstance(x, torch.Tensor) and _activation(x) \
                and _arg(args, kwargs, 2, "mode", "constant") == "constant" \
                and not _arg(args, kwargs, 3, "value", None):  # zero padding: linear
            self._pads[id(out)] = (weakref.ref(out), x, _arg(args, kwargs, 1, "pad", None))
            structural = True
        if any(t.requires_grad for t in _tensors(out if isinstance(out, (list, tuple)) else [out])):
            for tensor in _tensors(args):  # a differentiable use, not a query like dim()
                call = self._call_of(tensor)
                if call is not None:
                    call.other_uses += 1
        if self.rules.strict and not structural and isinstance(out, torch.Tensor) \
                and out.requires_grad:
            raise argument_error(
                "model", f"operations rule set {self.rules.name!r} has rules for",
                shown(f"the operation {_name(func)!r} applied to an activation, for which it "
                      "has no rule"),
                "LRP relevance through it is undefined, so no map is returned. Supported: "
                "convolutions, linear layers, BatchNorm after them, rectifiers, average and "
                "max pooling, the sum of two activations, zero padding, reshapes, "
                "concatenation and dropout in eval mode")
        return out

    def _layer_scale(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``y * gamma`` (either order, or ``y.mul_(gamma)``) with ``y`` a convolution / dense
        output read nowhere else and ``gamma`` a constant per output channel: merged into that
        layer (``W * γ``, ``b * γ``); else ``NOT_A_RECTIFIER``."""
        a = args[0] if args else kwargs.get("input", kwargs.get("self"))
        b = _arg(args, kwargs, 1, "other", None)
        inplace = func in _INPLACE_PRODUCTS
        y, gamma = (a, b) if inplace or self._live(a) else (b, a)
        call = self._call_of(y)
        if call is None or not isinstance(y, torch.Tensor) or not isinstance(gamma, torch.Tensor) \
                or self._live(gamma) \
                or call.norm is not None or call.scale is not None:
            return NOT_A_RECTIFIER
        axis = -1 if call.kind == "dense" else 1 - y.dim()  # the output channels
        channels = y.shape[axis]
        if gamma.dim() > y.dim() or gamma.numel() != channels or (channels > 1 and (
                gamma.dim() < -axis or gamma.shape[axis] != channels)):
            return NOT_A_RECTIFIER
        if call.uses or call.other_uses:
            raise _scale_error()
        factor = gamma.detach()
        call.scale = factor.reshape(-1)
        self.counts["layer_scale"] += 1
        if inplace:
            # ``y`` may be a view made inside ``_Linear`` (autograd forbids an in-place change
            # of it): its values are scaled outside autograd, its graph stays the layer's,
            # whose backward applies the merged layer (rules) or ``W * γ`` (true gradient)
            y.data.mul_(factor)
            call.scaled_in_place = True
            self._calls.pop(id(y))  # ``y`` now holds the scaled output: its later reads are fine
            return y
        rest = {k: v for k, v in kwargs.items() if k not in ("input", "self", "other")}
        return _Scaled.apply(y, lambda inp: func(inp, factor, **rest) if y is a
                             else func(factor, inp, **rest), factor, call)

    def _transformer(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     x: torch.Tensor) -> Any:
        """The operations of :class:`attrib.rules.TransformerRules`, or ``NOT_A_RECTIFIER``."""
        rules, state = self.rules.transformer, self.state
        assert rules is not None
        if func is F.layer_norm:
            shape = _arg(args, kwargs, 1, "normalized_shape", None)
            weight = _arg(args, kwargs, 2, "weight", None)
            bias = _arg(args, kwargs, 3, "bias", None)
            eps = float(_arg(args, kwargs, 4, "eps", 1e-5))
            dims = tuple(range(-len(tuple(shape)), 0))
            sigma = torch.sqrt(x.detach().var(dim=dims, keepdim=True, unbiased=False) + eps)

            def frozen(inp: torch.Tensor) -> torch.Tensor:
                out = (inp - inp.mean(dim=dims, keepdim=True)) / sigma
                if weight is not None:
                    out = out * weight.detach()
                return out if bias is None else out + bias.detach()

            self.counts["layer_norm"] += 1
            if self._tokens is None:
                self._norm_inputs.append(x)
            return LayerNormRule.apply(x, lambda inp: func(inp, *args[1:], **{
                k: v for k, v in kwargs.items() if k != "input"}), frozen, rules, state)
        if func in (F.gelu, F.silu):
            self.counts["elementwise"] += 1
            return Elementwise.apply(x, lambda inp: func(inp, *args[1:], **{
                k: v for k, v in kwargs.items() if k != "input"}), state)
        if func is F.scaled_dot_product_attention:
            values = {key: _arg(args, kwargs, i, key, None) for i, key in enumerate(
                ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
                 "enable_gqa"))}
            self.counts["attention"] += 1
            self._attention_ran(values["query"].shape[-2])
            return sdpa(values, rules, state)
        if func is F.multi_head_attention_forward:
            call = dict(zip(_mha_parameters(func), args))
            call.update(kwargs)
            self.counts["attention"] += 1
            self._attention_ran(call["query"].shape[0])  # (T, N, C) or (T, C)

            def linear(inp: torch.Tensor, w: Any, b: Any) -> torch.Tensor:
                return self._route("dense", F.linear, (inp, w, b), {}, inp)

            return multi_head(call, linear, rules, state)
        explicit = self._explicit_attention(func, args, kwargs, x)
        if explicit is not NOT_A_RECTIFIER:
            return explicit
        kind, _ = _kind(func)
        if kind == "addition":
            other = _arg(args, kwargs, 1, "other", None)
            alpha = args[2] if len(args) > 2 else kwargs.get("alpha", 1)
            if isinstance(other, torch.Tensor) and not self._live(other) and alpha == 1 \
                    and torch.broadcast_shapes(x.shape, other.shape) == x.shape:
                self.counts["constant"] += 1
                out = AddConstant.apply(x, other.detach(), rules, state)
                if func in (torch.Tensor.add_, torch.Tensor.__iadd__):
                    return x.copy_(out)
                return out
        return NOT_A_RECTIFIER

    def _explicit_attention(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                            x: torch.Tensor) -> Any:
        """Attention written out: ``a @ b`` of two activations, softmax over the last axis,
        scaling by a number; else ``NOT_A_RECTIFIER``."""
        rules, state = self.rules.transformer, self.state
        assert rules is not None
        matmul, softmax, scale, divide = _explicit_tables()
        if func in matmul:
            other = _arg(args, kwargs, 1, "other", None)
            if isinstance(other, torch.Tensor) and self._live(other) and x.dim() >= 2 \
                    and other.dim() >= 2:
                self.counts["product"] += 1
                return Product.apply(x, other, 1.0, rules, state)
        elif func in softmax:
            dim = _arg(args, kwargs, 1, "dim", None)
            dtype = _arg(args, kwargs, 3 if func is F.softmax else 2, "dtype", None)
            if dim is not None and int(dim) in (-1, x.dim() - 1):
                self.counts["softmax"] += 1  # Hugging Face's eager attention: in float32
                self._attention_ran(x.shape[-1])
                return Softmax.apply(x if dtype is None else x.to(dtype), rules, state)
        elif func in scale or func in divide:
            other = _arg(args, kwargs, 1, "other", None)
            if isinstance(other, torch.Tensor) and other.dim() == 0 and not self._live(other):
                other = float(other)
            if isinstance(other, (int, float)) and not isinstance(other, bool) and other != 0 \
                    and kwargs.get("rounding_mode") is None:
                factor = 1.0 / other if func in divide else float(other)
                self.counts["scale"] += 1
                return Scale.apply(x, lambda inp: func(inp, *args[1:], **{
                    k: v for k, v in kwargs.items() if k not in ("input", "self")}), factor,
                    state)
        return NOT_A_RECTIFIER

    def _route(self, kind: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               x: torch.Tensor) -> Any:
        rules = self.rules
        if kind in ("convolution", "dense"):
            weight = _arg(args, kwargs, 1, "weight", None)
            bias = _arg(args, kwargs, 2, "bias", None)
            rest, extra = args[3:], {k: v for k, v in kwargs.items()
                                     if k not in ("input", "weight", "bias")}
            padded = self._pads.get(id(x)) if kind == "convolution" else None
            pad = None
            if padded is not None and padded[0]() is x:  # one layer conv(pad(x)), x unpadded
                x, pad = padded[1], padded[2]

            def f(inp: torch.Tensor, w: Any, b: Any) -> torch.Tensor:
                return func(inp if pad is None else F.pad(inp, pad), w, b, *rest, **extra)

            first = not self.counts["convolution"] and not self.counts["dense"]
            self.counts[kind] += 1
            rule = rules.linear_rule(kind, self.layer_names.get(id(weight)), first=first)
            call = _LinearCall(f, weight, bias, rule, self.state, kind)
            out = _Linear.apply(x, call)
            self._calls[id(out)] = (weakref.ref(out), call)
            return out
        if kind == "normalisation":
            training = _arg(args, kwargs, 5, "training", False)
            if rules.normalisation == "gradient" and not rules.strict:
                return func(*args, **kwargs)
            source = self._call_of(x)
            if training:
                raise argument_error(
                    "model", f"BatchNorm in eval mode for rule set {rules.name!r}",
                    shown("batch_norm in training mode"), "Call model.eval() first")
            if source is None or source.norm is not None or source.other_uses:
                raise argument_error(
                    "model", f"each batch_norm to follow the convolution or dense layer it is "
                    f"merged into (rule set {rules.name!r})",
                    shown("a batch_norm that follows none (e.g. a pre-activation BatchNorm on a "
                          "concatenation, as in DenseNet)"), "LRP has no rule for it")
            mean, var = _arg(args, kwargs, 1, "running_mean", None), \
                _arg(args, kwargs, 2, "running_var", None)
            gamma, beta = _arg(args, kwargs, 3, "weight", None), _arg(args, kwargs, 4, "bias", None)
            eps = _arg(args, kwargs, 7, "eps", 1e-5)
            source.norm = tuple(None if t is None else (t.detach() if isinstance(t, torch.Tensor)
                                                       else t) for t in (mean, var, gamma, beta)) \
                + (float(eps),)
            self.counts["normalisation"] += 1
            rest, extra = args[1:], {k: v for k, v in kwargs.items() if k != "input"}
            return _Merged.apply(x, lambda inp: func(inp, *rest, **extra), source)
        if kind == "pooling":
            rest, extra = args[1:], {k: v for k, v in kwargs.items() if k not in ("input", "self")}
            self.counts["pooling"] += 1
            return _Pool.apply(x, lambda inp: func(inp, *rest, **extra), rules.pooling, self.state)
        if kind == "addition":
            other = _arg(args, kwargs, 1, "other", None)
            alpha = kwargs.get("alpha", 1)
            if len(args) > 2:
                alpha = args[2]
            both = _activation(other) and isinstance(other, torch.Tensor) \
                and other.shape == x.shape and alpha == 1
            if both:
                self.counts["addition"] += 1
                if func in (torch.Tensor.add_, torch.Tensor.__iadd__):
                    if in_place_ok(x):
                        return _AddInPlace.apply(x, other, rules.addition, self.state)
                    return x.copy_(_Add.apply(x, other, rules.addition, self.state, True))
                return _Add.apply(x, other, rules.addition, self.state)
            if rules.strict:
                raise argument_error(
                    "model", f"additions of two activations of one shape (rule set {rules.name!r})",
                    shown(f"the operation {_name(func)!r} adding an activation and a constant, a "
                          "parameter or a broadcast tensor (a bias outside a layer)"),
                    "LRP has no rule for it; no map is returned")
            return func(*args, **kwargs)
        # dropout
        training = _arg(args, kwargs, 2, "training", True)
        if training and rules.strict:
            raise argument_error("model", f"dropout in eval mode for rule set {rules.name!r}",
                                 shown("dropout in training mode"), "Call model.eval() first")
        return func(*args, **kwargs)
