"""Flax linen ResNet-18/34/50 that mirror torchvision's names and numerics.

The module tree has torchvision's names, so a layer is called the same in
both backends: ``conv1``, ``bn1``, ``layer1`` .. ``layer4`` with blocks
``layer1/0``, ``layer1/1`` (torch ``layer1.0``) holding ``conv1``, ``bn1``,
... and ``downsample/0`` (conv), ``downsample/1`` (BatchNorm); ``fc``.
Padding is explicit as in torch (7x7 stride-2 conv pads 3, the 3x3 stride-2
max-pool pads 1 with -inf; Flax ``"SAME"`` pads stride-2 layers
differently), BatchNorm uses the model's ``bn_eps`` (torch's default ``1e-5``), the stride of a
bottleneck sits on its 3x3 conv (torchvision's "v1.5"), and global average
pooling precedes ``fc``. Inputs are NHWC: transpose torch's NCHW batches with
``x.transpose(0, 2, 3, 1)``.

References
----------
He, Zhang, Ren, Sun (2016). Deep residual learning for image recognition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50"]

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9  # torch momentum 0.1 on the new value


def _conv(features: int, kernel: int, stride: int, padding: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((padding, padding), (padding, padding)), use_bias=False, name=name)


def _bn(train: bool, name: str, eps: float = _BN_EPS) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                        epsilon=eps, name=name)


class Downsample(nn.Module):
    """The projection shortcut: 1x1 conv (``0``) then BatchNorm (``1``)."""

    features: int
    stride: int
    bn_eps: float = _BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _conv(self.features, 1, self.stride, 0, "0")(x)
        return _bn(train, "1", self.bn_eps)(x)


class _Block(nn.Module):
    """The fields of both residual blocks; their output is :func:`_joined`."""

    planes: int
    stride: int = 1
    downsample: bool = False
    act: Callable[[jax.Array], jax.Array] = jax.nn.relu
    bn_eps: float = _BN_EPS
    #: output channels per ``planes``
    expansion: ClassVar[int] = 1


def _joined(block: _Block, x: jax.Array, out: jax.Array, train: bool) -> jax.Array:
    """``act(out + shortcut(x))``; the shortcut projects (``downsample``) when the block says so."""
    identity = x
    if block.downsample:
        identity = Downsample(block.planes * block.expansion, block.stride, block.bn_eps,
                              name="downsample")(x, train)
    return block.act(out + identity)


class BasicBlock(_Block):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = _conv(self.planes, 3, self.stride, 1, "conv1")(x)
        out = self.act(_bn(train, "bn1", self.bn_eps)(out))
        out = _conv(self.planes, 3, 1, 1, "conv2")(out)
        return _joined(self, x, _bn(train, "bn2", self.bn_eps)(out), train)


class Bottleneck(_Block):
    """1x1, 3x3 (strided), 1x1 convs with a residual connection (ResNet-50)."""

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = self.act(_bn(train, "bn1", self.bn_eps)(_conv(self.planes, 1, 1, 0, "conv1")(x)))
        out = self.act(_bn(train, "bn2", self.bn_eps)(_conv(self.planes, 3, self.stride, 1, "conv2")(out)))
        out = _bn(train, "bn3", self.bn_eps)(_conv(self.planes * self.expansion, 1, 1, 0, "conv3")(out))
        return _joined(self, x, out, train)


class ResLayer(nn.Module):
    """A stage: blocks named ``"0"``, ``"1"``, ... (torch ``layerK.i``)."""

    block: str
    planes: int
    blocks: int
    stride: int
    in_features: int
    act: Callable[[jax.Array], jax.Array] = jax.nn.relu
    bn_eps: float = _BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cls: Any = BasicBlock if self.block == "basic" else Bottleneck
        expansion = cls.expansion
        for i in range(self.blocks):
            stride = self.stride if i == 0 else 1
            down = i == 0 and (stride != 1 or self.in_features != self.planes * expansion)
            x = cls(self.planes, stride, down, act=self.act, bn_eps=self.bn_eps,
                    name=str(i))(x, train)
        return x


class ResNet(nn.Module):
    """torchvision's ResNet in Flax linen, NHWC.

    Parameters
    ----------
    block : {"basic", "bottleneck"}
    stage_sizes : sequence of 4 ints
        Blocks per stage: (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for 34 and 50.
    num_classes : int
    act : callable
        The rectifier, ``jax.nn.relu`` (attrib rewrites it for guided rules; pass
        ``attrib_jax.guided_relu`` only to build a hand-written guided model).
    bn_eps : float
        BatchNorm epsilon (torch's default 1e-5; :func:`attrib_jax.from_torch`
        takes the torch model's).

    Call ``module.apply(variables, x, train=False)`` with ``x`` of shape
    (N, H, W, 3); returns logits (N, num_classes).
    """

    block: str = "basic"
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    num_classes: int = 1000
    act: Callable[[jax.Array], jax.Array] = jax.nn.relu
    bn_eps: float = _BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _conv(64, 7, 2, 3, "conv1")(x)
        x = self.act(_bn(train, "bn1", self.bn_eps)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        expansion = (BasicBlock if self.block == "basic" else Bottleneck).expansion
        features = 64
        for i, blocks in enumerate(self.stage_sizes):
            planes = 64 * 2**i
            x = ResLayer(self.block, planes, blocks, 1 if i == 0 else 2, features, self.act,
                         self.bn_eps, name=f"layer{i + 1}")(x, train)
            features = planes * expansion
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (torchvision ``resnet18``)."""
    return ResNet("basic", (2, 2, 2, 2), num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34 (torchvision ``resnet34``)."""
    return ResNet("basic", (3, 4, 6, 3), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 (torchvision ``resnet50``)."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes)
