"""``attrib evaluate --model demo --method M[,M...] --out DIR``: can I trust these maps?

On the demo scenes (which come with object masks) and the demo model:
cascading model randomisation and data randomisation (Adebayo et al., 2018),
the pointing game and energy in mask (Zhang et al., 2016), deletion and
insertion (Petsiuk et al., 2018), each method next to a uniform-random map.
Prints the tables, writes the figures to ``--out`` and prints their paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._demo import demo_data, demo_model
from ..plotting import _pyplot, save_figure
from ._errors import CLIError
from ._explain import parse_methods
from ._models import load_model
from ._run import explain_all, model_inputs, progress, relative

__all__ = ["run_evaluate", "add_evaluate_parser"]

RANDOM_MAP = "random map"


def add_evaluate_parser(commands: Any) -> None:
    """The ``evaluate`` sub-command's parser."""
    evaluate = commands.add_parser(
        "evaluate", help="sanity checks and metrics of the maps on the demo scenes",
        description="Check the maps of the demo model on its generated scenes (which have object "
                    "masks): cascading model randomisation, data randomisation (the model "
                    "trained on permuted labels), pointing game, energy in mask, deletion and "
                    "insertion. Prints the tables and writes the figures to --out.",
    )
    evaluate.add_argument("--model", default="demo", metavar="SPEC",
                          help="'demo' (the only model shipped with masked data: every check), "
                               "or 'efficientnet_lite0' (ImageNet weights, offline: block-wise "
                               "cascading model randomisation on scikit-image's photographs)")
    evaluate.add_argument("--method", default="gradcam,guided_backprop", metavar="M[,M...]",
                          help="methods, comma-separated (default: gradcam,guided_backprop)")
    evaluate.add_argument("--backend", metavar="NAME", help="torch (default) or jax")
    evaluate.add_argument("--layer", metavar="NAME", help="layer for Grad-CAM (default: conv4)")
    evaluate.add_argument("-n", type=int, default=64, metavar="N",
                          help="number of demo scenes (default: 64); with a pretrained model, "
                               "of photographs (the first N of the 6)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the scenes, the randomised weights and the random map")
    evaluate.add_argument("--repeats", type=int, default=5, metavar="R",
                          help="randomisation draws averaged per layer, seeds SEED ... SEED+R-1 "
                               "(default: 5; one draw is noisy)")
    evaluate.add_argument("--batchnorm", choices=("reset", "redraw"), default="reset",
                          help="BatchNorm layers in model randomisation: 'reset' (gamma 1, beta 0, "
                               "moving statistics kept: Adebayo et al.'s code; default) or "
                               "'redraw' (drawn like the other parameters)")
    evaluate.add_argument("--steps", type=int, default=16,
                          help="deletion / insertion steps (default: 16)")
    evaluate.add_argument("--out", default="attrib-evaluate", metavar="DIR",
                          help="output folder (default: attrib-evaluate)")


def run_evaluate(args: argparse.Namespace) -> int:
    from .. import evaluate
    from ..models import available

    if args.n < 1 or args.steps < 1 or args.repeats < 1 or args.seed < 0:
        raise CLIError("-n, --steps and --repeats: expected positive numbers; --seed: non-negative")
    if args.model in available():
        return _run_pretrained(args)
    if args.model != "demo":
        raise CLIError(f"--model: 'evaluate' needs scenes with object masks, which only 'demo' "
                       f"ships, or a pretrained model ({', '.join(available())}) checked on "
                       f"photographs; got {args.model!r}. For your own model and data use "
                       "attrib.evaluate from Python.")
    methods = parse_methods(args.method)
    loaded = load_model("demo", args.backend, None, None, None)
    layer = args.layer or loaded.layer
    data = demo_data(args.n, seed=args.seed)
    inputs = model_inputs(data.images, loaded)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    cascade = evaluate.model_randomization(loaded.model, inputs, method=methods, layer=layer,
                                           seed=range(args.seed, args.seed + args.repeats),
                                           batchnorm=args.batchnorm, progress=True)
    print(cascade.table(), end="\n\n")
    written.append(save_figure(cascade.plot(), out / "model_randomization.png"))

    permuted = demo_model(loaded.backend, weights="permuted")
    data_check = evaluate.data_randomization(loaded.model, permuted, inputs, method=methods,
                                             layer=layer)
    print(data_check.table(), end="\n\n")
    written.append(save_figure(data_check.plot(), out / "data_randomization.png"))

    explanations: dict[str, Any] = explain_all(loaded, inputs, methods, target=data.labels,
                                               layer=layer)
    maps: dict[str, Any] = dict(explanations)
    size = data.images.shape[1]
    maps[RANDOM_MAP] = np.random.default_rng(args.seed).uniform(size=(len(data), size, size))
    pointing = evaluate.PointingGame(data.masks)
    energy = evaluate.EnergyInMask(data.masks)
    deletion = evaluate.Deletion(loaded.model, inputs, data.labels, steps=args.steps)
    insertion = evaluate.Insertion(loaded.model, inputs, data.labels, steps=args.steps)
    localised, curves = {}, {}
    for name in progress(list(maps), "deletion / insertion", unit="method"):
        localised[name] = (pointing(maps[name]), energy(maps[name]))
        curves[name] = (deletion(maps[name]), insertion(maps[name]))
    print(f"localisation on {len(data)} scenes (pointing game tolerance "
          f"{pointing.tolerance:.1f} px)")
    print(evaluate.localisation_table(localised), end="\n\n")
    print(_auc_table(curves), end="\n\n")
    written.append(save_figure(_curves_figure(curves), out / "deletion_insertion.png"))
    for path in written:
        print(relative(Path(path)))
    return 0


def _run_pretrained(args: argparse.Namespace) -> int:
    """Block-wise cascading model randomisation of a pretrained model on the photographs."""
    from .. import evaluate
    from ..models import load, photographs

    methods = parse_methods(args.method)
    net = load(args.model, args.backend or "torch")
    inputs = net.preprocess(list(photographs().values())[:args.n])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cascade = evaluate.model_randomization(net.model, inputs, method=methods,
                                           layer=args.layer or net.layer, backend=net.backend,
                                           layers=net.blocks(),
                                           seed=range(args.seed, args.seed + args.repeats),
                                           batchnorm=args.batchnorm, progress=True)
    print(f"{net.spec.title} on {len(inputs)} photographs ({net.backend})")
    print(cascade.table(), end="\n\n")
    path = save_figure(cascade.plot(), out / "model_randomization.png")
    print(relative(Path(path)))
    return 0


def _auc_table(curves: dict[str, Any]) -> str:
    from ..evaluate._table import format_table

    rows = [[name, f"{d.mean_auc:.3f}", f"{i.mean_auc:.3f}"] for name, (d, i) in curves.items()]
    return format_table(["method", "deletion AUC (lower is better)",
                         "insertion AUC (higher is better)"], rows)


def _curves_figure(curves: dict[str, Any]) -> Any:
    fig, axes = _pyplot().subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    for name, (d, i) in curves.items():
        d.plot(axes[0], label=name)
        i.plot(axes[1], label=name)
    axes[0].set_title("deletion", fontsize=9)
    axes[1].set_title("insertion", fontsize=9)
    return fig
