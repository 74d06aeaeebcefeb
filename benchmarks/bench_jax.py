"""Steady-state cost of attrib's jax backend on a Flax ResNet-18.

Compares, after warm-up (compiled programs cached), the median wall time of:

- ``jax.grad`` — a plain jitted input gradient of the target logits (the floor);
- ``attrib saliency`` — ``attrib.explain(..., method="saliency")``;
- ``attrib guided`` — guided backprop through attrib's program rewrite;
- ``hand guided`` — a jitted gradient of the same ResNet built with
  ``attrib_jax.guided_relu`` written in (what the JAX seed had to do);
- ``attrib guided_gradcam@layer3`` — two backward passes in one program.

attrib's times include its NumPy boundary (inputs in, maps out). Run::

    python benchmarks/bench_jax.py [--size 112] [--batch 8] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import attrib
import attrib_jax


def _median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    module = attrib_jax.resnet18(num_classes=1000)
    x_shape = (args.batch, args.size, args.size, 3)
    variables = module.init(jax.random.key(0), jnp.zeros((1, args.size, args.size, 3)))
    x = np.random.default_rng(0).normal(size=x_shape).astype(np.float32)
    xj = jnp.asarray(x)
    targets = np.arange(args.batch, dtype=np.int64) % 1000
    tj = jnp.asarray(targets, jnp.int32)
    guided_module = attrib_jax.ResNet(module.block, module.stage_sizes, module.num_classes,
                                      act=attrib_jax.guided_relu)

    def grad_of(m: Any) -> Callable[[Any], Any]:
        # weights are arguments, as in real code (closed-over constants would let XLA fold
        # BatchNorm into the convolutions, which no program that takes weights can do)
        def score(x: Any, variables: Any) -> Any:
            logits = m.apply(variables, x, train=False)
            return jnp.sum(jnp.take_along_axis(logits, tj[:, None], axis=1))
        grad = jax.jit(jax.grad(score))
        return lambda x: grad(x, variables)

    plain, hand = grad_of(module), grad_of(guided_module)
    model = attrib.wrap((module, variables), backend="jax", train=False)

    def explain(method: str, **kw: Any) -> Callable[[], Any]:
        return lambda: attrib.explain(model, x, method=method, target=targets, **kw).attribution

    rows = [
        ("jax.grad (plain input gradient)", lambda: plain(xj)),
        ("attrib saliency", explain("saliency")),
        ("hand-written guided model", lambda: hand(xj)),
        ("attrib guided_backprop (rewrite)", explain("guided_backprop")),
        ("attrib guided_gradcam@layer3 (2 passes)", explain("guided_gradcam", layer="layer3")),
    ]
    np.testing.assert_allclose(explain("guided_backprop")(), np.asarray(hand(xj)),
                               rtol=1e-4, atol=1e-6)
    times = {name: _median_seconds(fn, args.repeats) for name, fn in rows}
    base, hand_time = times[rows[0][0]], times[rows[2][0]]
    print(f"Flax ResNet-18, batch {args.batch}, {args.size}x{args.size}, {jax.devices()[0]}, "
          f"median of {args.repeats} after warm-up")
    print(f"{'':42s} {'ms':>9s} {'/ jax.grad':>11s} {'/ hand guided':>14s}")
    for name, seconds in times.items():
        print(f"{name:42s} {1e3 * seconds:9.1f} {seconds / base:11.2f} {seconds / hand_time:14.2f}")


if __name__ == "__main__":
    main()
