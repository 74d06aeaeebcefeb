"""The same torchvision ResNet in both backends: every method's map agrees per sample.

torchvision ``resnet18`` / ``resnet50`` (random weights, BatchNorm statistics
and affine parameters perturbed to non-trivial values, eval mode) are
explained with ``backend="torch"`` on NCHW inputs and their Flax twins from
:func:`attrib_jax.from_torch` with ``backend="jax"`` on the same inputs in
NHWC. Relative error ``||a - b|| / ||b||`` per sample must be below 1e-10 in
float64 on both (``jax.enable_x64`` scoped to the test, torch model
``.double()``) and below 1e-4 in float32 on resnet18 (single calls; the
float64 test takes the JAX maps from one multi-method call per layer, one
compile each). The float32 test does not
run resnet50 as well: it would check the same translation (Bottleneck blocks:
the float64 test; float32 maps and dtypes: resnet18) for 27 s of the suite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
jax = pytest.importorskip("jax")

import attrib  # noqa: E402
import attrib_jax  # noqa: E402
from support.batchnorm import perturb_batchnorm  # noqa: E402

#: (method, layer) pairs: every built-in method, Grad-CAM at layer4 and layer3
CASES: list[tuple[str, str | None]] = [
    ("saliency", None),
    ("gradient_x_input", None),
    ("deconvnet", None),
    ("guided_backprop", None),
    ("gradcam", "layer4"),
    ("gradcam", "layer3"),
    ("guided_gradcam", "layer4"),
    ("guided_gradcam", "layer3"),
]
TARGETS = [5, 8]  # batch of 2, different targets
#: input size: small to keep compile and run times low (layer4 is 2x2, layer3 4x4). Smaller
#: inputs made float32 maps of a random ResNet-50 ill-conditioned (at 48x48 a relu whose input
#: rounds to the other side of 0 moves saliency by 6e-3 relative; float64 still agrees to 1e-14)
SIZES = {"resnet18": 64, "resnet50": 64}


def _torch_resnet(name: str, dtype: Any) -> Any:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    return perturb_batchnorm(model).to(dtype)


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample ``||a - b|| / ||b||``."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    diff, norm = np.linalg.norm(a - b, axis=1), np.linalg.norm(b, axis=1)
    # a map that is all zero on both sides (Grad-CAM's relu can zero it) agrees exactly
    return np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), np.where(diff > 0, np.inf, 0.0))


def _nhwc(array: np.ndarray) -> np.ndarray:
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def _jax_maps_by_layer(jax_model: Any, x: np.ndarray) -> dict[tuple[str, str | None], Any]:
    """Every case's JAX map from one multi-method call per layer (one compile each, not eight).

    A multi-method call gives each map bit for bit as the method called alone
    (``tests/jax/test_jax_many.py``), so parity of these maps is parity of the single calls.
    """
    maps: dict[tuple[str, str | None], Any] = {}
    for layer in ("layer4", "layer3"):
        cases = [(m, lay) for m, lay in CASES if lay == layer or (lay is None and layer == "layer4")]
        explained = attrib.explain(jax_model, x, method=[m for m, _ in cases], target=TARGETS,
                                   layer=layer)
        maps.update({(m, lay): explained[m] for m, lay in cases})
    return maps


def _check_parity(name: str, dtype: Any, np_dtype: Any, tolerance: float, *,
                  together: bool = False) -> dict[str, float]:
    """Worst relative error per map; ``together``: JAX maps from one call per layer."""
    torch_model = _torch_resnet(name, dtype)
    module, variables = attrib_jax.from_torch(torch_model)
    size = SIZES[name]
    x = np.random.default_rng(2).normal(size=(2, 3, size, size)).astype(np_dtype)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    jax_model = attrib.wrap((module, variables), backend="jax", train=False)
    worst: dict[str, float] = {}

    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x)).numpy()
    if name == "resnet18":  # Model.forward once; elsewhere the logits come with each map
        jax_logits = jax_model.forward(x_nhwc)
        assert jax_logits.dtype == np_dtype
        worst["forward"] = float(_relative(jax_logits, torch_logits).max())

    jax_maps = _jax_maps_by_layer(jax_model, x_nhwc) if together else {}
    for method, layer in CASES:
        kwargs = {"layer": layer} if layer else {}
        ours = jax_maps.get((method, layer)) or attrib.explain(
            jax_model, x_nhwc, method=method, target=TARGETS, **kwargs)
        theirs = attrib.explain(torch_model, torch.from_numpy(x), method=method, backend="torch",
                                target=TARGETS, **kwargs)
        assert ours.attribution.dtype == np_dtype
        worst["logits"] = max(worst.get("logits", 0.0),
                              float(_relative(ours.logits, torch_logits).max()))
        np.testing.assert_array_equal(ours.targets, TARGETS)
        expected = _nhwc(np.asarray(theirs.attribution))
        assert ours.attribution.shape == expected.shape
        norms = np.linalg.norm(expected.reshape(2, -1), axis=1)
        assert norms.max() > 0, f"{method}: an all-zero map makes a meaningless test"
        error = _relative(ours.attribution, expected)
        worst[f"{method}@{layer}" if layer else method] = float(error.max())
        if method == "guided_gradcam" and not together:
            passes = 1 if layer == "layer4" else 2  # rectifiers lie after layer3, none after layer4
            assert ours.stats["backward_passes"] == passes
    print(f"\n{name} {np.dtype(np_dtype).name} worst relative error per map: {worst}")
    bad = {key: value for key, value in worst.items() if not value < tolerance}
    assert not bad, f"{name}: relative error above {tolerance}: {bad}"
    return worst


def test_float32_parity() -> None:
    _check_parity("resnet18", torch.float32, np.float32, 1e-4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_float64_parity(name: str) -> None:
    with jax.enable_x64(True):
        _check_parity(name, torch.float64, np.float64, 1e-10, together=True)
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"


def test_from_torch_takes_batchnorm_eps_from_the_model() -> None:
    model = _torch_resnet("resnet18", torch.float32)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.5  # far from the default 1e-5: a hard-coded eps would show
    flax_module, variables = attrib_jax.from_torch(model)
    assert flax_module.bn_eps == 0.5
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.asarray(flax_module.apply(variables, x.transpose(0, 2, 3, 1)))
    assert float(_relative(got, expected).max()) < 1e-5
    model.bn1.eps = 1e-3  # two values: no single Flax eps can express it
    with pytest.raises(attrib.AttribError, match="one eps"):
        attrib_jax.from_torch(model)
