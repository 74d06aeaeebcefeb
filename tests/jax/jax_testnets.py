"""Small Flax networks for the jax backend tests, each buildable with any rectifier.

Every builder takes the rectifiers to use (``act`` for relu, ``act6`` for
relu6): the models under test use ``jax.nn.relu`` / ``jax.nn.relu6``; the
independent references use :func:`reference_rectifier`, a ``custom_vjp``
written here (not the backend's) that applies a rule explicitly. Same seed,
same names: same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Act = Callable[[Any], Any]


def reference_rectifier(rule: str, upper: float | None = None) -> Act:
    """``clip(x, 0, upper)`` whose backward applies ``rule`` explicitly (test's own code)."""

    @jax.custom_vjp
    def rect(x: Any) -> Any:
        return jnp.clip(x, 0.0, upper)

    def fwd(x: Any) -> tuple[Any, Any]:
        return rect(x), x

    def bwd(x: Any, g: Any) -> tuple[Any]:
        positive_g = jnp.where(g > 0, g, 0.0)
        if rule == "vanilla":
            inside = (x > 0) if upper is None else (x > 0) & (x < upper)
            return (jnp.where(inside, g, 0.0),)
        if rule == "deconvnet":
            return (positive_g,)
        inside = (x > 0) if upper is None else (x > 0) & (x < upper)
        return (jnp.where(inside, positive_g, 0.0),)

    rect.defvjp(fwd, bwd)
    return rect


def acts(rule: str | None) -> tuple[Act, Act]:
    """(relu, relu6): jax's own for ``None``, else the explicit reference of ``rule``."""
    if rule is None:
        return jax.nn.relu, jax.nn.relu6
    return reference_rectifier(rule), reference_rectifier(rule, 6.0)


# -- linen: relus in a jitted helper, nn.remat, nn.scan, lax.cond, LayerNorm -----------------


class _Block(nn.Module):
    act: Act

    @nn.compact
    def __call__(self, x: Any) -> Any:
        return self.act(nn.Dense(8, name="dense")(x))


class _Cell(nn.Module):
    act: Act

    @nn.compact
    def __call__(self, carry: Any, _: Any) -> tuple[Any, None]:
        return self.act(nn.Dense(8, name="dense")(carry)) + 0.1 * carry, None


class LinenNet(nn.Module):
    """conv -> jit(relu) -> dense -> remat(dense, relu) -> scan(2 x dense, relu)
    -> LayerNorm -> cond(relu6 | relu) -> dense(5)."""

    act: Act = jax.nn.relu
    act6: Act = jax.nn.relu6

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x)
        x = jax.jit(self.act)(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(8, name="fc1")(x)
        x = nn.remat(_Block)(self.act, name="remat_block")(x)
        scan = nn.scan(_Cell, variable_axes={"params": 0}, split_rngs={"params": True},
                       length=2)
        x, _ = scan(self.act, name="scan")(x, None)
        x = nn.LayerNorm(name="ln")(x)
        act, act6 = self.act, self.act6
        x = jax.lax.cond(jnp.sum(x) > -1e9, lambda z: act6(2.0 * z), lambda z: act(z), x)
        return nn.Dense(5, name="head")(x)


def linen_net(rule: str | None = None) -> tuple[LinenNet, Any]:
    act, act6 = acts(rule)
    module = LinenNet(act, act6)
    variables = LinenNet().init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    return module, variables


# -- nnx: jitted helper, jax.checkpoint, lax.scan, lax.cond ---------------------------------


class NNXNet(nnx.Module):
    def __init__(self, act: Act, act6: Act, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.act, self.act6 = act, act6
        self.conv = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(64, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)])
        self.head = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x: Any) -> Any:
        act, act6 = self.act, self.act6
        x = jax.jit(act)(self.conv(x))
        x = x.reshape(x.shape[0], -1)
        x = jax.checkpoint(act)(self.blocks[0](x))
        kernel = self.blocks[1].kernel[...]

        def cell(c: Any, _: Any) -> tuple[Any, None]:
            return act(c @ kernel) + 0.1 * c, None

        x, _ = jax.lax.scan(cell, x, None, length=2)
        x = jax.lax.cond(jnp.sum(x) > -1e9, lambda z: act6(2.0 * z), lambda z: act(z), x)
        return self.head(x)


def nnx_net(rule: str | None = None) -> NNXNet:
    return NNXNet(*acts(rule))


# -- a plain function ------------------------------------------------------------------------


def function_net(rule: str | None = None) -> tuple[Callable[[Any, Any], Any], dict[str, Any]]:
    act, act6 = acts(rule)
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(48, 16)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(16, 16)) / 4, jnp.float32),
              "w3": jnp.asarray(rng.normal(size=(16, 5)) / 4, jnp.float32)}

    def apply_fn(p: Any, x: Any) -> Any:
        h = act(x.reshape(x.shape[0], -1) @ p["w1"])
        h = act6(h @ p["w2"] * 3.0)
        return h @ p["w3"]

    return apply_fn, params


def images(n: int = 2, seed: int = 1, size: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def score_grad(fn: Callable[[Any], Any], x: Any, targets: Any, objective: str = "logit") -> Any:
    """Gradient of ``sum_i objective(fn(x))[i, t_i]`` at ``x``, plain ``jax.grad``."""

    def score(x: Any) -> Any:
        logits = fn(x)
        if objective == "log_softmax":
            logits = jax.nn.log_softmax(logits)
        elif objective == "softmax":
            logits = jax.nn.softmax(logits)
        return jnp.sum(logits[jnp.arange(len(targets)), jnp.asarray(targets)])

    return np.asarray(jax.grad(score)(jnp.asarray(x)))
