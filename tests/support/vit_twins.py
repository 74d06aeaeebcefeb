"""A tiny ViT in torch and its Flax twins with copied weights (float64), for AttnLRP parity.

Patch 8 on 16² images (4 patches + a class token), width 16, 2 heads, 2
pre-norm blocks (LayerNorm → attention → residual; LayerNorm → Dense → GELU
→ Dense → residual), a final LayerNorm and a linear head on the class token.
Torch computes attention with ``F.scaled_dot_product_attention`` (timm's
layout: one ``qkv`` linear); the twins with flax's ``dot_product_attention``
(linen ``nn.MultiHeadDotProductAttention``, nnx ``nnx.MultiHeadAttention``)
or ``jax.nn.dot_product_attention``. Inputs: torch (N, 3, 16, 16), the twins
(N, 16, 16, 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DIM, HEADS, DEPTH, HIDDEN, CLASSES, PATCH, SIZE = 16, 2, 2, 32, 10, 8, 16
TOKENS = (SIZE // PATCH) ** 2 + 1
EPS = 1e-6
TARGETS = [1, 7]


def images(n: int = 2, seed: int = 0) -> np.ndarray:
    """(n, 3, 16, 16) float64 images."""
    return np.random.default_rng(seed).normal(size=(n, 3, SIZE, SIZE))


def torch_vit(seed: int = 0, zero_biases: bool = False) -> Any:
    """The torch ViT in float64, eval mode, random weights (biases, class token and position
    embedding zero with ``zero_biases``)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(DIM, 3 * DIM)
            self.proj = nn.Linear(DIM, DIM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, t, _ = x.shape
            q, k, v = self.qkv(x).reshape(n, t, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)
            return self.proj(out.transpose(1, 2).reshape(n, t, DIM))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(DIM, eps=EPS), nn.LayerNorm(DIM, eps=EPS)
            self.attn = Attention()
            self.fc1, self.fc2 = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM)
            self.act = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, DIM, PATCH, stride=PATCH)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
            self.pos_embed = nn.Parameter(torch.zeros(1, TOKENS, DIM))
            self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
            self.norm = nn.LayerNorm(DIM, eps=EPS)
            self.head = nn.Linear(DIM, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.embed(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.blocks(x + self.pos_embed)
            return self.head(self.norm(x)[:, 0])

    torch.manual_seed(seed)
    model = ViT().double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            extra = name.endswith("bias") or name in ("cls_token", "pos_embed")
            if zero_biases and extra:
                p.zero_()
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif extra:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def linen_params(torch_model: Any) -> dict[str, Any]:
    """The torch model's weights as the params of :func:`linen_vit`'s module."""
    sd = {k: _np(v) for k, v in torch_model.state_dict().items()}
    hd = DIM // HEADS

    def dense(prefix: str) -> dict[str, np.ndarray]:
        return {"kernel": sd[f"{prefix}.weight"].T, "bias": sd[f"{prefix}.bias"]}

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {"scale": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]}

    params: dict[str, Any] = {
        "embed": {"kernel": sd["embed.weight"].transpose(2, 3, 1, 0), "bias": sd["embed.bias"]},
        "cls_token": sd["cls_token"], "pos_embed": sd["pos_embed"],
        "norm": norm("norm"), "head": dense("head")}
    for i in range(DEPTH):
        b = f"blocks.{i}"
        w, bias = sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"]
        attn = {name: {"kernel": w[j * DIM:(j + 1) * DIM].T.reshape(DIM, HEADS, hd),
                       "bias": bias[j * DIM:(j + 1) * DIM].reshape(HEADS, hd)}
                for j, name in enumerate(("query", "key", "value"))}
        attn["out"] = {"kernel": sd[f"{b}.attn.proj.weight"].T.reshape(HEADS, hd, DIM),
                       "bias": sd[f"{b}.attn.proj.bias"]}
        params[f"block{i}"] = {"norm1": norm(f"{b}.norm1"), "norm2": norm(f"{b}.norm2"),
                               "attn": attn, "fc1": dense(f"{b}.fc1"), "fc2": dense(f"{b}.fc2")}
    return {"params": params}


def linen_vit(attention: str = "flax") -> Any:
    """The Flax linen twin; ``attention="flax"`` (flax's ``dot_product_attention``) or
    ``"jax"`` (``jax.nn.dot_product_attention``, whose softmax runs in float32)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    def jax_attention(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return jax.nn.dot_product_attention(query, key, value)

    fn = nn.dot_product_attention if attention == "flax" else jax_attention
    f64 = {"dtype": jnp.float64, "param_dtype": jnp.float64}

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            y = nn.LayerNorm(epsilon=EPS, name="norm1", **f64)(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, attention_fn=fn,
                                                    name="attn", **f64)(y)
            y = nn.LayerNorm(epsilon=EPS, name="norm2", **f64)(x)
            y = nn.Dense(HIDDEN, name="fc1", **f64)(y)
            return x + nn.Dense(DIM, name="fc2", **f64)(nn.gelu(y, approximate=False))

    class ViT(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            x = nn.Conv(DIM, (PATCH, PATCH), strides=(PATCH, PATCH), padding="VALID",
                        name="embed", **f64)(x)
            n = x.shape[0]
            x = x.reshape(n, -1, DIM)
            cls = self.param("cls_token", nn.initializers.zeros, (1, 1, DIM), jnp.float64)
            pos = self.param("pos_embed", nn.initializers.zeros, (1, TOKENS, DIM), jnp.float64)
            x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, DIM)), x], axis=1) + pos
            for i in range(DEPTH):
                x = Block(name=f"block{i}")(x)
            x = nn.LayerNorm(epsilon=EPS, name="norm", **f64)(x)
            return nn.Dense(CLASSES, name="head", **f64)(x[:, 0])

    return ViT()


def nnx_vit(params: dict[str, Any], attention: str = "jax") -> Any:
    """The Flax nnx twin holding :func:`linen_params`; its attention is nnx's default
    (``attention="jax"``: ``jax.nn.dot_product_attention``, whose softmax runs in float32)
    or linen's ``dot_product_attention`` (``"flax"``: then it is the linen twin's model)."""
    import flax.linen as nn
    import jax.numpy as jnp
    from flax import nnx

    def flax_attention(query: Any, key: Any, value: Any, *args: Any, is_causal: bool = False,
                       **kwargs: Any) -> Any:
        return nn.dot_product_attention(query, key, value, *args, **kwargs)

    extra = {"attention_fn": flax_attention} if attention == "flax" else {}
    f64 = {"dtype": jnp.float64, "param_dtype": jnp.float64}
    p = params["params"]

    def set_(module: Any, values: dict[str, np.ndarray]) -> Any:
        for name, value in values.items():
            getattr(module, name)[...] = jnp.asarray(value)
        return module

    class Block(nnx.Module):
        def __init__(self, q: dict[str, Any], rngs: Any) -> None:
            self.norm1 = set_(nnx.LayerNorm(DIM, epsilon=EPS, rngs=rngs, **f64), q["norm1"])
            self.norm2 = set_(nnx.LayerNorm(DIM, epsilon=EPS, rngs=rngs, **f64), q["norm2"])
            self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=DIM, decode=False,
                                               rngs=rngs, **f64, **extra)
            for name in ("query", "key", "value", "out"):
                set_(getattr(self.attn, name), q["attn"][name])
            self.fc1 = set_(nnx.Linear(DIM, HIDDEN, rngs=rngs, **f64), q["fc1"])
            self.fc2 = set_(nnx.Linear(HIDDEN, DIM, rngs=rngs, **f64), q["fc2"])

        def __call__(self, x: Any) -> Any:
            x = x + self.attn(self.norm1(x))
            return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x)), approximate=False))

    class ViT(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.embed = set_(nnx.Conv(3, DIM, (PATCH, PATCH), strides=(PATCH, PATCH),
                                       padding="VALID", rngs=rngs, **f64), p["embed"])
            self.cls_token = nnx.Param(jnp.asarray(p["cls_token"]))
            self.pos_embed = nnx.Param(jnp.asarray(p["pos_embed"]))
            self.blocks = nnx.List([Block(p[f"block{i}"], rngs) for i in range(DEPTH)])
            self.norm = set_(nnx.LayerNorm(DIM, epsilon=EPS, rngs=rngs, **f64), p["norm"])
            self.head = set_(nnx.Linear(DIM, CLASSES, rngs=rngs, **f64), p["head"])

        def __call__(self, x: Any) -> Any:
            x = self.embed(x)
            n = x.shape[0]
            x = x.reshape(n, -1, DIM)
            cls = jnp.broadcast_to(self.cls_token[...], (n, 1, DIM))
            x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x)[:, 0])

    return ViT(nnx.Rngs(0))
