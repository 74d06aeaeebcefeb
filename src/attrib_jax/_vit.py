"""A Flax linen Vision Transformer with timm's names (``VisionTransformer``, DeiT's distilled one).

The module tree mirrors timm's so a layer has one name in both backends:
``patch_embed/proj`` (torch ``patch_embed.proj``), the parameters
``cls_token``, ``reg_token``, ``dist_token`` and ``pos_embed``, then
``blocks/J`` (torch ``blocks.J``) holding ``norm1``, ``attn`` (``qkv``,
``proj``), ``ls1``, ``norm2``, ``mlp`` (``fc1``, ``fc2``), ``ls2``; then
``norm``, ``fc_norm`` and ``head`` (and ``head_dist``). Every operation is a
plain one: LayerNorm (two-pass variance, the model's ``eps``), dense layers,
``jax.nn.softmax`` of ``(q · scale) kᵀ`` whose result a matrix product with
the values reads (so attrib's attention capture finds each block's attention
as ``blocks/J/attn``), exact or tanh GELU. The network is built from a
:class:`ViTSpec` that :func:`attrib_jax.from_torch` reads off timm's model.
Inputs are NHWC at the model's image size (the position embedding is not
resampled); inference only (no dropout, no drop path).

References
----------
Dosovitskiy et al. (2021). An image is worth 16x16 words: transformers for
image recognition at scale. ICLR. Touvron et al. (2021). Training
data-efficient image transformers & distillation through attention. ICML.
Darcet et al. (2024). Vision transformers need registers. ICLR.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from attrib._errors import argument_error, shown

__all__ = ["ViTSpec", "VisionTransformer"]


class ViTSpec(NamedTuple):
    """What a timm ``VisionTransformer`` is made of (see :func:`attrib_jax.from_torch`)."""

    patch: int  # patch size (square; the patch convolution's kernel and stride)
    grid: tuple[int, int]  # the patch grid at the model's image size
    embed_dim: int
    depth: int
    num_heads: int
    head_dim: int
    mlp_hidden: int
    num_classes: int
    eps: float = 1e-6  # every LayerNorm's
    class_token: bool = True
    reg_tokens: int = 0
    distilled: bool = False  # DeiT: a distillation token after the class token, a second head
    pos_embed: bool = True
    no_embed_class: bool = False  # position embedding added to the patches only (DeiT III)
    patch_bias: bool = True
    patch_norm: bool = False  # LayerNorm after the patch embedding
    pre_norm: bool = False  # ``norm_pre``
    qkv_bias: bool = True
    layer_scale: bool = False  # ``ls1``/``ls2``: LayerScale (``gamma``)
    gelu_tanh: bool = False
    final_norm: bool = True  # ``norm``
    fc_norm: bool = False  # LayerNorm after pooling
    global_pool: str = "token"  # "token", "avg", "max" or "avgmax"
    pool_include_prefix: bool = False

    @property
    def prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled) + self.reg_tokens


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class LayerScale(nn.Module):
    """``x * gamma`` (timm's ``LayerScale``)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.param("gamma", nn.initializers.ones, (x.shape[-1],), x.dtype)


class Attention(nn.Module):
    """timm's ``Attention``: ``qkv``, softmax((q · scale) kᵀ) v per head, ``proj``."""

    num_heads: int
    head_dim: int
    qkv_bias: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, t, c = x.shape
        width = self.num_heads * self.head_dim
        qkv = nn.Dense(3 * width, use_bias=self.qkv_bias, name="qkv")(x)
        qkv = qkv.reshape(n, t, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, T, head_dim)
        scores = (q * self.head_dim ** -0.5) @ jnp.swapaxes(k, -1, -2)
        attention = jax.nn.softmax(scores, axis=-1)  # (N, heads, T, T)
        y = (attention @ v).transpose(0, 2, 1, 3).reshape(n, t, width)
        return nn.Dense(c, name="proj")(y)


class Mlp(nn.Module):
    """``fc1``, GELU, ``fc2``."""

    hidden: int
    gelu_tanh: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.hidden, name="fc1")(x)
        h = jax.nn.gelu(h, approximate=self.gelu_tanh)
        return nn.Dense(x.shape[-1], name="fc2")(h)


class Block(nn.Module):
    """A pre-norm block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    spec: ViTSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        y = Attention(s.num_heads, s.head_dim, s.qkv_bias, name="attn")(
            _layer_norm(s.eps, "norm1")(x))
        x = x + (LayerScale(name="ls1")(y) if s.layer_scale else y)
        y = Mlp(s.mlp_hidden, s.gelu_tanh, name="mlp")(_layer_norm(s.eps, "norm2")(x))
        return x + (LayerScale(name="ls2")(y) if s.layer_scale else y)


class Blocks(nn.Module):
    """timm's ``blocks``: blocks named ``"0"``, ``"1"``, ..."""

    spec: ViTSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.spec.depth):
            x = Block(self.spec, name=str(j))(x)
        return x


class VisionTransformer(nn.Module):
    """timm's ``VisionTransformer`` (and ``VisionTransformerDistilled``), NHWC, inference.

    ``module.apply(variables, x)`` with ``x`` of shape (N, H, W, C) at the
    model's image size returns the logits (N, num_classes): patch embedding,
    prefix tokens (class, distillation, registers) and position embedding as
    timm concatenates and adds them, the blocks, ``norm``, pooling (the class
    token, or the mean / max of the patch tokens), ``fc_norm`` and ``head``; a
    distilled model averages ``head`` of the class token and ``head_dist`` of
    the distillation token.
    """

    spec: ViTSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        n, height, width = x.shape[:3]
        if (height, width) != (s.grid[0] * s.patch, s.grid[1] * s.patch):
            raise argument_error(
                "inputs", f"images of the model's size {s.grid[0] * s.patch}x{s.grid[1] * s.patch}"
                " (N, H, W, C)", shown(f"shape {tuple(x.shape)}"),
                "The twin keeps timm's position embedding for its image size; build the torch "
                "model with img_size= the size you explain, then convert it.")
        x = _PatchEmbed(s, name="patch_embed")(x)
        dim = s.embed_dim
        prefix = []
        if s.class_token:
            prefix.append(self.param("cls_token", nn.initializers.zeros, (1, 1, dim), x.dtype))
        if s.distilled:
            prefix.append(self.param("dist_token", nn.initializers.zeros, (1, 1, dim), x.dtype))
        if s.reg_tokens:
            prefix.append(self.param("reg_token", nn.initializers.zeros,
                                     (1, s.reg_tokens, dim), x.dtype))
        prefix = [jnp.broadcast_to(p, (n, *p.shape[1:])) for p in prefix]
        if s.pos_embed:
            rows = s.grid[0] * s.grid[1] + (0 if s.no_embed_class else s.prefix_tokens)
            pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, rows, dim), x.dtype)
        if s.pos_embed and s.no_embed_class:
            x = x + pos
        x = jnp.concatenate([*prefix, x], axis=1) if prefix else x
        if s.pos_embed and not s.no_embed_class:
            x = x + pos
        if s.pre_norm:
            x = _layer_norm(s.eps, "norm_pre")(x)
        x = Blocks(s, name="blocks")(x)
        if s.final_norm:
            x = _layer_norm(s.eps, "norm")(x)
        if s.distilled:
            return (nn.Dense(s.num_classes, name="head")(x[:, 0])
                    + nn.Dense(s.num_classes, name="head_dist")(x[:, 1])) / 2
        x = _pool(x, s)
        if s.fc_norm:
            x = _layer_norm(s.eps, "fc_norm")(x)
        return nn.Dense(s.num_classes, name="head")(x)


class _PatchEmbed(nn.Module):
    """timm's ``PatchEmbed``: the patch convolution ``proj``, flattened to (N, h·w, C), ``norm``."""

    spec: ViTSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        x = nn.Conv(s.embed_dim, (s.patch, s.patch), strides=(s.patch, s.patch), padding="VALID",
                    use_bias=s.patch_bias, name="proj")(x)
        x = x.reshape(x.shape[0], -1, s.embed_dim)
        return _layer_norm(s.eps, "norm")(x) if s.patch_norm else x


def _pool(x: jax.Array, s: ViTSpec) -> jax.Array:
    """timm's ``global_pool_nlc``: the class token, or the mean / max over the (patch) tokens."""
    if s.global_pool == "token":
        return x[:, 0]
    tokens = x if s.pool_include_prefix else x[:, s.prefix_tokens:]
    if s.global_pool == "avg":
        return tokens.mean(axis=1)
    if s.global_pool == "max":
        return tokens.max(axis=1)
    return 0.5 * (tokens.max(axis=1) + tokens.mean(axis=1))  # "avgmax"
