"""Layers with hand-written forward and backward passes, in NumPy.

Each layer's :meth:`forward` returns its output and a cache; :meth:`backward`
takes the gradient at the output, the cache and a rectifier rule
(``"vanilla"``, ``"guided"``, ``"deconvnet"``) and returns the gradient at the
input. Only rectifiers look at the rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Layer", "Conv2d", "Dense", "ReLU", "ReLU6", "GlobalAvgPool", "Flatten"]


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


class Conv2d(Layer):
    """2-D convolution of NCHW images.

    Parameters
    ----------
    weight : ndarray, shape (out_channels, in_channels, kh, kw)
    bias : ndarray, shape (out_channels,)
    stride : int
    padding : int
        Zeros added on every side (at most ``kh - 1``).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1,
                 padding: int = 0) -> None:
        self.weight = np.asarray(weight)
        self.bias = np.asarray(bias)
        if self.weight.ndim != 4 or self.bias.shape != self.weight.shape[:1]:
            raise ValueError("Conv2d: weight must be (O, I, kh, kw) and bias (O,)")
        if not 0 <= padding < min(self.weight.shape[2:]) or stride < 1:
            raise ValueError("Conv2d: need 0 <= padding < kernel size and stride >= 1")
        self.stride = int(stride)
        self.padding = int(padding)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        p, s = self.padding, self.stride
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        kh, kw = self.weight.shape[2:]
        windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::s, ::s]
        y = np.einsum("ncijkl,ockl->noij", windows, self.weight, optimize=True)
        return y + self.bias[None, :, None, None], x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        # The input gradient is the full convolution of the stride-dilated
        # output gradient with the flipped, transposed kernel.
        n, _, height, width = cache
        p, s = self.padding, self.stride
        kh, kw = self.weight.shape[2:]
        out_h, out_w = grad.shape[2:]
        dilated = np.zeros((n, grad.shape[1], (out_h - 1) * s + 1, (out_w - 1) * s + 1),
                           dtype=grad.dtype)
        dilated[:, :, ::s, ::s] = grad
        pad_h = (kh - 1 - p, height - (out_h - 1) * s - 1 + p)
        pad_w = (kw - 1 - p, width - (out_w - 1) * s - 1 + p)
        padded = np.pad(dilated, ((0, 0), (0, 0), pad_h, pad_w))
        flipped = self.weight[:, :, ::-1, ::-1]
        windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))
        return np.einsum("noijkl,ockl->ncij", windows, flipped, optimize=True)

    def __repr__(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"Conv2d({i}, {o}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding})"


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
    """Mean over the spatial axes: (N, C, H, W) -> (N, C)."""

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return x.mean(axis=(2, 3)), x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        h, w = cache[2], cache[3]
        return np.repeat(np.repeat(grad[:, :, None, None] / (h * w), h, axis=2), w, axis=3)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), in C order."""

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, grad: np.ndarray, cache: Any, rule: str) -> np.ndarray:
        return grad.reshape(cache)
