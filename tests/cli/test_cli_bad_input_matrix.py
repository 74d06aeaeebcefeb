"""The bad-input matrix, command line: exit status 2 and one line naming the argument.

These add to the cases of ``test_cli.py::test_bad_input_exits_2_with_one_line``
(files, models, weights, backends); the demo model keeps them fast.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attrib._cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = {name: folder / f"{name}.png" for name in ("photo", "constant")}
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(paths["photo"])
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(paths["constant"])
    paths["empty"] = folder / "empty.png"
    paths["empty"].write_bytes(b"")
    paths["folder"] = folder
    return paths


# id -> (arguments after "explain IMAGE --model demo", image, argument named, regex)
CASES: dict[str, tuple[list[str], str, str, str]] = {
    "size 0": (["--size", "0"], "photo", "--size", r"at least 8 pixels, got 0"),
    "negative size": (["--size", "-3"], "photo", "--size", r"got -3"),
    "unknown normalization": (["--normalize", "zscore"], "photo", "argument --normalize",
                              r"invalid choice: 'zscore'"),
    "negative target": (["--target", "-1"], "photo", "target", r"\[0, 3\].*got -1"),
    "fractional target": (["--target", "1.5"], "photo", "--target", r"class index.*'1\.5'"),
    "two targets": (["--target", "1,2"], "photo", "--target", r"'1,2'"),
    "empty method list": (["--method", ""], "photo", "--method", r"method names"),
    "one unknown method in a list": (["--method", "saliency,gradcamm"], "photo", "method",
                                     r"got 'gradcamm'"),
    "non-spatial layer": (["--method", "gradcam", "--layer", "fc"], "photo", "layer",
                          r"4-D output.*'fc'"),
    "unknown layer in jax": (["--backend", "jax", "--method", "gradcam", "--layer", "conv_9"],
                             "photo", "layer", r"conv_9"),
    "a folder as image": ([], "folder", "image", r"existing image file.*directory"),
    "an empty image file": ([], "empty", "image", r"image file PIL can read"),
    "unknown option": (["--objective", "softmax"], "photo", "", r"unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(case: str, images: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    extra, image, argument, detail = CASES[case]
    argv = ["explain", str(images[image]), "--model", "demo", *extra, "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"attrib: error: {argument}"), lines[0]
    assert re.search(detail, lines[0]), lines[0]


def test_a_constant_image_gives_figures(images: dict[str, Path], tmp_path: Path) -> None:
    # no NaN anywhere on a constant image: the maps are zero or finite, the figure is written
    assert main(["explain", str(images["constant"]), "--model", "demo", "--out",
                 str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 5 and all(name.endswith(".png") for name in written)
