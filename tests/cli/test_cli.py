"""The ``attrib`` command line, run in-process through ``main`` and once as ``python -m attrib``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attrib._cli import main

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(autouse=True)
def _empty_torch_cache(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No ImageNet weights in torch's hub cache, whatever the machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(path)
    return path


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _panels(picture: np.ndarray) -> int:
    """Number of image panels in a one-row figure: runs of columns that are not all white."""
    body = picture[picture.shape[0] // 4: -picture.shape[0] // 8]
    drawn = (body < 250).any(axis=(0, 2))
    return int(np.sum(drawn[1:] & ~drawn[:-1]) + drawn[0])


def test_backends_lists_the_builtin_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "installed", "distribution", "description"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["torch"][1:3] == ["yes", "attrib"]
    assert rows["jax"][1:3] == ["yes", "attrib"]


def test_methods_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]}
    expected = {"saliency": "no", "gradient_x_input": "no", "deconvnet": "no",
                "guided_backprop": "no", "gradcam": "yes", "guided_gradcam": "yes"}
    assert expected.items() <= rows.items()


@pytest.mark.parametrize("command", [[], ["explain"], ["demo"], ["backends"], ["methods"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: attrib")


def test_explain_demo_model_writes_the_four_panel_figure(photo: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(photo), "--model", "demo", "--out", str(tmp_path)]) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    figure = tmp_path / "chelsea_demo_torch.png"
    assert figure.resolve() in [p.resolve() for p in printed]
    assert _panels(_png(figure)) == 5  # original + Grad-CAM, vanilla, guided, guided Grad-CAM
    for method in ("gradcam", "saliency", "guided_backprop", "guided_gradcam"):
        assert _png(tmp_path / f"chelsea_demo_torch_{method}.png").size > 0


def test_explain_demo_model_in_jax_with_a_class_name_target(photo: Path, tmp_path: Path) -> None:
    assert main(["explain", str(photo), "--model", "demo", "--backend", "jax", "--target",
                 "circle", "--method", "gradcam,saliency", "--out", str(tmp_path)]) == 0
    assert _panels(_png(tmp_path / "chelsea_demo_jax.png")) == 3


def test_explain_torchvision_with_a_saved_state_dict(photo: Path, resnet18_weights: Path,
                                                     tmp_path: Path) -> None:
    assert main(["explain", str(photo), "--model", "torchvision:resnet18", "--weights",
                 str(resnet18_weights), "--size", "64", "--out", str(tmp_path)]) == 0
    assert _panels(_png(tmp_path / "chelsea_resnet18_torch.png")) == 5


def test_explain_module_function_and_a_progress_bar(photo: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "my_models.py").write_text(
        "import attrib\n\ndef build():\n    return attrib.demo_model('torch')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    second = tmp_path / "second.png"
    Image.fromarray(skimage_data.coffee()).save(second)
    assert main(["explain", str(photo), str(second), "--model", "my_models:build", "--size", "64",
                 "--normalize", "none", "--layer", "conv4", "--method", "gradcam",
                 "--out", "out"]) == 0
    captured = capsys.readouterr()
    assert "explaining" in captured.err  # tqdm's bar, on stderr
    assert (tmp_path / "out" / "chelsea_my-models-build_torch.png").is_file()
    assert (tmp_path / "out" / "second_my-models-build_torch.png").is_file()


def test_demo_writes_figures_of_the_scenes(tmp_path: Path) -> None:
    # two scenes: a grid of several columns, for 2/3 of the three scenes' time
    assert main(["demo", "--out", str(tmp_path), "-n", "2", "--no-photos"]) == 0
    for backend in ("torch", "jax"):
        for kind in ("seed", "grid"):
            picture = _png(tmp_path / f"demo_{kind}_{backend}.png")
            assert picture.std() > 10  # not blank
    assert not list(tmp_path.glob("photos_*"))


def test_demo_explains_the_photographs_with_efficientnet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    assert main(["demo", "--out", str(tmp_path), "-n", "1", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    said = next(line for line in out.splitlines() if "EfficientNet-Lite0 says" in line)
    assert "chelsea -> tiger cat" in said and "coffee -> espresso" in said
    for kind in ("seed", "saliency", "grid"):
        assert _png(tmp_path / f"photos_{kind}_torch.png").std() > 10
    assert _png(tmp_path / "photos_seed_torch.png").shape[0] > 6 * 200  # six photographs


def test_explain_a_photograph_with_efficientnet_prints_the_top5(
        photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    assert main(["explain", str(photo), "--model", "efficientnet_lite0", "--method",
                 "gradcam,guided_backprop", "--out", str(tmp_path)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{photo}: tiger cat 0.") and first.count("; ") == 4
    assert (tmp_path / "chelsea_efficientnet-lite0_torch_gradcam.png").is_file()


def test_demo_explains_the_photographs_with_resnet_weights(
        tmp_path: Path, resnet18_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "-n", "2", "--backend", "torch", "--no-photos",
                 "--weights", str(resnet18_weights)]) == 0
    picture = _png(tmp_path / "photos_resnet18_torch.png")
    assert picture.shape[0] > 2 * 200  # three photographs, one row each
    assert "Photographs:" not in capsys.readouterr().out


def test_demo_finds_weights_in_torchs_hub_cache(tmp_path: Path, resnet18_weights: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(
        resnet18_weights.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(home))
    from attrib._cli._models import cached_weights

    assert cached_weights(["resnet50", "resnet18"]) == str(
        home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")


def _bad_cases(photo: Path, weights: Path, tmp: Path) -> dict[str, list[str]]:
    not_weights = tmp / "not_weights.pth"
    not_weights.write_text("hello")
    return {
        "missing file": ["explain", str(tmp / "missing.png"), "--model", "demo"],
        "unknown method": ["explain", str(photo), "--model", "demo", "--method", "gradcamm"],
        "unknown backend": ["explain", str(photo), "--model", "demo", "--backend", "tensorflow"],
        "missing weights": ["explain", str(photo), "--model", "torchvision:resnet18"],
        "weights file missing": ["explain", str(photo), "--model", "torchvision:resnet18",
                                 "--weights", str(tmp / "nope.pth")],
        "not a state dict": ["explain", str(photo), "--model", "torchvision:resnet18",
                             "--weights", str(not_weights)],
        "weights of another model": ["explain", str(photo), "--model", "torchvision:resnet34",
                                     "--weights", str(weights)],
        "unknown torchvision model": ["explain", str(photo), "--model", "torchvision:resnett18",
                                      "--weights", str(weights)],
        "bad model spec": ["explain", str(photo), "--model", "resnet18"],
        "misspelt pretrained model": ["explain", str(photo), "--model", "efficientnet_lite"],
        "pretrained model with weights": ["explain", str(photo), "--model", "efficientnet_lite0",
                                          "--weights", str(weights)],
        "evaluate, unknown model": ["evaluate", "--model", "efficientnet_b7"],
        "module not found": ["explain", str(photo), "--model", "no_such_module_xyz:build"],
        "no model": ["explain", str(photo)],
        "jax with a vgg": ["explain", str(photo), "--model", "torchvision:vgg11", "--weights",
                           str(weights), "--backend", "jax"],
        "bad target": ["explain", str(photo), "--model", "demo", "--target", "dog"],
        "target out of range": ["explain", str(photo), "--model", "demo", "--target", "7"],
        "unknown layer": ["explain", str(photo), "--model", "demo", "--layer", "conv9"],
        "layer for a gradient method": ["explain", str(photo), "--model", "demo", "--method",
                                        "saliency", "--layer", "conv4"],
        "not an image": ["explain", str(not_weights), "--model", "demo"],
        "unknown command": ["explian", str(photo)],
        "demo, unknown backend": ["demo", "--backend", "tf", "--out", str(tmp / "d")],
        "demo, missing weights file": ["demo", "--weights", str(tmp / "nope.pth"), "-n", "1",
                                       "--backend", "torch", "--out", str(tmp / "d")],
        "demo, bad n": ["demo", "-n", "0"],
        "no command": [],
    }


CASES = ["missing file", "unknown method", "unknown backend", "missing weights",
         "weights file missing", "not a state dict", "weights of another model",
         "unknown torchvision model", "bad model spec", "misspelt pretrained model",
         "pretrained model with weights", "evaluate, unknown model", "module not found", "no model",
         "jax with a vgg", "bad target", "target out of range", "unknown layer",
         "layer for a gradient method", "not an image", "unknown command",
         "demo, unknown backend", "demo, missing weights file", "demo, bad n"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(case: str, photo: Path, resnet18_weights: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _bad_cases(photo, resnet18_weights, tmp_path)[case]
    if argv and argv[0] == "explain":
        argv = [*argv, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("attrib: error: ") and "Traceback" not in err


def test_missing_weights_says_how_to_provide_them(photo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(photo), "--model", "torchvision:resnet18"]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "state_dict()" in err and "checkpoints" in err


def test_python_dash_m_attrib_runs_the_demo(tmp_path: Path) -> None:
    """The real process: exit status, stdout naming the figures, PNGs that open."""
    done = subprocess.run([sys.executable, "-m", "attrib", "demo", "--out", "figs", "-n", "2",
                           "--backend", "torch", "--no-photos"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**_env(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "figs/demo_seed_torch.png" in done.stdout
    assert _png(tmp_path / "figs" / "demo_seed_torch.png").std() > 10
    bad = subprocess.run([sys.executable, "-m", "attrib", "explain", "missing.png", "--model",
                          "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**_env(tmp_path)})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "MPLBACKEND": "Agg"}


# -- issue 8: the CAM family in the listing; the --layer default --------------------------------
def test_methods_lists_the_cam_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]}
    for name in ("gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam",
                 "ablationcam"):
        assert rows[name] == "yes", name


def test_explain_without_layer_uses_the_default_layer() -> None:
    import dataclasses

    from attrib._cli._models import load_model
    from attrib._cli._run import explain_all, model_inputs

    # as for a torchvision or module:function model, whose layer is left to the library
    loaded = dataclasses.replace(load_model("demo", None, None, None, None), layer=None)
    images = np.random.default_rng(0).uniform(size=(1, 64, 64, 3))
    out = explain_all(loaded, model_inputs(images, loaded), ["gradcam", "hirescam"])
    assert out["gradcam"].layer == out["hirescam"].layer == "conv4"
    assert out["gradcam"].stats["default_layer"] is True


def test_explain_takes_the_shap_and_deeplift_methods(photo: Path, tmp_path: Path) -> None:
    assert main(["explain", str(photo), "--model", "demo", "--method",
                 "deeplift,deeplift_shap,gradient_shap", "--out", str(tmp_path)]) == 0
    # every method asked for is a column of the combined figure (GradientSHAP, labelled as
    # a multi-pass method, used to be left out of it, and a multi-pass method alone raised)
    assert _panels(_png(tmp_path / "chelsea_demo_torch.png")) == 4
    for method in ("deeplift", "deeplift_shap", "gradient_shap"):
        assert _png(tmp_path / f"chelsea_demo_torch_{method}.png").size > 0
