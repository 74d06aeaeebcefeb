"""Attention capture on an unmodified torch model, through a ``TorchFunctionMode``.

While :func:`captured_attention` is entered, every attention operation the
model runs from Python inside the asked layers is computed explicitly,

    A = softmax(q k^T * scale + mask);  out = A @ v

so that ``A`` (N, heads, T, S) is a tensor of the autograd graph whose value
and gradient can be read; outside those layers nothing changes. Reached:

- ``F.scaled_dot_product_attention`` (timm with ``fused_attn``, Hugging Face's
  ``"sdpa"`` attention, torchvision's ``nn.MultiheadAttention`` inside);
  ``attn_mask`` (boolean or additive), ``is_causal``, ``scale`` and
  ``enable_gqa`` are honoured; a ``dropout_p > 0`` (a model in training mode)
  is refused, since its attention is random;
- ``nn.MultiheadAttention``: ``F.multi_head_attention_forward`` is run on its
  explicit path (``need_weights=True, average_attn_weights=False``), whose
  weights are a view of the very softmax output the values are multiplied
  with (its ``_base``): that tensor is captured. The caller gets the weights
  it asked for (averaged over heads when ``average_attn_weights``), or
  ``None``. Its eval **fast path**
  (``torch._native_multi_head_attention``) is never taken while a function
  mode is active (``nn.MultiheadAttention`` checks ``has_torch_function``),
  so it needs no handler.

A captured attention is named after the innermost asked module running when
it is called (forward pre/post hooks on those modules, acting only on the
calling thread, removed in ``finally``); with ``"all"`` every module is asked.
A module that runs several attention operations gives ``name``, ``name#1``, ...
Modules' ``fused_attn`` flags and every other attribute are left alone:
capture changes how an attention is computed for this call only (float32
outputs move by rounding, about 1e-6 relative).

Out of reach, as for the rectifier mode: attention written as explicit
``matmul`` + ``softmax`` (timm with ``fused_attn=False``, Hugging Face's
``"eager"`` attention, torchvision's Swin) is no attention operation the mode
can name; ``torch.compile``'d and TorchScript code, and nested
``__torch_function__`` overrides.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from attrib._attention import ALL
from attrib._errors import argument_error, did_you_mean, shown

from ._capture import _HOOKS_LOCK, Tap

__all__ = ["AttentionCapture", "captured_attention", "explicit_attention"]


def explicit_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                       is_causal: bool = False, scale: float | None = None,
                       enable_gqa: bool = False) -> torch.Tensor:
    """The probabilities ``A`` of ``F.scaled_dot_product_attention``, (N, heads, T, S).

    Computed as timm's unfused attention (``(q * scale) @ k^T``, softmax); the
    attention's output is ``A @ value``.
    """
    if dropout_p:
        raise argument_error(
            "model", "attention without dropout (a model in eval mode) to capture",
            shown(f"scaled_dot_product_attention with dropout_p={dropout_p}"),
            "Call model.eval() first: attention under dropout is random.")
    length, source = query.size(-2), key.size(-2)
    factor = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa and key.dim() >= 3 and key.size(-3) != query.size(-3):
        repeat = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(repeat, dim=-3)
    logits = (query * factor) @ key.transpose(-2, -1)
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    return logits.softmax(dim=-1)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
               "enable_gqa")


class AttentionCapture:
    """The attention captured during one forward pass (see module docs).

    Attributes
    ----------
    taps : list of Tap
        One per captured attention, in call order: ``output`` is ``A`` in the
        graph, ``activation`` its detached values (nothing writes ``A``).
    """

    def __init__(self, rectifier_count: Callable[[], int], needs_grad: bool) -> None:
        self.taps: list[Tap] = []
        self.stack: list[str] = []
        self.owner = threading.get_ident()
        self.rectifier_count = rectifier_count
        self.needs_grad = needs_grad
        self._counts: dict[str, int] = {}

    def name(self) -> str | None:
        """The innermost asked module running now on the owner thread, or None."""
        return self.stack[-1] if self.stack else None

    def record(self, name: str, probabilities: torch.Tensor,
               grad_of: torch.Tensor | None = None) -> torch.Tensor:
        """Keep ``probabilities`` under ``name``; returns the tensor the model continues with.

        ``grad_of`` is the graph tensor holding the same values in another
        shape when ``probabilities`` is a view of it (nn.MultiheadAttention);
        the gradient is taken there and reshaped.
        """
        seen = self._counts.get(name, 0)
        self._counts[name] = seen + 1
        flowing = probabilities
        if grad_of is None and self.needs_grad and not flowing.requires_grad \
                and torch.is_grad_enabled():
            flowing = probabilities.detach().requires_grad_()  # frozen parameters: still a gradient
        self.taps.append(Tap(name if not seen else f"{name}#{seen}",
                             output=flowing if grad_of is None else grad_of,
                             activation=flowing.detach(),
                             rectifiers_before=self.rectifier_count(), calls=1))
        return flowing


class AttentionMode(TorchFunctionMode):
    """Computes the attention operations inside asked modules explicitly and records them."""

    def __init__(self, capture: AttentionCapture) -> None:
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = self.capture.name()
        if name is not None and func is F.scaled_dot_product_attention:
            values = {key: _arg(args, kwargs, i, key, None) for i, key in enumerate(_SDPA_NAMES)}
            extra = {k: v for k, v in values.items() if k not in ("query", "key", "value")
                     and v is not None}
            probabilities = explicit_attention(values["query"], values["key"], values["value"],
                                                  **extra)
            flowing = self.capture.record(name, probabilities)
            value = values["value"]
            if values["enable_gqa"] and value.dim() >= 3 and value.size(-3) != flowing.size(-3):
                value = value.repeat_interleave(flowing.size(-3) // value.size(-3), dim=-3)
            return flowing @ value
        if name is not None and func is F.multi_head_attention_forward:
            return self._multi_head(func, args, kwargs)
        return func(*args, **kwargs)

    def _multi_head(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``nn.MultiheadAttention``'s function with its probabilities kept.

        Run with ``need_weights=True, average_attn_weights=False`` (its explicit
        path); the weights it returns are a view of the softmax output the
        values were multiplied with, whose ``_base`` is that tensor itself.
        """
        call = dict(zip(_mha_parameters(func), args))
        call.update(kwargs)
        query, key, value = call["query"], call["key"], call["value"]
        dropout_p = call.get("dropout_p", 0.0)
        if dropout_p and call.get("training", True):
            explicit_attention(query, key, value, dropout_p=dropout_p)  # raises the clear error
        if self.capture.needs_grad and torch.is_grad_enabled() and not any(
                isinstance(t, torch.Tensor) and t.requires_grad for t in (query, key, value)):
            # frozen parameters, input without grad: a graph from the attention on is needed
            fresh = query.detach().requires_grad_()
            call.update(query=fresh, key=fresh if key is query else key,
                        value=fresh if value is query else value)
        need_weights = bool(call.get("need_weights", True))
        average = bool(call.get("average_attn_weights", True))
        output, weights = func(**{**call, "need_weights": True, "average_attn_weights": False})
        base = weights._base if weights is not None else None
        heads, length, source = weights.shape[-3:]
        if base is None or base.numel() != weights.numel():
            raise argument_error(
                "attention", "an nn.MultiheadAttention whose attention attrib can read",
                shown("one whose need_weights path returned no view of its softmax"),
                "Report this with your torch version.")
        probabilities = base.view(-1, heads, length, source)
        name = self.capture.name()
        assert name is not None
        self.capture.record(name, probabilities, grad_of=base)
        if not need_weights:
            return output, None
        returned = probabilities.mean(dim=1) if average else probabilities
        if call["query"].dim() == 2:  # unbatched
            returned = returned.squeeze(0)
        return output, returned


@functools.lru_cache(maxsize=4)
def _mha_parameters(func: Any) -> tuple[str, ...]:
    """Parameter names of ``F.multi_head_attention_forward``, in order."""
    return tuple(inspect.signature(func).parameters)


def _check_names(model: nn.Module, names: tuple[str, ...]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if not name or name not in modules:
            known = [n for n in modules if n]
            attention = [n for n, m in modules.items() if n and _looks_like_attention(n, m)]
            raise argument_error(
                "attention", "names of modules of this torch model that run attention, or 'all'",
                name, did_you_mean(str(name), known) or (
                    f"Attention modules: {attention[:4]}" if attention else
                    f"Layers near the output: {known[-5:]}"))
        out[name] = modules[name]
    return out


def _looks_like_attention(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or name.rsplit(".", 1)[-1] in (
        "attn", "attention", "self_attention", "self_attn")


@contextmanager
def captured_attention(model: nn.Module, attention: tuple[str, ...] | str,
                       rectifier_count: Callable[[], int],
                       needs_grad: bool) -> Iterator[AttentionCapture | None]:
    """Capture the attention of the asked layers while the block runs the model once.

    Yields ``None`` when nothing is asked. Afterwards, every asked layer must
    have run an attention operation (a clear :class:`attrib.AttribError`
    otherwise).
    """
    if not attention:
        yield None
        return
    every = attention == ALL
    modules = dict((n, m) for n, m in model.named_modules() if n) if every \
        else _check_names(model, tuple(attention))
    capture = AttentionCapture(rectifier_count, needs_grad)
    handles = []

    def push(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            if threading.get_ident() == capture.owner:
                capture.stack.append(name)
        return hook

    def pop(module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() == capture.owner and capture.stack:
            capture.stack.pop()

    try:
        with _HOOKS_LOCK:
            for name, module in modules.items():
                handles.append(module.register_forward_pre_hook(push(name)))
                handles.append(module.register_forward_hook(pop))
        with AttentionMode(capture):
            yield capture
    finally:
        with _HOOKS_LOCK:
            for handle in handles:
                handle.remove()
    found = {tap.name.split("#")[0] for tap in capture.taps}
    missing = [name for name in modules if name not in found] if not every else []
    if missing or not capture.taps:
        where = f"{missing[0]!r}" if missing else "the model"
        raise argument_error(
            "attention", "layers that run an attention operation in the forward pass",
            shown(f"{where}, which ran no F.scaled_dot_product_attention or "
                  "nn.MultiheadAttention"),
            "Attention written as explicit matmul + softmax (timm fused_attn=False, Hugging "
            "Face attn_implementation='eager', torchvision's Swin) cannot be captured: use the "
            "fused attention (timm's default, attn_implementation='sdpa'), or name the module "
            "that calls it.")


def prefix_tokens(model: nn.Module) -> int | None:
    """Tokens before the patch grid, read from ``model``; ``None`` when it does not say.

    timm's ``num_prefix_tokens`` when the model has it; else the learned
    token parameters, shaped (1, k, C), whose name ends in ``token`` or
    ``tokens`` (``class_token`` in torchvision, ``cls_token`` and
    ``distillation_token`` in Hugging Face, ``register_tokens``), a
    ``mask_token`` excepted (it replaces patches, it precedes none).
    """
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    total, found = 0, False
    for name, param in model.named_parameters():
        last = name.rsplit(".", 1)[-1].lower()
        if (last.endswith(("token", "tokens")) and "mask" not in last and param.dim() == 3
                and param.shape[0] == 1):
            total, found = total + int(param.shape[1]), True
    return total if found else None
