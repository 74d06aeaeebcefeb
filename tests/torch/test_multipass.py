"""Integrated gradients, occlusion and SmoothGrad on torch, against Captum and by their axioms.

References: Captum's ``IntegratedGradients`` (same baseline, steps and rule) and
``Occlusion`` (window over all channels) on torchvision ``resnet18`` in float64;
completeness ``sum IG = f(x) - f(baseline)`` on a smooth (softplus) CNN; SmoothGrad
with zero noise against its base method; target weights against single-class maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")

import attrib  # noqa: E402
from attrib.methods.integrated_gradients import RULES, quadrature  # noqa: E402
from support.batchnorm import perturbed_resnet18  # noqa: E402
from support.compare import max_relative  # noqa: E402

TARGETS = [3, 7]


@pytest.fixture(scope="module")
def resnet() -> Any:
    return perturbed_resnet18(torch.float64)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # small: a 32x32 input still runs every resnet18 stage (layer4 is 1x1)
    return np.random.default_rng(0).normal(size=(2, 3, 32, 32))


def test_quadrature_nodes_and_weights_are_captums() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    for rule in RULES:
        step_sizes, alphas = approximation_parameters(rule)
        ours_alphas, ours_weights = quadrature(rule, 9)
        # Captum rounds the Riemann nodes to float32 (torch.linspace); ours are exact
        np.testing.assert_allclose(ours_alphas, alphas(9), rtol=0, atol=1e-7)
        np.testing.assert_allclose(ours_weights, step_sizes(9), rtol=1e-15, atol=0)
    assert quadrature("gausslegendre", 9)[1].sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_integrated_gradients_equals_captum_on_resnet18(resnet: Any, images: np.ndarray,
                                                        rule: str) -> None:
    steps = 3
    ours = attrib.explain(resnet, images, method="integrated_gradients", target=TARGETS,
                          steps=steps, rule=rule, batch_size=4)  # 6 rows: chunks 3, 3
    theirs = captum_attr.IntegratedGradients(resnet).attribute(
        torch.tensor(images), target=TARGETS, n_steps=steps, method=rule).numpy()
    assert ours.attribution.shape == theirs.shape
    assert max_relative(ours.attribution, theirs) < 1e-5
    assert np.abs(theirs).max() > 0


def test_integrated_gradients_array_baseline_equals_captum(resnet: Any, images: np.ndarray) -> None:
    baseline = np.full_like(images, 0.25)
    ours = attrib.explain(resnet, images, method="integrated_gradients", target=TARGETS,
                          steps=3, baseline=baseline)
    theirs = captum_attr.IntegratedGradients(resnet).attribute(
        torch.tensor(images), baselines=torch.tensor(baseline), target=TARGETS, n_steps=3).numpy()
    assert max_relative(ours.attribution, theirs) < 1e-5


def test_occlusion_equals_captum_on_resnet18(resnet: Any, images: np.ndarray) -> None:
    ours = attrib.explain(resnet, images, method="occlusion", target=TARGETS, window=(12, 10),
                          stride=(8, 6), baseline=0.5, batch_size=15)
    theirs = captum_attr.Occlusion(resnet).attribute(
        torch.tensor(images), target=TARGETS, sliding_window_shapes=(3, 12, 10),
        strides=(3, 8, 6), baselines=0.5).numpy()
    assert max_relative(ours.attribution, theirs) < 1e-5
    assert ours.stats["windows"] == 4 * 5  # ceil((32-12)/8)+1 rows, ceil((32-10)/6)+1 columns


def _softplus_cnn() -> Any:
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Softplus(),
        torch.nn.Conv2d(8, 8, 3, stride=2), torch.nn.Softplus(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    return net.eval().double()


def _relu_cnn() -> Any:
    """A small ReLU CNN with named layers (conv2 for CAMs), float64, 10 classes."""
    torch.manual_seed(4)
    net = torch.nn.Sequential()
    net.add_module("conv1", torch.nn.Conv2d(3, 6, 3, padding=1))
    net.add_module("relu1", torch.nn.ReLU())
    net.add_module("conv2", torch.nn.Conv2d(6, 8, 3, stride=2))
    net.add_module("relu2", torch.nn.ReLU())
    net.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(8, 10))
    return net.eval().double()


def test_completeness_within_one_percent_at_64_steps_on_a_smooth_cnn() -> None:
    net = _softplus_cnn()
    x = np.random.default_rng(1).uniform(size=(3, 3, 16, 16))
    result = attrib.explain(net, x, method="integrated_gradients", target=[0, 1, 2], steps=64)
    delta = result.stats["score"] - result.stats["baseline_score"]
    error = result.stats["completeness_error"]
    assert np.all(np.abs(delta) > 1e-3)
    assert np.all(np.abs(error) <= 0.01 * np.abs(delta)), (error, delta)
    total = result.attribution.reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(error, total - delta, rtol=1e-12, atol=1e-15)


def test_completeness_error_shrinks_with_steps_on_the_demo_model() -> None:
    model = attrib.demo_model("torch")
    x = attrib.demo_data(2).images.transpose(0, 3, 1, 2)
    errors = {}
    for steps in (16, 64, 256):
        result = attrib.explain(model, x, method="integrated_gradients", steps=steps,
                                rule="riemann_trapezoid", batch_size=64)
        delta = result.stats["score"] - result.stats["baseline_score"]
        errors[steps] = float(np.max(np.abs(result.stats["completeness_error"] / delta)))
    print("demo completeness error (relative, max over 2 images):", errors)
    assert errors[256] < errors[64] < errors[16]
    assert errors[256] < 0.01


def test_baselines_blur_and_uniform_complete(images: np.ndarray) -> None:
    net = _softplus_cnn()
    x = images[:, :, :16, :16]
    for baseline in ("blur", "uniform"):
        result = attrib.explain(net, x, method="integrated_gradients", steps=64, baseline=baseline)
        delta = result.stats["score"] - result.stats["baseline_score"]
        assert np.all(np.abs(result.stats["completeness_error"]) <= 0.01 * np.abs(delta) + 1e-9)
    again = attrib.explain(net, x, method="integrated_gradients", steps=2, baseline="uniform")
    same = attrib.explain(net, x, method="integrated_gradients", steps=2, baseline="uniform")
    np.testing.assert_array_equal(again.attribution, same.attribution)


def test_smoothgrad_zero_noise_equals_the_base_exactly(images: np.ndarray) -> None:
    resnet = _relu_cnn()
    for base, options in (("saliency", {}), ("guided_backprop", {}),
                          ("gradcam", {"layer": "conv2"}),
                          ("integrated_gradients", {"steps": 3})):
        smooth = attrib.explain(resnet, images, method="smoothgrad", base=base,
                                base_options=options, noise=0.0, target=TARGETS)
        plain = attrib.explain(resnet, images, method=base, target=TARGETS, **options)
        np.testing.assert_array_equal(smooth.attribution, plain.attribution)
        assert smooth.layer == plain.layer


def test_smoothgrad_seeded_repeat_is_identical_and_independent_of_batch_size(
        images: np.ndarray) -> None:
    resnet = _relu_cnn()
    x = images
    kwargs = dict(method="smoothgrad", n_samples=3, noise=0.2, target=TARGETS, seed=7)
    first = attrib.explain(resnet, x, batch_size=4, **kwargs)
    second = attrib.explain(resnet, x, batch_size=4, **kwargs)
    np.testing.assert_array_equal(first.attribution, second.attribution)
    chunked = attrib.explain(resnet, x, batch_size=2, **kwargs)  # 6 rows: 2, 2, 2 (not 3, 3)
    np.testing.assert_allclose(chunked.attribution, first.attribution, rtol=1e-12, atol=1e-14)
    other = attrib.explain(resnet, x, batch_size=4, **{**kwargs, "seed": 8})
    assert not np.allclose(other.attribution, first.attribution)
    # independent reference: the mean of saliency maps at the same noisy images
    rng = np.random.default_rng(7)
    sigma = 0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    maps, squares = [], []
    for _ in range(3):
        noisy = x + rng.standard_normal(x.shape) * sigma[:, None, None, None]
        xt = torch.tensor(noisy, requires_grad=True)
        resnet(xt)[[0, 1], TARGETS].sum().backward()
        maps.append(xt.grad.numpy())
        squares.append(xt.grad.numpy() ** 2)
    np.testing.assert_allclose(first.attribution, np.mean(maps, axis=0), rtol=1e-10, atol=1e-14)
    squared = attrib.explain(resnet, x, batch_size=4, kind="squared", **kwargs)
    np.testing.assert_allclose(squared.attribution, np.mean(squares, axis=0), rtol=1e-10, atol=1e-16)
    variance = attrib.explain(resnet, x, batch_size=4, kind="variance", **kwargs)
    np.testing.assert_allclose(variance.attribution, np.var(maps, axis=0), rtol=1e-6, atol=1e-14)


def test_passes_never_exceed_batch_size_and_the_default_comes_from_the_memory_budget(
        images: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from attrib.methods import _batched

    assert _batched.default_batch_size(np.zeros((1, 3, 224, 224), np.float32)) == 5
    assert _batched.default_batch_size(np.zeros((1, 3, 64, 64), np.float32)) == 64
    assert _batched.default_batch_size(np.zeros((1, 10), np.float32)) == _batched.MAX_CHUNK_ROWS
    net = _relu_cnn()
    rows: list[int] = []
    hook = net.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    try:
        ig = attrib.explain(net, images, method="integrated_gradients", target=TARGETS, steps=5,
                            batch_size=4)
        # one forward of the 2 images and their (equal, zero) baseline once: 3 rows; then
        # 10 interpolated rows in chunks of 4, 4, 2
        assert rows == [3, 4, 4, 2] and ig.stats["batch_size"] == 4
        rows.clear()
        # given targets and one pass for all: SmoothGrad's clean images join the noisy ones
        folded = attrib.explain(net, images, method="smoothgrad", target=TARGETS, n_samples=4)
        assert rows == [10] and folded.stats["batch_size"] == 10
        split = attrib.explain(net, images, method="smoothgrad", target=TARGETS, n_samples=4,
                               batch_size=4)  # too small to fold: a forward call, then 4, 4
        np.testing.assert_allclose(folded.attribution, split.attribution, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(folded.logits, split.logits, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(folded.logits, net(torch.tensor(images)).detach().numpy(),
                                   rtol=1e-12, atol=1e-15)
        weights = np.zeros((2, 10))
        weights[:, 3], weights[:, 7] = 1.0, -1.0
        contrast = attrib.explain(net, images, method="smoothgrad", target=weights, n_samples=4)
        np.testing.assert_array_equal(contrast.target_weights, weights)
        rows.clear()
        # default: as many rows as fit in CHUNK_BYTES of input; 3 x 32 x 32 float64 = 24 KiB
        monkeypatch.setattr(_batched, "CHUNK_BYTES", 3 * images[0].nbytes + 1)
        ig = attrib.explain(net, images, method="integrated_gradients", target=TARGETS, steps=5)
        assert rows == [3, 3, 3, 3, 1] and ig.stats["batch_size"] == 3
        rows.clear()
        uniform = attrib.explain(net, images, method="integrated_gradients", target=TARGETS,
                                 steps=5, baseline="uniform")  # two different baselines
        assert rows == [4, 3, 3, 3, 1] and uniform.stats["batch_size"] == 3
        rows.clear()
        smooth = attrib.explain(net, images, method="smoothgrad", target=TARGETS, n_samples=4)
        assert rows == [2, 3, 3, 2] and smooth.stats["batch_size"] == 3
    finally:
        hook.remove()


def test_target_weights_one_hot_and_contrast(images: np.ndarray) -> None:
    resnet = _relu_cnn()
    x = images
    one_hot = np.zeros((2, 10))
    one_hot[[0, 1], TARGETS] = 1.0
    for method, options in (("saliency", {}), ("integrated_gradients", {"steps": 3}),
                            ("gradcam", {"layer": "conv2"}), ("occlusion", {"window": 16,
                                                                            "stride": 16})):
        plain = attrib.explain(resnet, x, method=method, target=TARGETS, **options)
        weighted = attrib.explain(resnet, x, method=method, target=one_hot, **options)
        np.testing.assert_array_equal(weighted.attribution, plain.attribution)
        np.testing.assert_array_equal(weighted.targets, TARGETS)
        np.testing.assert_array_equal(weighted.target_weights, one_hot)
    for method, options in (("saliency", {}), ("integrated_gradients", {"steps": 3})):
        contrast = attrib.explain(resnet, x, method=method, target={3: 1.0, 7: -1.0}, **options)
        cat = attrib.explain(resnet, x, method=method, target=3, **options).attribution
        dog = attrib.explain(resnet, x, method=method, target=7, **options).attribution
        np.testing.assert_allclose(contrast.attribution, cat - dog, rtol=1e-9,
                                   atol=1e-12 * np.abs(cat).max())
        np.testing.assert_array_equal(contrast.targets, [3, 3])


@pytest.mark.parametrize(("options", "message"), [
    ({"method": "integrated_gradients", "steps": 0}, "steps: expected an int >= 1"),
    ({"method": "integrated_gradients", "rule": "riemann"}, "rule: expected one of"),
    ({"method": "integrated_gradients", "baseline": "black"}, "baseline: expected one of"),
    ({"method": "integrated_gradients", "baseline": np.zeros((5, 5))}, "baseline: expected"),
    ({"method": "smoothgrad", "noise": -0.1}, "noise: expected a finite float >= 0"),
    ({"method": "smoothgrad", "kind": "varGrad"}, "kind: expected one of"),
    ({"method": "smoothgrad", "base": "gradcam"}, "base_options: expected a 'layer'"),
    ({"method": "smoothgrad", "base_options": {"stepz": 3}, "base": "integrated_gradients"},
     "base_options: expected options of 'integrated_gradients'"),
    ({"method": "occlusion", "window": 8, "stride": 9}, "stride: expected at most the window"),
    ({"method": "occlusion", "window": 99}, "window: expected at most the image size"),
    ({"method": "occlusion", "window": "big"}, "window: expected an int or a pair"),
])
def test_bad_options_raise_clear_errors(options: dict[str, Any], message: str) -> None:
    net = _softplus_cnn()
    x = np.zeros((1, 3, 16, 16))
    with pytest.raises(attrib.AttribError, match=message.replace("(", r"\(").replace(")", r"\)")):
        attrib.explain(net, x, **options)
