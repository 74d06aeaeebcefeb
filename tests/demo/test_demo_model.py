"""The bundled demo CNN: torch and Flax twins agree, it is accurate, Grad-CAM lands on the object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import attrib
from attrib._cli._demo import cam_mass_on_objects

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data() -> attrib._demo.DemoData:
    # a seed used neither for training (1) nor for the script's held-out set (12345)
    return attrib.demo_data(96, seed=777)


@pytest.fixture(scope="module")
def torch_model() -> object:
    return attrib.demo_model("torch")


@pytest.fixture(scope="module")
def jax_model() -> tuple:
    return attrib.demo_model("jax")


def _torch_logits(model: object, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def test_torch_model_is_an_eval_module_with_named_layers(torch_model: object) -> None:
    assert isinstance(torch_model, torch.nn.Module) and not torch_model.training
    names = {n for n, _ in torch_model.named_modules()}
    assert {"conv1", "conv2", "conv3", "conv4", "fc"} <= names


def test_jax_model_is_a_linen_pair_with_the_same_names(jax_model: tuple) -> None:
    import flax.linen as nn

    module, variables = jax_model
    assert isinstance(module, nn.Module)
    assert set(variables["params"]) == {"conv1", "conv2", "conv3", "conv4", "fc"}


def test_torch_and_jax_give_the_same_logits(data, torch_model, jax_model) -> None:
    module, variables = jax_model
    expected = _torch_logits(torch_model, data.images)
    got = np.asarray(module.apply(variables, data.images))
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_from_torch_copies_a_torch_demo_cnn(data, torch_model) -> None:
    from attrib_jax import from_torch
    from attrib_torch._demo import DemoCNN

    torch.manual_seed(0)
    fresh = DemoCNN().eval()  # other weights than the shipped ones
    module, variables = from_torch(fresh)
    expected = _torch_logits(fresh, data.images[:8])
    got = np.asarray(module.apply(variables, data.images[:8]))
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_accuracy_on_fresh_scenes_is_high(data, torch_model) -> None:
    predicted = _torch_logits(torch_model, data.images).argmax(1)
    assert (predicted == data.labels).mean() >= 0.95


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_gradcam_puts_its_mass_on_the_object(data, torch_model, jax_model, backend) -> None:
    model = torch_model if backend == "torch" else jax_model
    images = data.images[:48]
    inputs = images.transpose(0, 3, 1, 2) if backend == "torch" else images
    explanation = attrib.explain(model, inputs, method="gradcam", layer="conv4",
                                 target=data.labels[:48])
    cam = np.asarray(explanation.attribution)
    masks = data.masks[:48]
    mass = cam_mass_on_objects(cam, masks, grow=2)
    area = cam_mass_on_objects(np.ones_like(cam), masks, grow=2)  # grown mask's area fraction
    assert area.mean() < 0.15
    assert mass.mean() > 0.4 > 3 * area.mean()
    assert (mass > 2 * area).mean() >= 0.85  # most samples, not just on average


def test_gradcam_maps_agree_across_backends(data, torch_model, jax_model) -> None:
    images = data.images[:8]
    t = attrib.explain(torch_model, images.transpose(0, 3, 1, 2), method="gradcam", layer="conv4")
    j = attrib.explain(jax_model, images, method="gradcam", layer="conv4")
    np.testing.assert_array_equal(t.targets, j.targets)
    scale = np.abs(t.attribution).max()
    assert np.abs(np.asarray(j.attribution) - np.asarray(t.attribution)).max() <= 1e-4 * scale


def test_cam_mass_on_objects_by_hand() -> None:
    cam = np.zeros((2, 5, 5))
    cam[0, 2, 2] = 3.0
    cam[0, 0, 0] = 1.0
    masks = np.zeros((2, 5, 5), bool)
    masks[:, 2, 2] = True
    np.testing.assert_allclose(cam_mass_on_objects(cam, masks, grow=0), [0.75, 0.0])
    np.testing.assert_allclose(cam_mass_on_objects(cam, masks, grow=2), [0.75, 0.0])
    cam[0, 1, 2] = 4.0  # one step from the mask: inside once grown by 1
    np.testing.assert_allclose(cam_mass_on_objects(cam, masks, grow=1), [7 / 8, 0.0])


def test_training_script_is_deterministic(tmp_path: Path) -> None:
    """Two short runs of scripts/train_demo_model.py write identical weights."""
    outs = []
    for run in range(2):
        out = tmp_path / f"run{run}.npz"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "train_demo_model.py"),
                        "--out", str(out), "--epochs", "1", "--train", "192",
                        "--held-out", "32", "--batch", "32"],
                       check=True, capture_output=True, text=True, timeout=300)
        outs.append(dict(np.load(out)))
    assert outs[0].keys() == attrib._demo.demo_weights().keys()
    for key in outs[0]:
        np.testing.assert_array_equal(outs[0][key], outs[1][key])
