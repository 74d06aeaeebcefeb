"""Layers with hand-written forward and backward passes, in NumPy.

Each layer's :meth:`forward` returns its output and a cache; :meth:`backward`
takes the gradient at the output, the cache and a rectifier rule
(``"vanilla"``, ``"guided"``, ``"deconvnet"``) and returns the gradient at the
input. Only rectifiers look at the rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Layer", "Concat", "ConvNd", "Conv1d", "Conv2d", "Conv3d", "Dense", "ReLU", "ReLU6",
           "GlobalAvgPool", "Flatten"]


class Layer:
    """A layer: ``forward(x) -> (y, cache)`` and ``backward(grad_y, cache, rule) -> grad_x``."""

    #: whether the layer is a rectifier (its backward pass depends on the rule)
    rectifier = False

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ConvNd(Layer):
    """Convolution of channels-first batches (N, C, *spatial), any number of spatial axes.

    Use :class:`Conv1d` (signals), :class:`Conv2d` (images) or :class:`Conv3d`
    (volumes), which check the kernel's rank.

    Parameters
    ----------
    weight : ndarray, shape (out_channels, in_channels, *kernel)
    bias : ndarray, shape (out_channels,)
    stride : int
    padding : int
        Zeros added on every side (at most the kernel size - 1).
    """

    #: number of spatial axes (set by the subclasses)
    dims: int = 0

    def __init__(self, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1,
                 padding: int = 0) -> None:
        name = type(self).__name__
        self.weight = np.asarray(weight)
        self.bias = np.asarray(bias)
        if self.weight.ndim != self.dims + 2 or self.bias.shape != self.weight.shape[:1]:
            kernel = ", ".join(_KERNEL_NAMES[self.dims])
            raise ValueError(f"{name}: weight must be (O, I, {kernel}) and bias (O,)")
        if not 0 <= padding < min(self.weight.shape[2:]) or stride < 1:
            raise ValueError(f"{name}: need 0 <= padding < kernel size and stride >= 1")
        self.stride = int(stride)
        self.padding = int(padding)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        p, s, k = self.padding, self.stride, self.dims
        axes = tuple(range(2, 2 + k))
        xp = np.pad(x, ((0, 0), (0, 0)) + ((p, p),) * k)
        windows = sliding_window_view(xp, self.weight.shape[2:], axis=axes)
        windows = windows[(slice(None), slice(None)) + (slice(None, None, s),) * k]
        out, kern = _OUT[:k], _KERNEL[:k]
        y = np.einsum(f"nc{out}{kern},oc{kern}->no{out}", windows, self.weight, optimize=True)
        return y + self.bias.reshape((1, -1) + (1,) * k), x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        # The input gradient is the full convolution of the stride-dilated
        # output gradient with the flipped, transposed kernel.
        n, sizes = cache[0], cache[2:]
        p, s, k = self.padding, self.stride, self.dims
        kernel = self.weight.shape[2:]
        out_sizes = grad.shape[2:]
        dilated = np.zeros((n, grad.shape[1]) + tuple((o - 1) * s + 1 for o in out_sizes),
                           dtype=grad.dtype)
        dilated[(slice(None), slice(None)) + (slice(None, None, s),) * k] = grad
        pads = tuple((kk - 1 - p, size - (o - 1) * s - 1 + p)
                     for kk, size, o in zip(kernel, sizes, out_sizes, strict=True))
        padded = np.pad(dilated, ((0, 0), (0, 0)) + pads)
        flipped = self.weight[(slice(None), slice(None)) + (slice(None, None, -1),) * k]
        windows = sliding_window_view(padded, kernel, axis=tuple(range(2, 2 + k)))
        out, kern = _OUT[:k], _KERNEL[:k]
        return np.einsum(f"no{out}{kern},oc{kern}->nc{out}", windows, flipped, optimize=True)

    def __repr__(self) -> str:
        o, i = self.weight.shape[:2]
        return (f"{type(self).__name__}({i}, {o}, kernel={tuple(self.weight.shape[2:])}, "
                f"stride={self.stride}, padding={self.padding})")


#: einsum letters of the output's and the kernel's spatial axes (``"ij"``/``"kl"`` for images)
_OUT, _KERNEL = "ijh", "klm"
_KERNEL_NAMES = {1: ("k",), 2: ("kh", "kw"), 3: ("kd", "kh", "kw")}


class Conv1d(ConvNd):
    """1-D convolution of signals (N, C, L); weight (O, I, k)."""

    dims = 1


class Conv2d(ConvNd):
    """2-D convolution of NCHW images; weight (O, I, kh, kw)."""

    dims = 2


class Conv3d(ConvNd):
    """3-D convolution of volumes (N, C, D, H, W); weight (O, I, kd, kh, kw)."""

    dims = 3


class Dense(Layer):
    """``x @ weight + bias`` with weight (in, out), bias (out,), on (N, in)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = np.asarray(weight)
        self.bias = np.asarray(bias)
        if self.weight.ndim != 2 or self.bias.shape != self.weight.shape[1:]:
            raise ValueError("Dense: weight must be (in, out) and bias (out,)")

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return x @ self.weight + self.bias, None

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        return grad @ self.weight.T

    def __repr__(self) -> str:
        return f"Dense({self.weight.shape[0]}, {self.weight.shape[1]})"


class _Rectifier(Layer):
    """``min(max(x, 0), upper)``; the backward pass follows the rule."""

    rectifier = True
    upper: float | None = None

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        passes = x > 0
        if self.upper is not None:
            passes &= x < self.upper
            y = np.clip(x, 0, self.upper)
        else:
            y = np.maximum(x, 0)
        return y, passes

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        if rule == "vanilla":        # the true derivative
            return np.where(cache, grad, 0)
        if rule == "guided":         # Springenberg et al. 2015
            return np.where(cache & (grad > 0), grad, 0)
        if rule == "deconvnet":      # Zeiler & Fergus 2014: the forward mask is ignored
            return np.where(grad > 0, grad, 0)
        raise ValueError(f"unknown rectifier rule {rule!r}")


class ReLU(_Rectifier):
    """``max(x, 0)``."""


class ReLU6(_Rectifier):
    """``min(max(x, 0), 6)``."""

    upper = 6.0


class GlobalAvgPool(Layer):
    """Mean over the spatial axes: (N, C, *spatial) -> (N, C)."""

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return x.mean(axis=tuple(range(2, x.ndim))), x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        sizes = cache[2:]
        grad = grad.reshape(grad.shape + (1,) * len(sizes)) / math.prod(sizes)
        for axis, size in enumerate(sizes, start=2):
            grad = np.repeat(grad, size, axis=axis)
        return grad


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), in C order."""

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        return grad.reshape(cache)


class Concat(Layer):
    """Joins a network's several inputs along axis 1 (channels or features): its first layer.

    A :class:`Sequential` whose first layer is a ``Concat`` is called with one
    array per input, ``net(x1, x2, ...)``; the backward pass splits the
    gradient back into one array per input.

    Parameters
    ----------
    sizes : sequence of int
        The number of channels (or features) of each input, at least two inputs.
    """

    def __init__(self, sizes: Any) -> None:
        self.sizes = tuple(int(size) for size in sizes)
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError("Concat: sizes must give at least two inputs of >= 1 channel each")

    def forward(self, x: Any) -> tuple[np.ndarray, Any]:
        if not isinstance(x, tuple) or len(x) != len(self.sizes) or any(
                part.shape[1] != size for part, size in zip(x, self.sizes, strict=True)):
            raise ValueError(f"Concat: expected {len(self.sizes)} inputs of {self.sizes} channels")
        return np.concatenate(x, axis=1), None

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> Any:
        return tuple(np.split(grad, np.cumsum(self.sizes)[:-1], axis=1))

    def __repr__(self) -> str:
        return f"Concat({list(self.sizes)})"
