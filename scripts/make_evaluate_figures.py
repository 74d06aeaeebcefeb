"""Make the figures and numbers of the docs page "Can I trust this map?" (docs/evaluate.md).

Run from the repository root::

    python scripts/make_evaluate_figures.py

Writes ``docs/figures/evaluate_*.png`` and prints the tables quoted on the
page. Deterministic: demo scenes from fixed seeds, the bundled weights, seeds
0-9 for the randomised copies (the cascade is averaged over the ten draws) and
seed 0 for the random map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import attrib
from attrib import evaluate
from attrib.plotting import _pyplot, save_figure

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
LAYER = "conv4"
ALL_METHODS = ("saliency", "gradient_x_input", "deconvnet", "guided_backprop", "gradcam",
               "guided_gradcam")


def _shrink(path: Path) -> None:
    """Re-save as a 256-colour PNG (a quarter of the bytes)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def _save(fig: object, name: str) -> None:
    path = save_figure(fig, FIGURES / name, dpi=80)  # type: ignore[arg-type]
    _shrink(path)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)\n")


def nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def main() -> None:
    model = attrib.demo_model("torch")
    scenes = attrib.demo_data(64, seed=3)
    x = nchw(scenes.images)

    cascade = evaluate.model_randomization(model, x, method=["gradcam", "guided_backprop"],
                                           layer=LAYER, seed=range(10))
    print(cascade.table(), end="\n\n")
    _save(cascade.plot(), "evaluate_model_randomization.png")

    permuted = attrib.demo_model("torch", weights="permuted")
    data_check = evaluate.data_randomization(model, permuted, x,
                                             method=["gradcam", "guided_backprop"], layer=LAYER)
    print(data_check.table(), end="\n\n")
    _save(data_check.plot(), "evaluate_data_randomization.png")

    many = attrib.demo_data(200, seed=2024)
    pointing, energy = evaluate.PointingGame(many.masks), evaluate.EnergyInMask(many.masks)
    localised = {}
    for method in ALL_METHODS:
        e = attrib.explain(model, nchw(many.images), method=method, target=many.labels,
                           layer=LAYER if method in ("gradcam", "guided_gradcam") else None)
        localised[method] = (pointing(e), energy(e))
    rng = np.random.default_rng(0)
    random_map = rng.uniform(size=many.masks.shape)
    localised["random map"] = (pointing(random_map), energy(random_map))
    print(f"localisation on {len(many)} scenes, tolerance {pointing.tolerance:.2f} px")
    print(evaluate.localisation_table(localised), end="\n\n")

    sub = slice(0, 32)
    deletion = evaluate.Deletion(model, x[sub], scenes.labels[sub], steps=16)
    insertion = evaluate.Insertion(model, x[sub], scenes.labels[sub], steps=16)
    fig, axes = _pyplot().subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    maps = {m: attrib.explain(model, x[sub], method=m, target=scenes.labels[sub],
                              layer=LAYER if m == "gradcam" else None)
            for m in ("gradcam", "guided_backprop")}
    maps["random map"] = rng.uniform(size=(32, 64, 64))
    print("deletion / insertion AUC on 32 scenes, 16 steps, blur baseline")
    for name, value in maps.items():
        d, i = deletion(value), insertion(value)
        print(f"  {name:16s} deletion {d.mean_auc:.3f}  insertion {i.mean_auc:.3f}")
        d.plot(axes[0], label=name)
        i.plot(axes[1], label=name)
    axes[0].set_title("deletion (lower is better)", fontsize=9)
    axes[1].set_title("insertion (higher is better)", fontsize=9)
    print()
    _save(fig, "evaluate_deletion_insertion.png")


if __name__ == "__main__":
    main()
