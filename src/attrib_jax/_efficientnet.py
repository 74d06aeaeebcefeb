"""A Flax linen EfficientNet (no squeeze-excitation: the Lite family) with timm's names.

The module tree mirrors timm's ``EfficientNet`` so a layer has one name in
both backends: ``conv_stem``, ``bn1``, ``blocks/S/J`` (torch
``blocks.S.J``) holding ``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``,
``conv_pwl``, ``bn3`` (an inverted residual) or ``conv_dw``, ``bn1``,
``conv_pw``, ``bn2`` (a depthwise-separable block), then ``conv_head``,
``bn2`` and ``classifier``. As in timm, a ``bn*`` layer is BatchNorm followed
by its activation (``BatchNormAct2d``), so its output is the activated one.

Each convolution pads as its torch twin: ``"SAME"`` is TensorFlow's padding
(timm's ``Conv2dSame``; for stride 2 it pads more at the bottom and right,
which Flax's ``"SAME"`` does too), else the explicit symmetric padding.
BatchNorm uses the running statistics with the model's ``eps``. The network
is built from a description (:class:`BlockSpec`) that
:func:`attrib_jax.from_torch` reads off timm's model. Inputs are NHWC.

References
----------
Tan, Le (2019). EfficientNet: rethinking model scaling for convolutional
neural networks. Sandler et al. (2018). MobileNetV2: inverted residuals and
linear bottlenecks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["EfficientNet", "BlockSpec", "Padding"]

#: ``"SAME"`` (TensorFlow's) or ((top, bottom), (left, right))
Padding = Any


class BlockSpec(NamedTuple):
    """One block: ``kind`` ``"ds"`` (depthwise-separable) or ``"ir"`` (inverted residual)."""

    kind: str
    in_features: int
    mid_features: int  # the depthwise width (= in_features for "ds")
    out_features: int
    kernel: int
    stride: int
    padding: Padding  # of the depthwise convolution
    skip: bool


class BatchNormAct(nn.Module):
    """BatchNorm on running statistics, then ``act`` (timm's ``BatchNormAct2d`` in eval mode)."""

    eps: float
    act: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), x.dtype)
        mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), x.dtype).value
        var = self.variable("batch_stats", "var", jnp.ones, (features,), x.dtype).value
        y = (x - mean) * (jax.lax.rsqrt(var + self.eps) * scale) + bias
        return self.act(y) if self.act is not None else y


def _conv(features: int, kernel: int, stride: int, padding: Padding, name: str,
          groups: int = 1) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding,
                   feature_group_count=groups, use_bias=False, name=name)


class Block(nn.Module):
    """A depthwise-separable block or an inverted residual, as timm's (no SE, no drop path)."""

    spec: BlockSpec
    eps: float
    act: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        shortcut = x
        if s.kind == "ds":
            x = _conv(s.mid_features, s.kernel, s.stride, s.padding, "conv_dw", s.mid_features)(x)
            x = BatchNormAct(self.eps, self.act, name="bn1")(x)
            x = _conv(s.out_features, 1, 1, ((0, 0), (0, 0)), "conv_pw")(x)
            x = BatchNormAct(self.eps, None, name="bn2")(x)
        else:
            x = _conv(s.mid_features, 1, 1, ((0, 0), (0, 0)), "conv_pw")(x)
            x = BatchNormAct(self.eps, self.act, name="bn1")(x)
            x = _conv(s.mid_features, s.kernel, s.stride, s.padding, "conv_dw", s.mid_features)(x)
            x = BatchNormAct(self.eps, self.act, name="bn2")(x)
            x = _conv(s.out_features, 1, 1, ((0, 0), (0, 0)), "conv_pwl")(x)
            x = BatchNormAct(self.eps, None, name="bn3")(x)
        return x + shortcut if s.skip else x


class Stage(nn.Module):
    """A stage: blocks named ``"0"``, ``"1"``, ... (torch ``blocks.S.J``)."""

    specs: tuple[BlockSpec, ...]
    eps: float
    act: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j, spec in enumerate(self.specs):
            x = Block(spec, self.eps, self.act, name=str(j))(x)
        return x


class Stages(nn.Module):
    """timm's ``blocks``: stages named ``"0"``, ``"1"``, ..."""

    stages: tuple[tuple[BlockSpec, ...], ...]
    eps: float
    act: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for s, specs in enumerate(self.stages):
            x = Stage(specs, self.eps, self.act, name=str(s))(x)
        return x


class EfficientNet(nn.Module):
    """timm's EfficientNet without squeeze-excitation (EfficientNet-Lite), NHWC, inference.

    Parameters
    ----------
    stem : (features, kernel, stride, padding)
        The stem convolution ``conv_stem``.
    stages : tuple of tuples of BlockSpec
    head_features : int
        Width of ``conv_head`` (1x1).
    num_classes : int
    eps : float
        BatchNorm epsilon (timm's TF ports: 1e-3).
    act : callable
        The activation, ``jax.nn.relu6`` for the Lite models (attrib's guided
        rules rewrite it; no second model is needed).

    ``module.apply(variables, x)`` with ``x`` of shape (N, H, W, 3) returns
    logits (N, num_classes): conv_stem, bn1, blocks, conv_head, bn2, global
    average pooling, classifier.
    """

    stem: tuple[int, int, int, Padding]
    stages: tuple[tuple[BlockSpec, ...], ...]
    head_features: int
    num_classes: int = 1000
    eps: float = 1e-3
    act: Callable[[jax.Array], jax.Array] = jax.nn.relu6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features, kernel, stride, padding = self.stem
        x = _conv(features, kernel, stride, padding, "conv_stem")(x)
        x = BatchNormAct(self.eps, self.act, name="bn1")(x)
        x = Stages(self.stages, self.eps, self.act, name="blocks")(x)
        x = _conv(self.head_features, 1, 1, ((0, 0), (0, 0)), "conv_head")(x)
        x = BatchNormAct(self.eps, self.act, name="bn2")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier")(x)
