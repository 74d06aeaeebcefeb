"""``attrib explain IMAGE... --model SPEC --method M[,M...]``: maps and figures of photographs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..plotting import save_figure, seed_figure
from ..preprocess import load_image, resize_and_center_crop
from ._errors import CLIError
from ._models import LoadedModel, load_model
from ._run import explain_all, model_inputs, needs_layer, progress, relative

__all__ = ["run_explain", "parse_methods", "parse_target"]


def parse_methods(text: str) -> list[str]:
    from .._registry import default_registry

    known = default_registry().methods()
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise CLIError("--method: expected method names separated by commas")
    for method in methods:
        if method not in known:
            default_registry().method(method)  # raises the AttribError with "did you mean"
    return list(dict.fromkeys(methods))


def parse_target(text: str | None, loaded: LoadedModel) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    names = list(loaded.class_names or [])
    if text in names:
        return names.index(text)
    raise CLIError(f"--target: expected a class index or one of the model's class names, got "
                   f"{text!r}" + (f" (classes: {', '.join(names[:8])}"
                                  f"{', ...' if len(names) > 8 else ''})" if names else ""))


def _picture(path: str, loaded: LoadedModel) -> np.ndarray:
    """The photo at ``path`` resized and centre-cropped to the model's input, HWC in [0, 1]."""
    load_image(path)  # a clear error for a missing or unreadable file first
    if loaded.pretrained is not None:  # the weights' own resize, crop and normalisation
        return np.asarray(loaded.pretrained.deprocess(loaded.pretrained.preprocess(path))[0])
    resize = int(round(loaded.size * 256 / 224)) if loaded.imagenet else loaded.size
    return resize_and_center_crop(path, loaded.size, resize).astype(np.float32) / 255.0


def _tag(name: str) -> str:
    """A file-name-safe short name of the model."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name.split(",")[0]).strip("-").lower() or "model"


def run_explain(args: argparse.Namespace) -> int:
    methods = parse_methods(args.method)
    if args.layer is not None and not any(needs_layer(m) for m in methods):
        raise CLIError(f"--layer: no method of {','.join(methods)} uses a layer; "
                       "layer methods: " + ", ".join(_layer_methods()))
    for path in args.images:
        load_image(path)  # every path checked before any model is loaded
    loaded = load_model(args.model, args.backend, args.weights, args.size, args.normalize)
    target = parse_target(args.target, loaded)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in progress(args.images, "explaining"):
        picture = _picture(path, loaded)[None]
        if loaded.pretrained is not None:
            inputs = loaded.pretrained.preprocess(path)
        else:
            inputs = model_inputs(picture, loaded)
        explanations = explain_all(loaded, inputs, methods, target=target, layer=args.layer)
        if loaded.pretrained is not None:
            first = next(iter(explanations.values()))
            top = loaded.pretrained.decode(first.logits, k=5)[0]
            print(f"{path}: " + "; ".join(f"{name} {p:.3f}" for name, p in top))
        stem = f"{Path(path).stem}_{_tag(loaded.name)}_{loaded.backend}"
        title = f"{Path(path).name}: {loaded.name} ({loaded.backend})"
        figure: Any = seed_figure(picture, explanations, class_names=loaded.class_names,
                                  title=title, probabilities=loaded.pretrained is not None)
        written.append(save_figure(figure, out / f"{stem}.png"))
        for method, explanation in explanations.items():
            written.append(explanation.save(out / f"{stem}_{method}.png", picture,
                                            class_names=loaded.class_names))
    for path in written:
        print(relative(Path(path)))
    return 0


def _layer_methods() -> list[str]:
    from .._registry import default_registry

    return sorted(m for m in default_registry().methods() if needs_layer(m))
