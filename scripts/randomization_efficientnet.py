"""Cascading model randomisation of EfficientNet-Lite0 on scikit-image's photographs.

Adebayo et al. (2018), "Sanity Checks for Saliency Maps", on a real ImageNet
network: re-draw the parameters from the logits down, one **block** at a time
(classifier; head = conv_head + bn2; blocks.6 ... blocks.0; stem = conv_stem
+ bn1: 10 steps, as the paper randomises Inception v3 block by block), with
attrib's redraw (:func:`attrib._randomize.redrawn`: convolution and dense
parameters drawn around 0 with the array's own std) and BatchNorm treated as
``--batchnorm`` says: ``reset`` (default, the paper's code: γ = 1, β = 0,
running statistics kept) or ``redraw`` (γ and β drawn like the rest; the
previous default), and compare each method's map
with the original one (Spearman rank correlation of |map|, the paper's
metric, and the others of :func:`attrib.evaluate.similarities`), explaining
the original model's top class. Several seeds; torch and JAX from the same
seeds give the same copies.

Run one seed per call (on 2 cores ~40 s in torch, ~4 min in JAX: XLA's CPU
depthwise convolutions are ~5x slower than torch's; the programs compile once
for the whole cascade), then ``--report`` to write the tables (each backend's
curves and their largest difference per method and step) and the figure::

    python scripts/randomization_efficientnet.py --backend torch --seed 0 [--batchnorm reset]
    ...
    python scripts/randomization_efficientnet.py --report --out docs/figures

Results go to ``benchmarks/results/randomization_efficientnet/<batchnorm>/``;
each record also counts the photographs whose randomised map is constant (a
constant map has no ranks: its Spearman correlation is 0 by definition).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import attrib
from attrib.evaluate import similarities
from attrib.models import efficientnet_lite0, photographs

METHODS = ("gradcam", "guided_backprop", "saliency", "integrated_gradients")
IG_STEPS = 8
RESULTS = Path("benchmarks/results/randomization_efficientnet")


def groups(layers: list[str], sep: str) -> list[tuple[str, list[str]]]:
    """Parameter layers grouped into blocks, input side first."""
    def group(name: str) -> str:
        parts = name.split(sep)
        if parts[0] == "blocks":
            return "blocks." + parts[1]
        return {"conv_stem": "stem", "bn1": "stem", "conv_head": "head", "bn2": "head"}.get(
            parts[0], parts[0])
    out: dict[str, list[str]] = {}
    for name in layers:
        out.setdefault(group(name), []).append(name)
    return list(out.items())


def maps(model, x, targets, layer):
    result = {}
    for method in METHODS:
        options = {"layer": layer} if method == "gradcam" else {}
        if method == "integrated_gradients":
            options = {"steps": IG_STEPS, "batch_size": 8}
        result[method] = attrib.explain(model, x, method=method, target=targets, **options)
    return result


def run(backend: str, seed: int, batchnorm: str) -> None:
    net = efficientnet_lite0(backend)
    wrapped = attrib.wrap(net.model, backend=backend)
    x = net.preprocess(list(photographs().values()))
    originals = maps(wrapped, x, None, net.layer)
    targets = originals["gradcam"].targets
    sep = "." if backend == "torch" else "/"
    blocks = groups(list(wrapped.parameter_layers()), sep)
    from_logits = blocks[::-1]
    scores: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    constant: dict[str, list[int]] = {m: [] for m in METHODS}
    first: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    chosen: list[str] = []
    start = time.time()
    for name, layers in from_logits:
        chosen.extend(layers)
        copy = wrapped.randomized(chosen, seed=seed, batchnorm=batchnorm)
        randomised = maps(copy, x, targets, net.layer)
        for m in METHODS:
            for key, values in similarities(originals[m], randomised[m]).items():
                scores[m].setdefault(key, []).append(float(np.mean(values)))
            flat = np.asarray(attrib.evaluate._maps.two_d(randomised[m], absolute=True))
            constant[m].append(int(np.sum(np.ptp(flat.reshape(len(flat), -1), axis=1) == 0)))
            first[m].append(np.abs(flat[0]))
        print(f"{backend} seed {seed} after {name}: " + ", ".join(
            f"{m} {scores[m]['spearman_abs'][-1]:.3f}" for m in METHODS),
            f"({time.time() - start:.0f} s)", flush=True)
    results = RESULTS / batchnorm
    results.mkdir(parents=True, exist_ok=True)
    record = {"backend": backend, "seed": seed, "batchnorm": batchnorm,
              "steps": [n for n, _ in from_logits], "targets": np.asarray(targets).tolist(),
              "scores": scores, "constant_maps": constant, "ig_steps": IG_STEPS}
    (results / f"{backend}_seed{seed}.json").write_text(json.dumps(record, indent=1))
    if seed == 0:
        np.savez_compressed(results / f"{backend}_maps.npz",
                            **{m: np.stack([np.abs(attrib.evaluate._maps.two_d(originals[m],
                                            absolute=True)[0])] + first[m]) for m in METHODS},
                            image=net.deprocess(x[:1])[0])


def report(out: Path, batchnorm: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = RESULTS / batchnorm
    records = {}
    for path in sorted(results.glob("*_seed*.json")):
        r = json.loads(path.read_text())
        records.setdefault(r["backend"], []).append(r)
    lines = []
    for backend, rs in records.items():
        steps = rs[0]["steps"]
        lines.append(f"\n{backend}: Spearman of |map|, mean ± std over seeds "
                     f"{[r['seed'] for r in rs]} (photographs: 6)\n")
        lines.append("| method | " + " | ".join(steps) + " |")
        lines.append("|---" * (len(steps) + 1) + "|")
        for m in METHODS:
            values = np.array([r["scores"][m]["spearman_abs"] for r in rs])
            lines.append(f"| {m} | " + " | ".join(
                f"{mu:.2f} ± {sd:.2f}" for mu, sd in zip(values.mean(0), values.std(0))) + " |")
        if all("constant_maps" in r for r in rs):
            lines.append(f"\nconstant randomised maps (of 6 photographs × {len(rs)} seeds), per step:")
            for m in METHODS:
                counts = np.sum([r["constant_maps"][m] for r in rs], axis=0)
                lines.append(f"- {m}: {counts.tolist()}")
        gap = [np.array([r["scores"][m]["spearman_abs"][-1] for r in rs]).mean()
               for m in ("guided_backprop", "gradcam")]
        lines.append(f"\nall layers random: guided backprop − Grad-CAM = {gap[0] - gap[1]:.2f}")
    if "torch" in records and "jax" in records:
        seeds = sorted({r["seed"] for r in records["torch"]} & {r["seed"] for r in records["jax"]})
        lines.append(f"\ntorch vs jax (float32), seeds {seeds}: largest |difference| of any "
                     "similarity (Spearman, Spearman |map|, SSIM, Pearson |map|, each the mean "
                     "over the photographs) over the seeds, per step\n")
        lines.append("| method | " + " | ".join(records["torch"][0]["steps"]) + " | largest |")
        lines.append("|---" * (len(records["torch"][0]["steps"]) + 2) + "|")
        above = []
        for m in METHODS:
            per_step = np.zeros(len(records["torch"][0]["steps"]))
            for s in seeds:
                t = next(r for r in records["torch"] if r["seed"] == s)
                j = next(r for r in records["jax"] if r["seed"] == s)
                for key in t["scores"][m]:
                    diff = np.abs(np.subtract(t["scores"][m][key], j["scores"][m][key]))
                    per_step = np.maximum(per_step, diff)
                    above += [f"{m} seed {s} {t['steps'][k]} {key} {diff[k]:.1e}"
                              for k in np.flatnonzero(diff > 1e-3)]
            lines.append(f"| {m} | " + " | ".join(f"{v:.1e}" for v in per_step)
                         + f" | {per_step.max():.1e} |")
        lines.append("\nabove 1e-3: " + ("; ".join(above) if above else "none"))
        precision = results / "precision" / "scores.md"
        if precision.exists():  # scripts/randomization_precision.py: the same step in float64
            lines.append("\nwhere they differ most, against torch float64 "
                         f"({precision.relative_to(results)}):\n\n" + precision.read_text().strip())
    text = "\n".join(lines)
    print(text)
    (results / "table.md").write_text(text + "\n")
    backend = "torch" if "torch" in records else next(iter(records))
    rs = records[backend]
    steps = rs[0]["steps"]
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    for m in METHODS:
        values = np.array([r["scores"][m]["spearman_abs"] for r in rs])
        ax.errorbar(range(len(steps)), values.mean(0), yerr=values.std(0), label=m, marker="o",
                    capsize=3)
    ax.set_xticks(range(len(steps)), steps, rotation=30)
    ax.set_ylabel("Spearman of |map| with the original")
    ax.set_xlabel("randomised from the logits down to")
    ax.axhline(0, color="gray", lw=0.5)
    ax.legend(fontsize=8)
    ax.set_title(f"EfficientNet-Lite0, cascading randomisation (BatchNorm: {batchnorm}), "
                 f"6 photographs, {len(rs)} seeds ({backend})", fontsize=9)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if batchnorm == "reset" else f"_{batchnorm}"
    fig.savefig(out / f"evaluate_randomization_efficientnet{suffix}.png", dpi=110)
    saved = np.load(results / f"{backend}_maps.npz")
    fig2, axes = plt.subplots(len(METHODS), len(steps) + 2,
                              figsize=(1.3 * (len(steps) + 2), 1.4 * len(METHODS)),
                              layout="constrained")
    for i, m in enumerate(METHODS):
        axes[i, 0].imshow(saved["image"])
        axes[i, 0].set_ylabel(m, fontsize=7)
        for k in range(len(steps) + 1):
            a = saved[m][k]
            hi = np.percentile(a, 99) or 1.0
            axes[i, k + 1].imshow(np.clip(a / hi, 0, 1), cmap="gray")
            if i == 0:
                axes[i, k + 1].set_title("original" if k == 0 else steps[k - 1], fontsize=6)
        for a in axes[i]:
            a.set_xticks([])
            a.set_yticks([])
    fig2.savefig(out / f"evaluate_randomization_efficientnet{suffix}_maps.png", dpi=90)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--batchnorm", default="reset", choices=("reset", "redraw"))
    args = parser.parse_args()
    if args.report:
        report(Path(args.out), args.batchnorm)
    else:
        import torch

        torch.set_num_threads(2)
        run(args.backend, args.seed, args.batchnorm)
