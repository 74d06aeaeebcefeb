"""AttnLRP / CP-LRP rules of transformer operations in torch (mirrors :class:`attrib.rules.TransformerRules`).

Used by :class:`attrib_torch._relevance.RelevanceMode` when its rule set has
``transformer`` rules: LayerNorm (``F.layer_norm``), GELU / SiLU, a parameter
added to an activation (a position embedding), and attention reached as
attention capture reaches it (``F.scaled_dot_product_attention``,
``F.multi_head_attention_forward``), computed explicitly as

    A = softmax(q k^T * scale);  out = A @ v

with the softmax and the two products under their rules. Attention a model
writes out itself (timm ``fused_attn=False``: ``q * scale``, ``q @ k^T``,
``softmax(-1)``, ``A @ v``) gets the same rules operation by operation: a
product of two activations, a softmax over the last axis, and a scaling by a
number (relevance unchanged), so both paths give one map. Every Function's
forward is the original computation; its backward applies the rule, or the
true derivative when ``state.exact``.

References
----------
Achtibat et al. (2024). AttnLRP: attention-aware layer-wise relevance
propagation for transformers. Ali et al. (2022). XAI for transformers: better
explanations through conservative propagation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from attrib._errors import argument_error, shown
from attrib.rules import Epsilon, TransformerRules

from ._rectifiers import RuleState

__all__ = ["LayerNormRule", "Elementwise", "AddConstant", "Scale", "Softmax", "Product",
           "attention"]


def _divide(r: torch.Tensor, den: torch.Tensor, epsilon: float) -> torch.Tensor:
    from ._relevance import _divide as divide
    return divide(r, den, epsilon)


class LayerNormRule(torch.autograd.Function):
    """``F.layer_norm`` with ``1/σ`` constant, then LRP-ε on that linear map."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                frozen: Callable[[torch.Tensor], torch.Tensor], rules: TransformerRules,
                state: RuleState) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.f, ctx.frozen, ctx.rules, ctx.state = f, frozen, rules, state
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        from ._relevance import linear_relevance
        (x,) = ctx.saved_tensors
        if ctx.state.exact:
            leaf = x.detach().requires_grad_(True)
            with torch.enable_grad():
                return (torch.autograd.grad(ctx.f(leaf), leaf, r)[0], None, None, None, None)

        def f(inp: torch.Tensor, _w: Any, _b: Any) -> torch.Tensor:
            return ctx.frozen(inp)

        out = linear_relevance(Epsilon(ctx.rules.epsilon), f, x, None, None, r)
        return out, None, None, None, None


class Elementwise(torch.autograd.Function):
    """GELU / SiLU: the identity rule, relevance passes unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                state: RuleState) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.f, ctx.state = f, state
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        if ctx.state.exact:
            (x,) = ctx.saved_tensors
            leaf = x.detach().requires_grad_(True)
            with torch.enable_grad():
                return torch.autograd.grad(ctx.f(leaf), leaf, r)[0], None, None
        return r, None, None


class AddConstant(torch.autograd.Function):
    """``x + c``, ``c`` not an activation (a parameter, e.g. a position embedding): LRP-ε."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, c: torch.Tensor, rules: TransformerRules,
                state: RuleState) -> torch.Tensor:
        out = x + c
        ctx.save_for_backward(x.detach().clone(), out.detach().clone())
        ctx.rules, ctx.state = rules, state
        return out

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        x, out = ctx.saved_tensors
        if ctx.state.exact:
            return r, None, None, None
        return x * _divide(r, out, ctx.rules.epsilon), None, None, None


class Scale(torch.autograd.Function):
    """``x * c`` (or ``x / c``) by a number: relevance passes unchanged (LRP-ε of a scaling)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                factor: float, state: RuleState) -> torch.Tensor:
        ctx.factor, ctx.state = factor, state
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        return (r * ctx.factor if ctx.state.exact else r), None, None, None


class Softmax(torch.autograd.Function):
    """Softmax over the last axis: ``R_in = x ⊙ (R − s ⊙ Σ R)`` (AttnLRP), or 0 (CP-LRP)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rules: TransformerRules,
                state: RuleState) -> torch.Tensor:
        s = x.softmax(dim=-1)
        ctx.save_for_backward(x, s)
        ctx.rules, ctx.state = rules, state
        return s

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        x, s = ctx.saved_tensors
        if ctx.state.exact:
            return s * (r - (s * r).sum(dim=-1, keepdim=True)), None, None
        if ctx.rules.conservative:
            return torch.zeros_like(x), None, None
        return x * (r - s * r.sum(dim=-1, keepdim=True)), None, None


class Product(torch.autograd.Function):
    """``z = scale * a @ b`` of two activations: the uniform ε-rule (CP-LRP: all to ``b``)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, scale: float,
                rules: TransformerRules, state: RuleState) -> torch.Tensor:
        z = (a @ b) * scale
        ctx.save_for_backward(a, b, z)
        ctx.scale, ctx.rules, ctx.state = scale, rules, state
        return z

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        a, b, z = ctx.saved_tensors
        c = ctx.scale
        if ctx.state.exact:
            return c * r @ b.transpose(-2, -1), c * a.transpose(-2, -1) @ r, None, None, None
        s = _divide(r, z, ctx.rules.epsilon)
        share_a, share_b = (0.0, 1.0) if ctx.rules.conservative else (0.5, 0.5)
        ra = share_a * a * (c * s @ b.transpose(-2, -1))
        rb = share_b * b * (c * a.transpose(-2, -1) @ s)
        return ra, rb, None, None, None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
              rules: TransformerRules, state: RuleState) -> torch.Tensor:
    """``softmax(q k^T * scale) @ v`` of (…, T, d) tensors under the rules, (…, T, d_v)."""
    logits = Product.apply(q, k.transpose(-2, -1), scale, rules, state)
    probabilities = Softmax.apply(logits, rules, state)
    return Product.apply(probabilities, v, 1.0, rules, state)


def sdpa(values: dict[str, Any], rules: TransformerRules, state: RuleState) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` under the rules (no mask, causality or dropout)."""
    unsupported = [k for k in ("attn_mask", "is_causal", "dropout_p", "enable_gqa") if values[k]]
    if unsupported:
        raise argument_error(
            "model", "scaled_dot_product_attention without mask, causality, dropout or GQA "
            "for AttnLRP", shown(f"a call with {unsupported[0]}={values[unsupported[0]]!r}"),
            "AttnLRP here covers encoder self-attention (ViTs) in eval mode.")
    q = values["query"]
    scale = 1.0 / math.sqrt(q.size(-1)) if values["scale"] is None else float(values["scale"])
    return attention(q, values["key"], values["value"], scale, rules, state)


def multi_head(call: dict[str, Any], linear: Callable[..., torch.Tensor],
               rules: TransformerRules, state: RuleState) -> tuple[torch.Tensor, Any]:
    """``F.multi_head_attention_forward`` (T, N, E) inputs under the rules; ``linear(x, w, b)``
    routes the projections to the dense rule."""
    blocked = {"bias_k": call.get("bias_k") is not None,
               "bias_v": call.get("bias_v") is not None,
               "add_zero_attn": bool(call.get("add_zero_attn")),
               "key_padding_mask": call.get("key_padding_mask") is not None,
               "attn_mask": call.get("attn_mask") is not None,
               "is_causal": bool(call.get("is_causal")),
               "use_separate_proj_weight": bool(call.get("use_separate_proj_weight")),
               "dropout_p": bool(call.get("dropout_p")) and bool(call.get("training", True))}
    bad = [k for k, v in blocked.items() if v]
    query, key, value = call["query"], call["key"], call["value"]
    if bad or query.dim() != 3:
        raise argument_error(
            "model", "nn.MultiheadAttention without masks, extra biases, separate projections "
            "or dropout, batched, for AttnLRP",
            shown(f"a call with {bad[0] if bad else 'unbatched input'}"),
            "AttnLRP here covers encoder self-attention (ViTs) in eval mode.")
    length, batch, embed = query.shape
    heads = int(call["num_heads"])
    head = embed // heads
    weight, bias = call["in_proj_weight"], call["in_proj_bias"]
    if query is key and key is value:
        q, k, v = linear(query, weight, bias).chunk(3, dim=-1)
    else:
        ws = weight.chunk(3)
        bs = (None,) * 3 if bias is None else bias.chunk(3)
        q, k, v = (linear(t, w, b) for t, w, b in zip((query, key, value), ws, bs))

    def split(t: torch.Tensor) -> torch.Tensor:  # (T, N, E) -> (N, H, T, d)
        return t.reshape(t.size(0), batch, heads, head).permute(1, 2, 0, 3)

    out = attention(split(q), split(k), split(v), 1.0 / math.sqrt(head), rules, state)
    out = out.permute(2, 0, 1, 3).reshape(length, batch, embed)
    out = linear(out, call["out_proj_weight"], call["out_proj_bias"])
    if call.get("need_weights", True):
        raise argument_error(
            "model", "nn.MultiheadAttention called with need_weights=False for AttnLRP",
            shown("need_weights=True"), "torchvision's ViT calls it so; the weights are not "
            "returned under relevance rules.")
    return out, None
