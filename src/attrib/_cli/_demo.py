"""``attrib demo``: the whole job offline, on the bundled model and generated scenes.

Explains a few :func:`attrib.demo_data` scenes with every registered method
in every installed backend (torch, jax), writes the seed figure and the
methods × images grid, and reports how much of Grad-CAM's mass lies on the
objects. Then it explains six of scikit-image's photographs with
EfficientNet-Lite0 and its ImageNet weights (:func:`attrib.models.efficientnet_lite0`,
the ``attrib[models]`` extra) in the same backends: the seed figure, the
saliency figure of guided backprop and the methods × photographs grid, each
panel titled with the class and its probability. With ImageNet ResNet weights
(``--weights`` or torchvision's file in torch's hub cache) it also explains
the photographs with that ResNet.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._demo import CLASS_NAMES, GRADCAM_LAYER, IMAGE_SIZE, demo_data, demo_model
from .._errors import AttribError
from .._registry import default_registry
from ..plotting import SEED_COLUMNS, grid_figure, saliency_figure, save_figure, seed_figure
from ..preprocess import resize_and_center_crop
from ._errors import CLIError
from ._models import JAX_RESNETS, LoadedModel, cached_weights, torchvision_from_weights
from ._run import explain_all, model_inputs, progress, relative

__all__ = ["run_demo", "installed_backends", "cam_mass_on_objects", "explain_photographs",
           "DEMO_SEED", "PHOTOS", "PHOTO_METHODS"]

#: Seed of the scenes the demo explains (none of them was used in training).
DEMO_SEED = 2024
#: scikit-image's photographs the demo explains with ImageNet ResNet weights.
PHOTOS: tuple[str, ...] = ("chelsea", "astronaut", "coffee")
#: the methods the photographs' grid shows: every method of one gradient pass (the
#: perturbation and many-pass methods - Score-CAM, Ablation-CAM, occlusion, integrated
#: gradients, SmoothGrad - take one pass per mask or step: minutes at 224x224 on a CPU)
PHOTO_METHODS: tuple[str, ...] = (
    "gradcam", "saliency", "guided_backprop", "guided_gradcam", "deconvnet", "gradient_x_input",
    "gradcam_pp", "xgradcam", "layercam", "hirescam", "eigencam")


def installed_backends() -> list[str]:
    """The built-in backends whose framework is installed, torch first."""
    backends = default_registry().backends()
    return [b for b in ("torch", "jax") if b in backends and backends[b].is_installed()]


def cam_mass_on_objects(cam: np.ndarray, masks: np.ndarray, grow: int = 2) -> np.ndarray:
    """Fraction of each Grad-CAM map's mass inside its object mask grown by ``grow`` pixels.

    Parameters
    ----------
    cam : ndarray, shape (N, H, W), non-negative
    masks : ndarray of bool, shape (N, H, W)

    Returns
    -------
    ndarray, shape (N,)
        In [0, 1]; 0 for an all-zero map.
    """
    grown = masks.copy()
    for _ in range(grow):  # 4-neighbour dilation, NumPy only
        g = grown.copy()
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        g[:, :, 1:] |= grown[:, :, :-1]
        g[:, :, :-1] |= grown[:, :, 1:]
        grown = g
    total = cam.sum(axis=(1, 2))
    inside = (cam * grown).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


def _demo_loaded(backend: str) -> LoadedModel:
    layout = "NCHW" if backend == "torch" else "NHWC"
    return LoadedModel(demo_model(backend), backend, layout, IMAGE_SIZE, False, GRADCAM_LAYER,
                       CLASS_NAMES, "demo CNN")


def _methods() -> list[str]:
    """Every registered method: the seed figure's four first, then the built-in families
    in their order (seeds, CAMs, multi-pass), then plug-ins' methods alphabetically.
    The attention methods and AttnLRP are left out: they need a vision transformer, not
    the demo CNN."""
    from ..methods import (
        ATTENTION_METHODS,
        CAM_METHODS,
        MULTIPASS_METHODS,
        RULE_METHODS,
        SEED_METHODS,
        AttnLRP,
    )

    names = set(default_registry().methods()) - {cls.name for cls in (*ATTENTION_METHODS, AttnLRP)}
    built_in = [cls.name for cls in (*SEED_METHODS, *CAM_METHODS, *MULTIPASS_METHODS,
                                     *RULE_METHODS)]
    order = [*SEED_COLUMNS, *(m for m in built_in if m not in SEED_COLUMNS)]
    return [m for m in order if m in names] + sorted(names - set(order))


def _seed_columns(methods: list[str]) -> list[str]:
    """The demo's seed-figure columns among ``methods``: the seed figure's four, then the
    others but the CAM family and the multi-pass methods, which the grid figure shows."""
    from ..methods import CAM_METHODS, MULTIPASS_METHODS

    elsewhere = {cls.name for cls in (*CAM_METHODS, *MULTIPASS_METHODS)}
    return [m for m in SEED_COLUMNS if m in methods] + [
        m for m in methods if m not in SEED_COLUMNS and m not in elsewhere]


def _resnet_name(state: dict[str, Any]) -> str:
    """Which torchvision ResNet a state dict belongs to, from its keys."""
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    bottleneck = any(k.startswith("layer1.0.conv3") for k in state)
    table: dict[tuple[tuple[int, ...], bool], str] = {
        ((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
        ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101",
        ((3, 8, 36, 3), True): "resnet152"}
    name = table.get((tuple(blocks), bottleneck))
    if name is None:
        raise CLIError("--weights: expected the state dict of a torchvision ResNet "
                       "(resnet18/34/50/101/152)")
    return name


def _photo_models(weights: str, backends: list[str]) -> list[LoadedModel]:
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CLIError(f"--weights: no such file {weights!r}") from error
    except Exception as error:
        raise CLIError(f"--weights: {weights!r} is not a saved state dict") from error
    if not isinstance(state, dict):
        raise CLIError(f"--weights: {weights!r} does not hold a state dict")
    name = _resnet_name(state)
    torch_model = torchvision_from_weights(name, weights)
    import torchvision

    classes = list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])
    loaded = []
    for backend in backends:
        if backend == "jax":
            import attrib_jax

            model: Any = attrib_jax.from_torch(torch_model)
        else:
            model = torch_model
        loaded.append(LoadedModel(model, backend, "NCHW" if backend == "torch" else "NHWC", 224,
                                  True, "layer4", classes, f"{name}, ImageNet"))
    return loaded


def _photos() -> np.ndarray | None:
    try:
        import skimage.data
    except ImportError:
        return None
    pictures = [resize_and_center_crop(getattr(skimage.data, name)(), 224, 256) for name in PHOTOS]
    return np.stack(pictures).astype(np.float32) / 255.0


def explain_photographs(backends: list[str], out: Path) -> list[Path]:
    """EfficientNet-Lite0 on scikit-image's photographs in each backend: three figures each."""
    from ..models import efficientnet_lite0, photographs

    pictures = photographs()
    written: list[Path] = []
    for backend in progress(backends, "photographs", "backend"):
        pretrained = efficientnet_lite0(backend)
        inputs = pretrained.preprocess(list(pictures.values()))
        display = pretrained.deprocess(inputs)
        loaded = LoadedModel(pretrained.model, backend, pretrained.layout, pretrained.spec.size,
                             True, pretrained.layer, pretrained.classes, pretrained.spec.title)
        explanations = explain_all(loaded, inputs, PHOTO_METHODS)
        top = pretrained.decode(explanations["gradcam"].logits, k=1)
        print(f"{backend}: EfficientNet-Lite0 says " + ", ".join(
            f"{name} -> {best[0][0].split(',')[0]} ({best[0][1]:.2f})"
            for name, best in zip(pictures, top)))
        title = f"scikit-image photographs: {pretrained.spec.title} ({backend})"
        options: dict[str, Any] = {"class_names": pretrained.classes, "probabilities": True}
        figure = seed_figure(display, explanations, columns=_seed_columns(list(PHOTO_METHODS)),
                             title=title, **options)
        written.append(save_figure(figure, out / f"photos_seed_{backend}.png"))
        written.append(save_figure(saliency_figure(explanations["guided_backprop"], display,
                                                   title=f"Guided backprop, {title}", **options),
                                   out / f"photos_saliency_{backend}.png"))
        written.append(save_figure(grid_figure(explanations, display, title=title, **options),
                                   out / f"photos_grid_{backend}.png"))
    return written


def run_demo(args: argparse.Namespace) -> int:
    if args.weights is not None and not Path(args.weights).is_file():
        raise CLIError(f"--weights: no such file {args.weights!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = installed_backends() if args.backend is None else [args.backend]
    if not backends:
        raise CLIError("attrib demo needs torch or jax: pip install 'attrib[torch]'")
    data = demo_data(args.n, seed=DEMO_SEED)
    methods = _methods()
    written: list[Path] = []
    for backend in progress(backends, "backends", "backend"):
        loaded = _demo_loaded(backend)
        explanations = explain_all(loaded, model_inputs(data.images, loaded), methods)
        accuracy = float((explanations["gradcam"].targets == data.labels).mean())
        mass = cam_mass_on_objects(np.asarray(explanations["gradcam"].attribution), data.masks)
        print(f"{backend}: demo CNN right on {accuracy:.0%} of {len(data)} scenes; "
              f"{mass.mean():.0%} of Grad-CAM's mass lies on the objects "
              f"(which cover {data.masks.mean():.0%} of the image)")
        title = f"attrib demo: the bundled CNN on generated scenes, every method ({backend})"
        written.append(save_figure(seed_figure(data.images, explanations,
                                               columns=_seed_columns(methods),
                                               class_names=CLASS_NAMES, title=title),
                                   out / f"demo_seed_{backend}.png"))
        written.append(save_figure(grid_figure(explanations, data.images,
                                               class_names=CLASS_NAMES, title=title),
                                   out / f"demo_grid_{backend}.png"))
    if getattr(args, "photos", True):
        try:
            written.extend(explain_photographs(backends, out))
        except AttribError as error:  # the models extra is not installed
            print(f"Photographs: {error}")
    weights = args.weights or cached_weights(JAX_RESNETS)
    if weights is not None:
        photos = _photos()
        if photos is None:
            print("Photographs: install scikit-image to explain its photographs "
                  "(pip install scikit-image)")
        else:
            for loaded in progress(_photo_models(weights, backends), "photographs", "backend"):
                explanations = explain_all(loaded, model_inputs(photos, loaded),
                                           ["gradcam", "saliency", "guided_backprop",
                                            "guided_gradcam"])
                tag = re.sub(r"[^A-Za-z0-9]+", "_", loaded.name.split(",")[0])
                title = f"scikit-image photographs: {loaded.name} ({loaded.backend})"
                figure = seed_figure(photos, explanations, class_names=loaded.class_names,
                                     title=title)
                written.append(save_figure(figure, out / f"photos_{tag}_{loaded.backend}.png"))
    print("Figures written:")
    for path in written:
        print(f"  {relative(Path(path))}")
    return 0
