"""Why torch and JAX disagree at some cascading-randomisation steps in float32, and not in float64.

``scripts/randomization_efficientnet.py`` (BatchNorm "reset") gives torch and
JAX float32 scores up to 2.2e-2 apart at a few steps (seeds 0, 2, 3: integrated
gradients at ``blocks.5``; seed 4: saliency, guided backprop and integrated
gradients from ``blocks.5`` to ``blocks.1``; see the cascade's table.md).
Two measurements:

``scores``: the similarities of one step (or several steps and seeds), per
photograph, in one backend and dtype (float32 with 1 or 2 torch threads, or
float64), one record per step and seed in
``benchmarks/results/randomization_efficientnet/reset/precision/<tag>.json``;
``report`` compares each with torch float64 at the same step and seed::

    python scripts/randomization_precision.py scores --backend torch --dtype float64
    python scripts/randomization_precision.py scores --backend jax --dtype float64 --photos 1
    python scripts/randomization_precision.py scores --backend jax --dtype float64 \
        --step blocks.5 --seed 1,2,3,4
    python scripts/randomization_precision.py report

JAX float64 is slow on a CPU (~10 min per step on 2 cores, 20x float32): XLA's
CPU compiler turns grouped convolutions of types other than float16/float32
into dense ones, and the backward pass of each depthwise convolution is one
(C channels: a C x C kernel, mostly zeros).

``kinks``: for one photograph, the input gradient of the randomised copy at each
integrated-gradients node α, in float32 and float64 (torch), and the number of
ReLU6 units whose pre-activation lies on the other side of a kink (0 or 6) in
float32 than in float64 — the gradient is discontinuous there, so a rounding
difference of 1e-7 relative moves a whole unit's contribution in or out::

    python scripts/randomization_precision.py kinks --photo coffee
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import attrib
from attrib.evaluate import similarities
from attrib.models import efficientnet_lite0, photographs

sys.path.insert(0, str(Path(__file__).parent))
import randomization_efficientnet as cascade  # noqa: E402

OUT = cascade.RESULTS / "reset" / "precision"
#: the cascade's steps, from the logits down
STEPS = ("classifier", "head", "blocks.6", "blocks.5", "blocks.4", "blocks.3", "blocks.2",
         "blocks.1", "blocks.0", "stem")


def _steps_down_to(model: Any, step: str, sep: str) -> list[str]:
    chosen: list[str] = []
    for name, layers in cascade.groups(list(model.parameter_layers()), sep)[::-1]:
        chosen.extend(layers)
        if name == step:
            return chosen
    raise SystemExit(f"no step {step!r}")


def scores(backend: str, dtype: str, threads: int, steps: list[str], photos: list[int],
           seeds: list[int], targets: list[int]) -> None:
    """One record per (seed, step); the original maps are computed once (and kept in /tmp:
    they do not depend on the seed, and JAX float64 takes ~7 min for them at 224²)."""
    import torch

    torch.set_num_threads(threads)
    context: Any = contextlib.nullcontext()
    if backend == "jax":
        import jax

        context = jax.enable_x64(dtype == "float64")
    start = time.time()
    with context:
        net = efficientnet_lite0("torch")
        x = net.preprocess([list(photographs().values())[i] for i in photos])
        native = net.model
        if dtype == "float64":
            native, x = native.double(), x.astype(np.float64)
        if backend == "torch":
            model, sep = attrib.wrap(native, backend="torch"), "."
        else:
            import attrib_jax

            model, sep = attrib.wrap(attrib_jax.from_torch(native), backend="jax"), "/"
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        chosen_targets = [targets[i] for i in photos]
        cached = Path("/tmp") / (f"attrib-precision-originals-{backend}_{dtype}_t{threads}"
                                 f"_p{'-'.join(map(str, photos))}_targets"
                                 f"{'-'.join(map(str, chosen_targets))}.npz")
        if cached.exists():
            with np.load(cached) as saved:
                originals: dict[str, Any] = {m: saved[m] for m in cascade.METHODS}
        else:
            originals = {m: np.asarray(e.attribution) for m, e in
                         cascade.maps(model, x, chosen_targets, net.layer).items()}
            np.savez(cached, **originals)
        print(f"{backend} {dtype}: originals after {time.time() - start:.0f} s", flush=True)
        for seed in seeds:
            for step in steps:
                copied = model.randomized(_steps_down_to(model, step, sep), seed=seed,
                                          batchnorm="reset")
                randomised = cascade.maps(copied, x, chosen_targets, net.layer)
                record: dict[str, Any] = {"backend": backend, "dtype": dtype, "threads": threads,
                                          "step": step, "seed": seed, "photos": photos,
                                          "scores": {}}
                for m in cascade.METHODS:
                    record["scores"][m] = {k: np.asarray(v).tolist() for k, v in
                                           similarities(originals[m], randomised[m]).items()}
                tag = f"{backend}_{dtype}_t{threads}_{step}_seed{seed}_p{'-'.join(map(str, photos))}"
                OUT.mkdir(parents=True, exist_ok=True)
                (OUT / f"{tag}.json").write_text(json.dumps(record, indent=1))
                print(tag, f"{time.time() - start:.0f} s", flush=True)


def report() -> str:
    """Largest differences of any similarity against torch float64, per (step, seed) measured:
    per photograph, and of the mean over the photographs (what the cascade reports). Runs of
    one backend, dtype and thread count over different photographs are put together."""
    runs: dict[tuple[str, int], dict[tuple[str, str, int], dict[str, Any]]] = {}
    for path in sorted(OUT.glob("*.json")):
        r = json.loads(path.read_text())
        group = runs.setdefault((r["step"], r["seed"]), {})
        run = group.setdefault((r["backend"], r["dtype"], r["threads"]),
                               {**r, "photos": [], "scores": {m: {} for m in r["scores"]}})
        for m, values in r["scores"].items():
            for key, per_photo in values.items():
                run["scores"][m].setdefault(key, {}).update(zip(r["photos"], per_photo))
        run["photos"] = sorted(set(run["photos"]) | set(r["photos"]))
    order = {name: i for i, name in enumerate(STEPS)}
    sections = []
    for (step, seed), group in sorted(runs.items(), key=lambda kv: (kv[0][1], order[kv[0][0]])):
        reference = group.pop(("torch", "float64", 2), None)
        if reference is None or not group:
            continue
        lines = [f"step {step}, seed {seed}: largest |difference| of any "
                 "similarity (Spearman, Spearman |map|, SSIM, Pearson |map|) against torch float64, "
                 "per method: of one photograph / of the mean over the six photographs (what "
                 "`randomization_efficientnet.py` reports)\n",
                 "| run | " + " | ".join(cascade.METHODS) + " |",
                 "|---" * (len(cascade.METHODS) + 1) + "|"]
        for (backend, dtype, threads), r in group.items():
            cells = []
            for m in cascade.METHODS:
                photo, mean = 0.0, 0.0
                for key, ours in r["scores"][m].items():
                    theirs = reference["scores"][m][key]  # {photo: value}
                    diffs = [ours[i] - theirs[i] for i in r["photos"]]
                    photo = max(photo, float(np.max(np.abs(diffs))))
                    mean = max(mean, abs(float(np.mean(diffs))))
                cells.append(f"{photo:.1e} / {mean:.1e}")
            name = f"{backend} {dtype}" + (f" ({threads} threads)" if backend == "torch" else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    text = "\n\n".join(sections)
    (OUT / "scores.md").write_text(text + "\n")
    return text


def kinks(photo: str, step: str, seed: int, target: int) -> str:
    import torch

    from attrib.methods.integrated_gradients import quadrature

    torch.set_num_threads(1)
    net = efficientnet_lite0("torch")
    x = net.preprocess([photographs([photo])[photo]])
    wrapped = attrib.wrap(net.model, backend="torch")
    randomised = wrapped.randomized(_steps_down_to(wrapped, step, "."), seed=seed,
                                    batchnorm="reset").native
    alphas, _ = quadrature("gausslegendre", cascade.IG_STEPS)
    lines = [f"{photo}, randomised down to {step} (seed {seed}, BatchNorm reset), target {target}: "
             f"input gradient at each integrated-gradients node α (torch, 1 thread)\n",
             "| α | max \\|g\\| float64 | max \\|g\\| float32 | max \\|g32 − g64\\| / max \\|g64\\| "
             "| ReLU6 units across a kink (f32 vs f64) | largest \\|pre-activation\\| | "
             "same, trained model |",
             "|---|---|---|---|---|---|---|"]
    for alpha in alphas:
        row: dict[str, Any] = {}
        for key, base in (("random", randomised), ("trained", net.model)):
            for dtype in (torch.float32, torch.float64):
                model = copy.deepcopy(base).to(dtype)
                seen: dict[str, torch.Tensor] = {}
                hooks = [m.register_forward_pre_hook(  # ReLU6 is in place: keep a copy
                    lambda _m, inputs, n=n, seen=seen: seen.__setitem__(
                        n, inputs[0].detach().double().clone()))
                    for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU6)]
                xi = torch.tensor(x * alpha, dtype=dtype, requires_grad=True)
                (grad,) = torch.autograd.grad(model(xi)[0, target], xi)
                for h in hooks:
                    h.remove()
                row[key, dtype] = (grad.double().numpy(), seen)
        g32, a32 = row["random", torch.float32]
        g64, a64 = row["random", torch.float64]
        across = sum(int((((a32[n] > 0) != (a64[n] > 0)) | ((a32[n] < 6) != (a64[n] < 6))).sum())
                     for n in a64)
        big = max(float(a.abs().max()) for a in a64.values())
        trained = max(float(a.abs().max()) for a in row["trained", torch.float64][1].values())
        lines.append(f"| {alpha:.3f} | {np.abs(g64).max():.3g} | {np.abs(g32).max():.3g} | "
                     f"{np.abs(g32 - g64).max() / np.abs(g64).max():.1e} | {across} | {big:.0f} | "
                     f"{trained:.0f} |")
    text = "\n".join(lines)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"kinks_{photo}_{step}_seed{seed}.md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("scores", "report", "kinks"))
    parser.add_argument("--backend", default="torch", choices=("torch", "jax"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step", default="blocks.5", help="one step or several: blocks.5,blocks.4")
    parser.add_argument("--seed", default="0", help="one seed or several: 0,1,2")
    parser.add_argument("--photos", default="0,1,2,3,4,5", help="indices into PHOTOS")
    parser.add_argument("--photo", default="coffee")
    args = parser.parse_args()
    # the original model's top classes, as the cascade explains them (torch float32 record)
    record = json.loads((cascade.RESULTS / "reset" / "torch_seed0.json").read_text())
    targets = [int(t) for t in record["targets"]]
    if args.what == "scores":
        scores(args.backend, args.dtype, args.threads, args.step.split(","),
               [int(i) for i in args.photos.split(",")],
               [int(s) for s in args.seed.split(",")], targets)
    elif args.what == "report":
        print(report())
    else:
        index = list(photographs()).index(args.photo)
        print(kinks(args.photo, args.step, int(args.seed), targets[index]))
