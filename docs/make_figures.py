"""Make the figures of the documentation (``docs/figures/*.png``) with ``attrib demo``'s code.

Run from the repository root after changing the demo or the plots::

    python docs/make_figures.py

It writes the demo's seed figure (every method, torch backend) and, for each
built-in method, a figure of four demo scenes (one per class) and their maps.
Deterministic: the scenes come from ``attrib.demo_data`` with a fixed seed and
the model is the bundled one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import attrib
from attrib._cli._demo import DEMO_SEED
from attrib.plotting import grid_figure, save_figure, seed_figure

FIGURES = Path(__file__).resolve().parent / "figures"
METHODS = ("saliency", "gradient_x_input", "deconvnet", "guided_backprop", "gradcam",
           "guided_gradcam")
LAYER = "conv4"


def _one_per_class(n_classes: int) -> attrib._demo.DemoData:
    data = attrib.demo_data(4 * n_classes, seed=DEMO_SEED)
    first = [int(np.flatnonzero(data.labels == k)[0]) for k in range(n_classes)]
    return attrib._demo.DemoData(data.images[first], data.labels[first], data.masks[first])


def _shrink(path: Path) -> None:
    """Re-save as a 256-colour PNG: a quarter of the bytes, no visible change at this size."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    model = attrib.demo_model("torch")
    data = _one_per_class(len(attrib._demo.CLASS_NAMES))
    inputs = data.images.transpose(0, 3, 1, 2)
    explanations = {}
    for method in ("gradcam", "saliency", "guided_backprop", "guided_gradcam", "deconvnet",
                   "gradient_x_input"):
        options = {"layer": LAYER} if method in ("gradcam", "guided_gradcam") else {}
        explanations[method] = attrib.explain(model, inputs, method=method, **options)
    names = attrib._demo.CLASS_NAMES
    written = [save_figure(seed_figure(data.images, explanations, class_names=names,
                                       panel_size=1.8), FIGURES / "demo_seed.png", dpi=80)]
    for method in METHODS:
        figure = grid_figure({method: explanations[method]}, data.images, class_names=names,
                             panel_size=1.8)
        written.append(save_figure(figure, FIGURES / f"{method}.png", dpi=80))
    written += _multipass_figures(model, inputs, data.images, names, explanations["saliency"])
    written += _cam_figures(model, inputs, data.images, names)
    written += _rule_figures(model, inputs, data.images, names)
    written += _shap_figures(model, inputs, data.images, names)
    for path in written:
        _shrink(path)
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


def _rule_figures(model: object, inputs: np.ndarray, images: np.ndarray,
                  names: object) -> list[Path]:
    """LRP with three composites beside gradient × input (= LRP-0 on this ReLU network)."""
    explanations = {
        "gradient_x_input": attrib.explain(model, inputs, method="gradient_x_input"),
        "lrp epsilon_plus_flat": attrib.explain(model, inputs, method="lrp"),
        "lrp epsilon_gamma_box": attrib.explain(model, inputs, method="lrp",
                                                composite="epsilon_gamma_box", low=0.0, high=1.0),
        "lrp epsilon_alpha2_beta1": attrib.explain(model, inputs, method="lrp",
                                                   composite="epsilon_alpha2_beta1"),
    }
    figure = grid_figure(explanations, images, class_names=names, panel_size=1.8)
    return [save_figure(figure, FIGURES / "lrp.png", dpi=80)]


def _multipass_figures(model: object, inputs: np.ndarray, images: np.ndarray, names: object,
                       saliency: attrib.Explanation) -> list[Path]:
    """Integrated gradients, SmoothGrad (next to plain saliency) and occlusion (issue 9)."""
    runs = {
        "integrated_gradients": ({"Integrated gradients": attrib.explain(
            model, inputs, method="integrated_gradients", steps=64)}, "diverging"),
        "smoothgrad": ({"saliency": saliency, "SmoothGrad": attrib.explain(
            model, inputs, method="smoothgrad", n_samples=25, noise=0.15, seed=0)}, "gray"),
        "occlusion": ({"Occlusion": attrib.explain(
            model, inputs, method="occlusion", window=12, stride=4)}, "diverging"),
    }
    written = []
    for name, (explanations, style) in runs.items():
        figure = grid_figure(explanations, images, class_names=names, panel_size=1.8, style=style)
        written.append(save_figure(figure, FIGURES / f"{name}.png", dpi=80))
#: the CAM family (issue 8): one figure each, at the default layer (conv4 on the demo CNN)
CAM_METHODS = ("gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam",
               "ablationcam")


def _cam_figures(model: object, inputs: np.ndarray, images: np.ndarray,
                 names: tuple[str, ...]) -> list[Path]:
    written = []
    for method in CAM_METHODS:
        explanation = attrib.explain(model, inputs, method=method)  # layer=None: conv4
        figure = grid_figure({method: explanation}, images, class_names=names, panel_size=1.8)
        written.append(save_figure(figure, FIGURES / f"{method}.png", dpi=80))
    return written


def _shap_figures(model: object, inputs: np.ndarray, images: np.ndarray,
                  names: object) -> list[Path]:
    """DeepLIFT (black and blurred baselines), DeepLIFT-SHAP and GradientSHAP (issue 23).

    The SHAP baselines are eight other demo scenes (another seed).
    """
    others = attrib.demo_data(8, seed=DEMO_SEED + 1).images.transpose(0, 3, 1, 2)
    runs = {
        "deeplift": {
            "DeepLIFT, black": attrib.explain(model, inputs, method="deeplift"),
            "DeepLIFT, blurred": attrib.explain(model, inputs, method="deeplift", baseline="blur"),
            "Integrated gradients": attrib.explain(model, inputs, method="integrated_gradients",
                                                   steps=64)},
        "deeplift_shap": {"DeepLIFT-SHAP": attrib.explain(model, inputs, method="deeplift_shap",
                                                          baselines=others)},
        "gradient_shap": {"GradientSHAP": attrib.explain(
            model, inputs, method="gradient_shap", baselines=others, n_samples=64, stdevs=0.05)},
    }
    written = []
    for name, explanations in runs.items():
        figure = grid_figure(explanations, images, class_names=names, panel_size=1.8,
                             style="diverging")
        written.append(save_figure(figure, FIGURES / f"{name}.png", dpi=80))
    return written


if __name__ == "__main__":
    main()
