"""LRP ``epsilon_plus_flat``: attrib against zennit (with its canonizer) and the plain gradient.

Run: ``python benchmarks/bench_lrp.py [--models vgg16 resnet50] [--size 224] [--batch 8]
[--repeats 3] [--threads 2]``

For each torchvision model (weights=None, eval, float32) and a batch of
``--batch`` images it times, interleaved within each round (the order rotates
every round; median of ``--repeats``):

- ``attrib``: ``attrib.explain(model, x, method="lrp")`` on the unmodified
  model (BatchNorm merged on the fly);
- ``zennit``: zennit 0.5.1 ``EpsilonPlusFlat`` with its canonizer
  (``VGGCanonizer`` / ``ResNetCanonizer``) registered once, outside the timing,
  the ``Gradient`` attributor called per round (zennit hooks the model; the
  canonizer edits it, which attrib never does);
- ``gradient``: ``attrib.explain(model, x, method="saliency")``, the plain gradient;
- ``forward``: ``model(x)`` under ``torch.no_grad()``;
- ``zplus``: the convolutions an exact z⁺ rule needs beyond the gradient, timed
  directly: for every convolution and dense layer, the layer once more on its
  recorded input with clamped weights and a bias (``F.conv2d(x, w⁺, b⁺)``;
  the flat first layer's ``conv(1, 1)`` and the ε dense layers' recomputed
  ``f(x, w, b)`` cost the same). The gradient program runs per layer one
  forward and one transposed convolution; LRP runs those and this one, so
  ``(gradient + zplus) / gradient`` is the ratio LRP can reach at best
  (printed as ``floor``; ``(gradient + forward) / gradient``, which also
  counts BatchNorm, ReLU and pooling, as ``floor_fwd``);
- for a ResNet (the architectures :func:`attrib_jax.from_torch` has a Flax twin
  of; vgg16 has none), ``jax`` and ``jax_gradient``: the same two calls on the
  twin with ``backend="jax"`` (NHWC inputs; compiled in the warm-up round), and
  ``jax_forward``: the twin's jitted ``module.apply`` (``jax_floor`` =
  ``(jax_gradient + jax_forward) / jax_gradient``, as ``floor`` for torch).

and prints the median seconds and the medians of the per-round ratios attrib /
zennit, attrib / gradient, jax / jax_gradient, jax / attrib and jax / zennit (with
their range over the rounds). ``--no-jax`` leaves the jax columns out.
Not part of the test suite; numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import attrib


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _forward(model: torch.nn.Module, x: torch.Tensor) -> object:
    with torch.no_grad():
        return model(x)


def _zplus_layers(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A call running, for every Conv2d / Linear of ``model``, ``f(input, w⁺, b⁺)`` on the
    input it gets on ``x`` (recorded once by forward hooks): the extra convolutions of z⁺."""
    import torch.nn.functional as F

    layers: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: layers.append((m, args[0].detach())))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        _forward(model, x)
    finally:
        for hook in hooks:
            hook.remove()
    plus = [(m, inp, m.weight.detach().clamp(min=0), torch.rand(m.weight.shape[0]))
            for m, inp in layers]

    def call() -> object:
        with torch.no_grad():
            for m, inp, w, b in plus:
                if isinstance(m, torch.nn.Linear):
                    F.linear(inp, w, b)
                else:
                    F.conv2d(inp, w, b, m.stride, m.padding, m.dilation, m.groups)
        return None

    return call


def _ratio(times: dict[str, list[float]], top: str, *bottom: str) -> str:
    """Median (and range) over the rounds of ``top / sum(bottom)``, each round's own times."""
    ratios = sorted(t / sum(b) for t, *b in zip(times[top], *(times[k] for k in bottom)))
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        _bench(name, args)


def _bench(name: str, args: argparse.Namespace) -> None:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    zmodel = getattr(torchvision.models, name)(weights=None).eval()
    zmodel.load_state_dict(model.state_dict())
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    targets = [i % 1000 for i in range(args.batch)]
    canonizer = VGGCanonizer() if name.startswith("vgg") else ResNetCanonizer()
    composite = EpsilonPlusFlat(canonizers=[canonizer])
    rows = torch.arange(args.batch)

    def zennit_call(zmodel: torch.nn.Module = zmodel) -> object:
        with torch.no_grad():
            out = zmodel(x)
        seed = torch.zeros_like(out)
        seed[rows, targets] = out[rows, targets]
        _, relevance = attributor(x, seed)
        return relevance

    calls = {
        "attrib": lambda: attrib.explain(model, x, method="lrp", target=targets),
        "zennit": zennit_call,
        "gradient": lambda: attrib.explain(model, x, method="saliency", target=targets),
        "forward": lambda: _forward(model, x),
        "zplus": _zplus_layers(model, x),
    }
    if name.startswith("resnet") and not args.no_jax:
        import jax

        import attrib_jax

        module, variables = attrib_jax.from_torch(model)
        twin = attrib.wrap((module, variables), backend="jax", train=False)
        x_nhwc = x.numpy().transpose(0, 2, 3, 1).copy()
        jax_apply = jax.jit(module.apply)
        calls["jax"] = lambda: attrib.explain(twin, x_nhwc, method="lrp", target=targets)
        calls["jax_gradient"] = lambda: attrib.explain(twin, x_nhwc, method="saliency",
                                                       target=targets)
        calls["jax_forward"] = lambda: jax_apply(variables, x_nhwc).block_until_ready()
    with Gradient(model=zmodel, composite=composite) as attributor:
        for call in calls.values():  # warm-up (and jax's compilation)
            call()
        times: dict[str, list[float]] = {key: [] for key in calls}
        order = list(calls)
        for r in range(args.repeats):
            shift = r % len(order)
            for key in order[shift:] + order[:shift]:
                times[key].append(_time(calls[key]))
    med = {key: statistics.median(value) for key, value in times.items()}

    def floor(gradient: str, extra: str) -> str:  # (gradient + extra) / gradient
        return _ratio({"a": [g + e for g, e in zip(times[gradient], times[extra])],
                       "g": times[gradient]}, "a", "g")

    jax_ratio = (f" jax/jax_gradient {_ratio(times, 'jax', 'jax_gradient')}"
                 f" jax/attrib {_ratio(times, 'jax', 'attrib')}"
                 f" jax/zennit {_ratio(times, 'jax', 'zennit')}"
                 f" jax_floor {floor('jax_gradient', 'jax_forward')}"
                 if "jax" in med else "")
    print(f"{name} batch {args.batch} {args.size}x{args.size}: "
          + " ".join(f"{k} {v:.2f}s" for k, v in med.items())
          + f" | attrib/zennit {_ratio(times, 'attrib', 'zennit')}"
          + f" attrib/gradient {_ratio(times, 'attrib', 'gradient')}"
          + f" floor {floor('gradient', 'zplus')}"
          + f" floor_fwd {floor('gradient', 'forward')}" + jax_ratio
          + f" | rounds {({k: [round(t, 2) for t in v] for k, v in times.items()})}")

if __name__ == "__main__":
    main()
