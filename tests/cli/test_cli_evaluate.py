"""``attrib evaluate``: tables on stdout, figures in --out, a progress bar, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrib._cli import main

pytest.importorskip("torch")


def test_evaluate_demo_prints_tables_and_writes_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    status = main(["evaluate", "--model", "demo", "--method", "gradcam,guided_backprop",
                   "-n", "4", "--steps", "4", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    for title in ("cascading model randomisation", "data randomisation", "pointing hit rate",
                  "deletion AUC"):
        assert title in captured.out
    # one row per method and the random-map reference in the localisation table
    for row in ("gradcam", "guided_backprop", "random map"):
        assert any(line.startswith(row) for line in captured.out.splitlines())
    names = ["model_randomization.png", "data_randomization.png", "deletion_insertion.png"]
    for name in names:
        assert (out / name).stat().st_size > 1000
    assert "randomising layers" in captured.err  # the tqdm bar
    assert "mean ± std over 5 seeds" in captured.out  # --repeats 5 by default


def test_evaluate_efficientnet_randomises_block_by_block_on_the_photographs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("skimage")
    import numpy as np

    from attrib import evaluate
    from attrib.models import efficientnet_lite0, photographs

    out = tmp_path / "eval"
    status = main(["evaluate", "--model", "efficientnet_lite0", "--method", "saliency", "-n", "2",
                   "--repeats", "1", "--seed", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "EfficientNet-Lite0, ImageNet on 2 photographs (torch)" in captured.out
    assert (out / "model_randomization.png").stat().st_size > 1000
    # one step per block, from the logits down to the stem, and the numbers the API gives
    net = efficientnet_lite0("torch")
    result = evaluate.model_randomization(
        net.model, net.preprocess(list(photographs().values())[:2]), method="saliency",
        layers=net.blocks(), seed=3)
    assert result.steps == tuple(net.blocks())[::-1] and result.steps[-1] == "stem"
    row = next(line.split() for line in captured.out.splitlines()
               if line.split()[:2] == ["saliency", "spearman_abs"])
    np.testing.assert_allclose([float(v) for v in row[2:]],
                               result.scores["saliency"]["spearman_abs"], atol=1e-3)


@pytest.mark.parametrize("argv, words", [
    (["--model", "torchvision:resnet18"], "masks"),
    (["--method", "nope"], "nope"),
    (["-n", "0"], "-n"),
    (["--repeats", "0"], "--repeats"),
])
def test_evaluate_bad_input_exits_2(argv: list[str], words: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attrib: error:") and words in err and len(err.splitlines()) == 1
