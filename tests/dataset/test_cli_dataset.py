"""attrib explain-dataset FOLDER and its resume behaviour, in-process through main()."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import attrib
from attrib._cli import main
from support.image_folders import NAMES, make_folder

pytest.importorskip("torch")
pytest.importorskip("zarr")

def test_explain_dataset_command_explains_every_image_in_sorted_order(tmp_path, capsys):
    folder, pictures, labels = make_folder(tmp_path)
    out = tmp_path / "maps.zarr"
    assert main(["explain-dataset", str(folder), "--model", "demo", "--method", "gradcam",
                 "--target", "labels", "--out", str(out), "--batch-size", "4", "--quiet"]) == 0
    assert "10 images, gradcam on conv4" in capsys.readouterr().out
    store = attrib.open_maps(out)
    np.testing.assert_array_equal(store["labels"][:], labels)  # from the sub-folders' names
    np.testing.assert_array_equal(store["targets"][:], labels)
    expected = attrib.explain(attrib.demo_model("torch"),
                              (pictures[:4] / np.float32(255)).astype(np.float32).transpose(0, 3, 1, 2),
                              method="gradcam", layer="conv4", target=labels[:4])
    np.testing.assert_allclose(store["attribution"][:4], expected.attribution, rtol=1e-5, atol=1e-6)
    assert store.settings["class_names"] == list(NAMES)
    # again: nothing to do, nothing changed; with other settings: refused, exit 2, one line
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["explain-dataset", str(folder), "--model", "demo", "--method", "gradcam",
                 "--target", "labels", "--out", str(out), "--batch-size", "4", "--quiet"]) == 0
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["explain-dataset", str(folder), "--model", "demo", "--method", "saliency",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attrib: error: out: expected a store made with this run's settings")
    assert len(err.strip().splitlines()) == 1


def test_several_methods_go_to_one_store_with_the_maps_of_each(tmp_path, capsys):
    folder, _, _ = make_folder(tmp_path, 6)
    common = [str(folder), "--model", "demo", "--batch-size", "4", "--quiet"]
    assert main(["explain-dataset", *common, "--method", "saliency,gradcam",
                 "--out", str(tmp_path / "both.zarr")]) == 0
    assert "6 images, saliency, gradcam on conv4" in capsys.readouterr().out
    assert main(["explain-dataset", *common, "--method", "gradcam", "--out", str(tmp_path / "one.zarr")]) == 0
    both, one = attrib.open_maps(tmp_path / "both.zarr"), attrib.open_maps(tmp_path / "one.zarr")
    assert both.methods == ["saliency", "gradcam"] and both.settings["layer"] == "conv4"
    for name in ("attribution", "layer_attribution"):  # the CLI's own one-method store
        np.testing.assert_array_equal(both.maps("gradcam")[name][:], one[name][:])


@pytest.mark.parametrize("argv, message", [
    (["missing-folder", "--model", "demo", "--method", "saliency", "--out", "m.zarr"],
     "FOLDER: no such folder"),
    (["{folder}", "--model", "demo", "--method", "saliency,gradcamm", "--out", "m.zarr"],
     "Did you mean 'gradcam'"),
    (["{folder}", "--model", "demo", "--method", "saliency,deconvnet", "--layer", "conv4", "--out",
      "m.zarr"], "--layer: saliency, deconvnet explain the input and take no layer"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--layer", "conv4", "--out", "m.zarr"],
     "--layer: saliency explains the input"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--batch-size", "0", "--out", "m.zarr"],
     "--batch-size: expected a positive number"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--concurrency", "2", "--out", "m.zarr"],
     "--concurrency: expected 1 without --ray (actors run on Ray), got '2'; add --ray"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--concurrency", "auto", "--out",
      "m.zarr"], "--concurrency: expected 1 without --ray (actors run on Ray), got 'auto'"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--ray", "--concurrency", "many",
      "--out", "m.zarr"], "--concurrency: expected a positive number of Ray actors or 'auto', got 'many'"),
    (["{folder}", "--model", "demo", "--method", "saliency", "--ray", "--concurrency", "0",
      "--out", "m.zarr"], "--concurrency: expected a positive number of Ray actors or 'auto', got '0'"),
    (["{empty}", "--model", "demo", "--method", "saliency", "--out", "m.zarr"],
     "FOLDER: no image files under"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    folder, _, _ = make_folder(tmp_path, 4)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    argv = [a.format(folder=folder, empty=tmp_path / "empty") for a in argv]
    assert main(["explain-dataset", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_target_labels_without_class_folders_is_refused(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "a.png")
    assert main(["explain-dataset", str(folder), "--model", "demo", "--method", "saliency",
                 "--target", "labels", "--out", str(tmp_path / "m.zarr")]) == 2
    assert "--target: 'labels' needs every image in a sub-folder named" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["explain-dataset", "report"])
def test_help_of_the_dataset_commands(command, capsys):
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: attrib {command}")
