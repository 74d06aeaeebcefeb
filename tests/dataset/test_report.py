"""attrib report: the static gallery, loaded in a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attrib
from attrib._cli import main
from attrib._cli._demo import cam_mass_on_objects
from support.chromium import CHROMIUM
from support.chromium import chromium as _chromium
from support.chromium import console as _console

pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

N, PER_PAGE = 30, 12


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, attrib.MapStore, np.ndarray]:
    root = tmp_path_factory.mktemp("report")
    scenes = attrib.demo_data(N, seed=21)
    images = scenes.images.transpose(0, 3, 1, 2).copy()
    labels = scenes.labels.copy()
    labels[[3, 17, 22]] = (labels[[3, 17, 22]] + 1) % 4  # three mislabelled scenes: "wrong" rows
    batches = [(images[i:i + 8], labels[i:i + 8]) for i in range(0, N, 8)]
    store = attrib.explain_dataset(attrib.demo_model("torch"), batches, method="gradcam",
                                   layer="conv4", out=root / "maps.zarr", progress=False,
                                   class_names=list(scenes.class_names))
    # a per-sample metric, as attrib.evaluate would store it: Grad-CAM's mass on the object
    mass = cam_mass_on_objects(np.maximum(store["attribution"][:], 0), scenes.masks)
    group = zarr.open_group(root / "maps.zarr", mode="a")
    group.create_array("metrics/mass_on_object", data=mass)
    assert main(["report", str(root / "maps.zarr"), "--out", str(root / "report"),
                 "--per-page", str(PER_PAGE)]) == 0
    return root / "report", attrib.open_maps(root / "maps.zarr"), mass


def _rows(dom: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="row[^"]*" data-index="(\d+)"', dom)]


def test_report_writes_each_thumbnail_and_map_as_png(report):
    page, store, _ = report
    assert len(list((page / "img").glob("*.png"))) == N
    assert len(list((page / "map").glob("*.png"))) == N
    with Image.open(page / "img" / "000003.png") as picture:
        np.testing.assert_array_equal(np.asarray(picture), store["thumbnails"][3])
    with Image.open(page / "map" / "000003.png") as picture:
        heat = np.asarray(picture)
    assert heat.shape == (64, 64, 3) and not np.array_equal(heat, store["thumbnails"][3])
    html = (page / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and "<link" not in html  # nothing external


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_in_headless_chromium_loads_sorts_and_paginates(report, tmp_path):
    page, store, mass = report
    url = (page / "index.html").as_uri()
    logits = store["logits"][:].astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    confidence = np.round(probabilities.max(axis=1) / probabilities.sum(axis=1), 6)
    correct = logits.argmax(axis=1) == store["labels"][:]

    dom, stderr = _chromium(url, "--dump-dom")
    assert _console(stderr) == []
    assert _rows(dom) == list(range(PER_PAGE))  # first page, in sample order
    assert "page 1 of 3 (30 samples)" in dom

    dom, stderr = _chromium(url + "#sort=conf&order=asc", "--dump-dom")
    assert _console(stderr) == []
    by_confidence = sorted(range(N), key=lambda i: (confidence[i], i))
    assert _rows(dom) == by_confidence[:PER_PAGE] != list(range(PER_PAGE))

    dom, _ = _chromium(url + "#sort=correct&order=asc", "--dump-dom")
    by_verdict = sorted(range(N), key=lambda i: (correct[i], i))
    assert not correct.all() and _rows(dom) == by_verdict[:PER_PAGE] != list(range(PER_PAGE))
    assert dom.count('class="row wrong"') == (~correct).sum()

    dom, _ = _chromium(url + "#sort=correct&order=asc&page=3", "--dump-dom")
    assert _rows(dom) == by_verdict[2 * PER_PAGE:] and "page 3 of 3" in dom

    dom, _ = _chromium(url + "#sort=metric%3Amass_on_object&order=desc", "--dump-dom")
    by_mass = sorted(range(N), key=lambda i: (-np.round(mass[i], 6), i))
    assert _rows(dom) == by_mass[:PER_PAGE]

    shot = tmp_path / "report.png"
    _chromium(url + "#sort=conf&order=asc", f"--screenshot={shot}", "--window-size=1100,900")
    with Image.open(shot) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    jet_red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert jet_red.sum() > 50  # Grad-CAM overlays are on the screen, not just text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_console_check_catches_a_page_with_an_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined();</script></body></html>")
    _, stderr = _chromium(bad.as_uri(), "--dump-dom")
    assert any("notDefined is not defined" in line for line in _console(stderr))


def test_report_of_a_store_without_thumbnails_says_so(tmp_path, capsys):
    images = attrib.demo_data(4).images.transpose(0, 3, 1, 2).copy()
    attrib.explain_dataset(attrib.demo_model("torch"), [images], method="saliency",
                           out=tmp_path / "m.zarr", thumbnail=None, progress=False)
    assert main(["report", str(tmp_path / "m.zarr"), "--out", str(tmp_path / "r")]) == 2
    assert "thumbnail=None" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "r")]) == 2
