"""GradientSHAP on torch: equal to Captum's ``GradientShap`` with the same draws, and its expectation.

Captum draws the baseline indices (``np.random.choice``), then the noise
(``torch.normal``), then the path points (``np.random.uniform``); replaying those
draws after reseeding gives attrib's explicit ``draws=``, so both compute the same
sum (float64, resnet18 at 32², batch 2, three baselines, noise). On a linear model
the map is ``w * (x - E[x0])`` in expectation: within 2 % over 2,000 draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")

import attrib  # noqa: E402
from attrib.methods.gradient_shap import Draws  # noqa: E402
from support.batchnorm import perturbed_resnet18  # noqa: E402
from support.compare import max_relative  # noqa: E402

TARGETS = [3, 7]


@pytest.fixture(scope="module")
def resnet() -> Any:
    return perturbed_resnet18(torch.float64)


def _captum_draws(n: int, n_samples: int, n_baselines: int, shape: tuple[int, ...],
                  stdevs: float, seed: int) -> Draws:
    """The draws Captum's GradientShap makes after ``np.random.seed(seed); torch.manual_seed(seed)``."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    index = np.array(np.random.choice(n_baselines, n_samples * n).tolist())
    # a float32 standard deviation, as Captum's torch.tensor(stdev) makes
    noise = torch.normal(0, torch.tensor(stdevs).repeat((n * n_samples,) + shape))
    alpha = np.random.uniform(0.0, 1.0, n * n_samples)
    # Captum's rows are sample-major (repeat_interleave): row r = image r // n_samples
    return Draws(baseline_index=index.reshape(n, n_samples), alpha=alpha.reshape(n, n_samples),
                 noise=noise.numpy().reshape((n, n_samples) + shape))


@pytest.mark.parametrize("stdevs", [0.0, 0.3])
def test_gradient_shap_equals_captum_with_the_same_draws(resnet: Any, stdevs: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 32, 32))
    baselines = rng.normal(size=(3, 3, 32, 32)) * 0.5
    n_samples = 4
    np.random.seed(5)
    torch.manual_seed(5)
    theirs = captum_attr.GradientShap(resnet).attribute(
        torch.from_numpy(x), torch.from_numpy(baselines), n_samples=n_samples, stdevs=stdevs,
        target=TARGETS).detach().numpy()
    draws = _captum_draws(2, n_samples, 3, x.shape[1:], stdevs, seed=5)
    ours = attrib.explain(resnet, x, method="gradient_shap", target=TARGETS, baselines=baselines,
                          n_samples=n_samples, stdevs=stdevs, draws=draws, batch_size=3)
    assert np.abs(theirs).max() > 0
    assert max_relative(ours.attribution, theirs) <= 1e-6
    # the same draws in any chunking give the same map; a seed gives the same draws
    again = attrib.explain(resnet, x, method="gradient_shap", target=TARGETS, baselines=baselines,
                           n_samples=n_samples, stdevs=stdevs, draws=draws, batch_size=8)
    assert max_relative(again.attribution, ours.attribution) <= 1e-12
    one = attrib.explain(resnet, x, method="gradient_shap", target=TARGETS, baselines=baselines,
                         n_samples=n_samples, stdevs=stdevs, seed=1)
    two = attrib.explain(resnet, x, method="gradient_shap", target=TARGETS, baselines=baselines,
                         n_samples=n_samples, stdevs=stdevs, seed=1, batch_size=2)
    assert max_relative(two.attribution, one.attribution) <= 1e-12
    np.testing.assert_array_equal(one.stats["baseline_index"], two.stats["baseline_index"])


def test_gradient_shap_on_a_linear_model_is_w_times_x_minus_the_mean_baseline() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).double().eval()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 2)) + 2.0
    baselines = rng.normal(size=(10, 3, 2, 2))
    out = attrib.explain(model, x, method="gradient_shap", target=[1, 2], baselines=baselines,
                         n_samples=2000, stdevs=0.05, seed=3)
    w = model[1].weight.detach().numpy()[[1, 2]].reshape(2, 3, 2, 2)
    expected = w * (x - baselines.mean(axis=0))
    assert np.abs(out.attribution - expected).max() / np.abs(expected).max() <= 0.02
    # the exact identity for the draws made: w * (x + mean noise - mean drawn baseline)
    drawn = baselines[out.stats["baseline_index"]].mean(axis=1)
    assert np.abs(out.attribution - w * (x - drawn)).max() / np.abs(expected).max() <= 0.01


def test_gradient_shap_checks_baselines_and_draws(resnet: Any) -> None:
    x = np.zeros((2, 3, 32, 32))
    with pytest.raises(attrib.AttribError, match="baselines"):
        attrib.explain(resnet, x, method="gradient_shap", baselines=np.zeros((3, 3, 16, 16)))
    with pytest.raises(attrib.AttribError, match="draws.alpha"):
        attrib.explain(resnet, x, method="gradient_shap", n_samples=2,
                       draws={"baseline_index": np.zeros((2, 2), int), "alpha": np.ones((2, 3))})
