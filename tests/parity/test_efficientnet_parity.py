"""EfficientNet-Lite0 (ImageNet weights) in both backends, and its guided rules against a reference.

- float64: the torch model ``.double()`` and its Flax twin (``jax.enable_x64``
  scoped to the test) give every gradient method's and every gradient CAM's
  map within 1e-10 relative per sample, on two photographs resized to 32x32
  (CAMs at ``blocks.4``, 2x2). Small, because XLA runs this network's float64
  depthwise convolutions slowly under the suite's fast-compile flags (a
  saliency pass takes ~3 s at 32x32, ~21 s at 64x64; each new program
  compiles for 6-9 s); the multi-pass methods (integrated gradients,
  SmoothGrad, Score-CAM, Ablation-CAM: one more program each) run in a second
  test, small: two IG steps, two SmoothGrad samples, the CAMs at ``blocks.1``
  (24 channels) on the first photograph only (each image is 24 masked float64
  passes per CAM in XLA, ~2.5 s; the batch of two with different targets is
  checked for these two CAMs on the 1-D/3-D twins, test_signal_volume_parity).
  At 64x64 every method agreed within 3e-14 (measured once, ``bn2`` as the
  default layer).
- guided backprop and deconvnet of the torch backend equal a copy of the model
  whose ReLU6 modules are swapped for a hand-written autograd function with
  the rule's backward (≤ 1e-6 relative), and differ from the plain gradient.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("timm")

import attrib  # noqa: E402
import attrib_jax  # noqa: E402
from attrib.models import photographs  # noqa: E402
from attrib.preprocess import resize_and_center_crop  # noqa: E402

from .test_resnet_parity import _relative  # noqa: E402

TARGETS = [285, 967]  # Egyptian cat, espresso
SIZE = 32


@pytest.fixture(scope="module")
def lite0() -> Any:
    return attrib.models.efficientnet_lite0("torch")


def _inputs(lite0: Any, size: int) -> np.ndarray:
    """chelsea and coffee, centre-cropped and resized to size x size, normalised, NCHW."""
    photos = photographs(["chelsea", "coffee"]).values()
    crops = [resize_and_center_crop(p, size, size, "bicubic") for p in photos]
    return attrib.preprocess.normalize(crops, "NCHW", lite0.spec.mean, lite0.spec.std)


#: (method, options): the CAMs at blocks.4 (torch) / blocks/4 (jax)
CASES: list[tuple[str, dict[str, Any]]] = [
    ("saliency", {}), ("gradient_x_input", {}), ("deconvnet", {}), ("guided_backprop", {}),
    ("gradcam", {}), ("guided_gradcam", {}), ("gradcam_pp", {}), ("xgradcam", {}),
    ("layercam", {}), ("hirescam", {}), ("eigencam", {}),
]


def test_float64_parity_of_every_method(lite0) -> None:
    torch_model = copy.deepcopy(lite0.model).double()
    x = _inputs(lite0, SIZE).astype(np.float64)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with torch.no_grad():  # the top class at this size: its Grad-CAM is not all zero
        targets = torch_model(torch.from_numpy(x)).argmax(1).tolist()
    worst: dict[str, float] = {}
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(torch_model)
        jax_model = attrib.wrap((module, variables), backend="jax")
        # one call per backend: the passes are shared (issue 19), each map bit-equal to
        # the method alone (tests/torch/test_many.py, tests/jax/test_jax_many.py)
        methods = [method for method, _ in CASES]
        options = {method: own for method, own in CASES if own}
        all_theirs = attrib.explain(torch_model, torch.from_numpy(x), method=methods,
                                    target=targets, layer="blocks.4", options=options)
        all_ours = attrib.explain(jax_model, x_nhwc, method=methods, target=targets,
                                  layer="blocks/4", options=options)
        for method in methods:
            theirs, ours = all_theirs[method], all_ours[method]
            assert ours.attribution.dtype == np.float64
            pairs = {method: (ours.attribution, theirs.attribution)}
            pairs.update({f"{method}/{k}": (ours.parts[k], v) for k, v in theirs.parts.items()})
            for key, (a, b) in pairs.items():
                expected = np.asarray(b)
                if expected.ndim == 4:
                    expected = expected.transpose(0, 2, 3, 1)
                norms = np.linalg.norm(expected.reshape(2, -1), axis=1)
                assert norms.min() > 0, f"{key}: an all-zero map makes a meaningless test"
                worst[key] = float(_relative(np.asarray(a), expected).max())
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    print(f"\nefficientnet_lite0 float64 worst relative error per map: {worst}")
    bad = {key: value for key, value in worst.items() if not value < 1e-10}
    assert not bad, f"relative error above 1e-10: {bad}"


#: the multi-pass methods, small: a CAM layer of 24 channels (blocks.1) on the first image,
#: two IG steps, two SmoothGrad samples (the noise is drawn in NumPy, the same on both backends)
MULTIPASS: list[tuple[str, dict[str, Any]]] = [
    ("integrated_gradients", {"steps": 2, "batch_size": 4}),
    ("smoothgrad", {"n_samples": 2, "noise": 0.2, "seed": 5, "batch_size": 4}),
    ("scorecam", {"batch_size": 24}), ("ablationcam", {"batch_size": 24}),
]


def test_float64_parity_of_the_multipass_methods(lite0) -> None:
    """Integrated gradients, SmoothGrad, Score-CAM and Ablation-CAM: torch = JAX (1e-10)."""
    torch_model = copy.deepcopy(lite0.model).double()
    x = _inputs(lite0, SIZE).astype(np.float64)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with torch.no_grad():
        targets = torch_model(torch.from_numpy(x)).argmax(1).tolist()
    worst: dict[str, float] = {}
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(torch_model)
        jax_model = attrib.wrap((module, variables), backend="jax")
        for method, options in MULTIPASS:
            layer = {"torch": "blocks.1", "jax": "blocks/1"} if "cam" in method else None
            n = 1 if layer else 2  # the CAMs: 24 masked passes per image, on the first one
            theirs = attrib.explain(torch_model, torch.from_numpy(x[:n]), method=method,
                                    target=targets[:n],
                                    **({"layer": layer["torch"]} if layer else {}), **options)
            ours = attrib.explain(jax_model, x_nhwc[:n], method=method, target=targets[:n],
                                  **({"layer": layer["jax"]} if layer else {}), **options)
            expected = np.asarray(theirs.attribution)
            if expected.ndim == 4:
                expected = expected.transpose(0, 2, 3, 1)
            assert len(expected) == n
            assert np.linalg.norm(expected.reshape(n, -1), axis=1).min() > 0, method
            worst[method] = float(_relative(np.asarray(ours.attribution), expected).max())
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    print(f"\nefficientnet_lite0 float64 multi-pass worst relative error: {worst}")
    bad = {key: value for key, value in worst.items() if not value < 1e-10}
    assert not bad, f"relative error above 1e-10: {bad}"


class _RuledReLU6(torch.autograd.Function):
    """relu6 whose backward is written out: guided or deconvnet."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(0.0, 6.0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        positive = torch.where(grad > 0, grad, torch.zeros_like(grad))
        if ctx.rule == "deconvnet":
            return positive, None
        return positive * ((x > 0) & (x < 6)).to(grad.dtype), None


class _Swapped(torch.nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RuledReLU6.apply(x, self.rule)


def _reference(model: torch.nn.Module, rule: str) -> torch.nn.Module:
    clone = copy.deepcopy(model)
    swapped = 0
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                setattr(module, child_name, _Swapped(rule))
                swapped += 1
    assert swapped == 33 and not any(isinstance(m, torch.nn.ReLU) for m in clone.modules())
    return clone


@pytest.mark.parametrize("rule,method", [("guided", "guided_backprop"),
                                         ("deconvnet", "deconvnet")])
def test_guided_rules_equal_a_hand_written_relu6_model(lite0, rule: str, method: str) -> None:
    x = torch.from_numpy(_inputs(lite0, 112))
    reference = _reference(lite0.model, rule)
    xr = x.clone().requires_grad_(True)
    logits = reference(xr)
    (expected,) = torch.autograd.grad(logits[torch.arange(2), TARGETS].sum(), xr)
    ours = attrib.explain(lite0.model, x, method=method, target=TARGETS)
    plain = attrib.explain(lite0.model, x, method="saliency", target=TARGETS)
    error = _relative(np.asarray(ours.attribution), expected.numpy())
    assert error.max() <= 1e-6, error
    assert ours.stats["rectifiers"] == 33
    differs = _relative(np.asarray(plain.attribution), expected.numpy())
    assert differs.min() > 0.5, differs  # the rule changes the map: not the plain gradient
