"""DeepLIFT's rescale rules on an unmodified torch model, through a ``TorchFunctionMode``.

The input and the reference run through the model in **one batch** (inputs
first, references after): every activation then holds both, row ``n`` and row
``N + n``, so each rule sees ``Δ`` directly, whatever calls the model makes.
While :class:`DeepLiftMode` is entered:

- element-wise nonlinearities (rectifiers in every spelling
  :mod:`attrib_torch._rectifiers` knows, hardtanh, sigmoid, tanh, SiLU, GELU,
  hardswish, hardsigmoid, softplus, ELU, SELU, CELU, leaky ReLU, Mish,
  log-sigmoid, exp; in place or not) go to :class:`_Rescale`:
  ``m_in = m_out * Δy/Δz``, or ``g'(z0)`` where ``|Δz| <= RESCALE_TINY``;
- max pooling (1d/2d/3d) goes to :class:`_MaxPool`: each window is one
  nonlinearity, its change split between the winners on the input and on the
  reference (torch's own indices: the first maximum on ties);
- the product of two activations (``*``, ``mul``, ``*=``; squeeze-excitation
  gates, broadcast or not) goes to :class:`_Product` (the Shapley split);
- linear operations keep their true derivative: convolutions, dense layers,
  BatchNorm in eval mode, additions and subtractions, average pooling, means
  and sums, products with constants or parameters, reshapes, concatenation,
  padding, interpolation, dropout in eval mode.

Any other operation that takes an activation and returns one raises
:class:`attrib.AttribError` naming it (no map the rules do not define). Each
rule mirrors its NumPy reference in :mod:`attrib.rules` (:func:`~attrib.rules.rescale`,
:func:`~attrib.rules.max_pool_multipliers`, :func:`~attrib.rules.product_multipliers`).
Every Function returns zero for the reference rows: the score reads the
input rows only, so the multiplier flows through those. The limits are those
of the rectifier mode (nested calls, TorchScript, reentrant checkpointing);
operations that mix the rows of a batch (BatchNorm in training mode) are wrong
by construction and raise.

References
----------
Shrikumar, Greenside, Kundaje (2017). Learning important features through
propagating activation differences. Ancona, Ceolini, Öztireli, Gross (2018).
Towards better understanding of gradient-based attribution methods (the
rescale rule as a modified gradient).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from attrib._errors import argument_error, shown
from attrib.rules import RESCALE_TINY, RuleSet

from ._rectifiers import _lookup
from ._relevance import _activation, _arg

__all__ = ["DeepLiftMode"]


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = t.shape[0] // 2
    return t[:n], t[n:]


def _with_zero_reference(m: torch.Tensor) -> torch.Tensor:
    return torch.cat([m, torch.zeros_like(m)])


class _Rescale(torch.autograd.Function):
    """``y = g(z)`` on [input; reference] rows; backward: DeepLIFT's rescale multiplier."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, g: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        y = g(z)
        z1, z0 = _halves(z.detach())
        y1, y0 = _halves(y.detach())
        dz = z1 - z0
        small = dz.abs() <= RESCALE_TINY
        m = (y1 - y0) / torch.where(small, torch.ones_like(dz), dz)
        if bool(small.any()):  # g'(z0) where the change is too small to divide by
            leaf = z0.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                derivative = torch.autograd.grad(g(leaf).sum(), leaf)[0]
            m = torch.where(small, derivative, m)
        ctx.save_for_backward(m)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (m,) = ctx.saved_tensors
        return _with_zero_reference(_halves(grad)[0] * m), None


class _Product(torch.autograd.Function):
    """``a * b`` of two activations; backward: the Shapley split ``½(b + b0)``, ``½(a + a0)``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a1, a0 = _halves(a.detach())
        b1, b0 = _halves(b.detach())
        ctx.save_for_backward(0.5 * (b1 + b0), 0.5 * (a1 + a0))
        ctx.shapes = a.shape, b.shape
        return a * b

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean_b, mean_a = ctx.saved_tensors
        g = _halves(grad)[0]
        shape_a, shape_b = ctx.shapes
        return (_with_zero_reference(_sum_to(g * mean_b, shape_a[0] // 2, shape_a)),
                _with_zero_reference(_sum_to(g * mean_a, shape_b[0] // 2, shape_b)))


def _sum_to(t: torch.Tensor, n: int, shape: torch.Size) -> torch.Tensor:
    """``t`` summed over the axes it was broadcast along, to ``(n,) + shape[1:]``."""
    target = (n,) + tuple(shape[1:])
    while t.ndim > len(target):
        t = t.sum(0)
    axes = tuple(i for i, (have, want) in enumerate(zip(t.shape, target)) if want == 1 and have != 1)
    return t.sum(axes, keepdim=True) if axes else t


class _MaxPool(torch.autograd.Function):
    """Max pooling; backward: each window rescaled as one nonlinearity (see the module docs)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pool: Callable[[torch.Tensor], Any]) -> torch.Tensor:
        out, indices = pool(x)
        x1, x0 = _halves(x.detach())
        o1, o0 = _halves(out.detach())
        i1, i0 = _halves(indices)
        top = torch.maximum(o1, o0)
        ctx.save_for_backward(x1 - x0, top - o0, o1 - top, i1, i0)
        ctx.input_shape = x1.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        dx, to_input, to_reference, i1, i0 = ctx.saved_tensors
        g = _halves(grad)[0]
        flat = dx.flatten(2)

        def scatter(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(flat).scatter_add_(2, index.flatten(2), values.flatten(2))

        contribution = scatter(g * to_input, i1) + scatter(g * to_reference, i0)
        small = flat.abs() <= RESCALE_TINY
        m = torch.where(small, scatter(g, i0),
                        contribution / torch.where(small, torch.ones_like(flat), flat))
        return _with_zero_reference(m.reshape(ctx.input_shape)), None


def _tensors(values: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(v for v in value if isinstance(v, torch.Tensor))
    return out


def _tables() -> tuple[dict[Any, tuple[str | None, int | None]], set[Any], set[Any], set[Any]]:
    """Element-wise nonlinearities (func -> (inplace keyword, its position) or ("_", None) for
    always in place), max pools, products, and the linear operations that keep their derivative."""
    T = torch.Tensor
    inplace_at = {  # functional calls with an ``inplace`` argument
        F.relu: 1, F.relu6: 1, F.silu: 1, F.hardswish: 1, F.hardsigmoid: 1, F.selu: 1, F.mish: 1,
        F.elu: 2, F.celu: 2, F.leaky_relu: 2, F.hardtanh: 3, F.rrelu: 4,
    }
    pure = [F.sigmoid, torch.sigmoid, T.sigmoid, F.tanh, torch.tanh, T.tanh, F.gelu, F.softplus,
            F.logsigmoid, torch.exp, T.exp, torch.relu, T.relu, F.softsign, F.tanhshrink,
            torch._C._nn.gelu, torch._C._nn.silu, torch._C._nn.hardswish,
            torch._C._nn.hardsigmoid, torch._C._nn.softplus, torch._C._nn.elu,
            torch._C._nn.leaky_relu, torch._C._nn.hardtanh, torch._C._nn.relu6]
    always_inplace = [torch.relu_, T.relu_, T.sigmoid_, torch.sigmoid_, T.tanh_, torch.tanh_,
                      F.elu_, F.leaky_relu_, F.hardtanh_, torch.exp_, T.exp_, F.relu_,
                      torch._C._nn.hardtanh_, torch._C._nn.elu_, torch._C._nn.leaky_relu_]
    elementwise: dict[Any, tuple[str | None, int | None]] = {f: ("inplace", i)
                                                              for f, i in inplace_at.items()}
    elementwise.update({f: (None, None) for f in pure})
    elementwise.update({f: ("_", None) for f in always_inplace})
    max_pools = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.max_pool1d_with_indices,
                 F.max_pool2d_with_indices, F.max_pool3d_with_indices}
    products = {T.mul, T.mul_, torch.mul, T.__mul__, T.__rmul__, T.__imul__, torch.multiply,
                T.multiply}
    linear = {
        F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
        F.conv_transpose3d, F.linear, F.batch_norm, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, T.mean,
        torch.sum, T.sum, T.add, T.add_, torch.add, T.__add__, T.__radd__, T.__iadd__, T.sub,
        T.sub_, torch.sub, T.__sub__, T.__rsub__, T.__isub__, T.neg, torch.neg, T.__neg__,
        T.__truediv__, T.div, torch.div, T.__itruediv__, T.div_, F.pad, F.interpolate,
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
        torch.flatten, T.flatten, T.view, T.view_as, T.reshape, T.reshape_as, torch.reshape,
        T.permute, torch.permute, T.transpose, torch.transpose, T.contiguous, T.clone,
        torch.clone, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze, T.__getitem__,
        torch.cat, torch.concat, torch.concatenate, torch.stack, T.split, torch.split, T.chunk,
        torch.chunk, T.expand, T.expand_as, T.to, T.float, T.double, T.type_as, T.unflatten,
        torch.unflatten, T.narrow, torch.narrow, T.select, T.t, torch.t, T.detach, T.unbind,
        torch.unbind, T.flip, torch.flip, T.roll, torch.roll, F.channel_shuffle,
        torch.channel_shuffle, F.pixel_shuffle, F.pixel_unshuffle, T.repeat, T.tile,
        torch.tile, T.masked_fill,
    }
    return elementwise, max_pools, products, linear


_TABLES: Any = None


def _table() -> Any:
    global _TABLES
    if _TABLES is None:
        _TABLES = _tables()
    return _TABLES


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _lookup_in(table: Any, func: Any) -> Any:
    try:
        return func in table
    except TypeError:  # unhashable callables are none of ours
        return False


class DeepLiftMode(TorchFunctionMode):
    """Routes nonlinearities, max pools and products of activations to DeepLIFT's rules.

    The model must run on ``torch.cat([inputs, references])``. ``counts`` says
    how many operations of each kind were routed.
    """

    def __init__(self, rules: RuleSet) -> None:
        super().__init__()
        self.rules = rules
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input", kwargs.get("self"))
        if not _activation(x):
            out = func(*args, **kwargs)
            self._check(func, args, kwargs, out)
            return out
        assert isinstance(x, torch.Tensor)
        elementwise, max_pools, products, linear = _table()
        rectifier = _lookup(func)
        if rectifier is not None or _lookup_in(elementwise, func):
            return self._elementwise(func, args, kwargs, x, rectifier, elementwise)
        if _lookup_in(max_pools, func):
            return self._max_pool(func, args, kwargs, x)
        if _lookup_in(products, func):
            other = _arg(args, kwargs, 1, "other", None)
            if _activation(other):
                self.counts["product"] += 1
                out = _Product.apply(x, other)
                if func in (torch.Tensor.mul_, torch.Tensor.__imul__):
                    return x.copy_(out)
                return out
            return func(*args, **kwargs)
        if func is torch.nn.functional.batch_norm and _arg(args, kwargs, 5, "training", False):
            raise argument_error(
                "model", f"BatchNorm in eval mode for rule set {self.rules.name!r}",
                shown("batch_norm in training mode (it mixes the input and reference rows)"),
                "Call model.eval() first")
        if func in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                    F.feature_alpha_dropout) and _arg(args, kwargs, 2, "training", True):
            raise argument_error("model", f"dropout in eval mode for rule set {self.rules.name!r}",
                                 shown("dropout in training mode"), "Call model.eval() first")
        out = func(*args, **kwargs)
        if not _lookup_in(linear, func):
            self._check(func, args, kwargs, out)
        return out

    def _check(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Raise if ``func`` (no rule, not linear) made an activation out of an activation."""
        _, _, products, linear = _table()
        if _lookup_in(linear, func) or _lookup_in(products, func):
            return
        made = any(t.requires_grad for t in _tensors(out if isinstance(out, (list, tuple))
                                                      else [out]))
        if made and any(_activation(t) for t in _tensors(args) + _tensors(kwargs.values())):
            raise argument_error(
                "model", f"operations rule set {self.rules.name!r} has rules for",
                shown(f"the operation {_name(func)!r} applied to an activation, for which it "
                      "has no rule"),
                "DeepLIFT through it is undefined, so no map is returned. Supported: linear "
                "operations (convolutions, dense layers, BatchNorm in eval mode, additions, "
                "average pooling, reshapes, concatenation), element-wise nonlinearities, max "
                "pooling and the product of two activations")

    def _elementwise(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     x: torch.Tensor, rectifier: Any, table: Any) -> Any:
        if rectifier is not None:
            found = rectifier(args, kwargs)
            inplace = bool(found[0]) if found is not None else _inplace(func, args, kwargs, table)
        else:
            inplace = _inplace(func, args, kwargs, table)
        rest = args[1:]
        extra = {k: v for k, v in kwargs.items() if k not in ("input", "self")}

        def g(t: torch.Tensor) -> torch.Tensor:
            # an in-place spelling runs on a copy: the Function returns a new tensor
            return func(t.clone() if inplace else t, *rest, **extra)

        self.counts["nonlinearity"] += 1
        out = _Rescale.apply(x, g)
        return x.copy_(out) if inplace else out

    def _max_pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  x: torch.Tensor) -> Any:
        with_indices = func in (F.max_pool1d_with_indices, F.max_pool2d_with_indices,
                                F.max_pool3d_with_indices) or \
            bool(_arg(args, kwargs, 6, "return_indices", False))
        rest = list(args[1:])
        extra = {k: v for k, v in kwargs.items() if k not in ("input", "self", "return_indices")}
        if len(rest) >= 6:
            rest = rest[:5]  # return_indices is positional 6 of F.max_poolNd
        dims = x.ndim - 2
        pool = {1: F.max_pool1d_with_indices, 2: F.max_pool2d_with_indices,
                3: F.max_pool3d_with_indices}.get(dims)
        if pool is None:
            raise argument_error("model", "max pooling over 1 to 3 spatial axes (N, C, ...)",
                                 shown(f"max pooling of a {x.ndim}-d activation"))
        self.counts["max_pool"] += 1
        out = _MaxPool.apply(x, lambda t: pool(t, *rest, **extra))
        if with_indices:
            return out, pool(x.detach(), *rest, **extra)[1]
        return out


def _inplace(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], table: Any) -> bool:
    keyword, position = table.get(func, (None, None))
    if keyword == "_":
        return True
    if keyword is None:
        return False
    return bool(_arg(args, kwargs, position, keyword, False))
