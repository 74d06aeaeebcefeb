"""explain_dataset(method=[...]): one call per batch, every method's maps in one store, each
bit-equal to the method's own store; resume, refusal and the report over such a store."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attrib
from support.chromium import CHROMIUM, chromium, console
from support.stores import array_batches, failing_write, store_files

torch = pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

N, BATCH = 24, 8
METHODS = ["saliency", "guided_backprop", "gradcam", "guided_gradcam"]
SHARED = ["targets", "logits", "labels", "thumbnails", "checksums", "batches"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """float32 sums in one order on every code path (two threads differ by ~1e-8 between paths)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    scenes = attrib.demo_data(N, seed=9)
    return scenes.images.transpose(0, 3, 1, 2).copy(), scenes.labels, list(scenes.class_names)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return attrib.demo_model("torch")


def _batches(images: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return array_batches(images, labels, BATCH)


def _forwards(model: torch.nn.Module) -> tuple[list[int], object]:
    calls: list[int] = []
    return calls, model.register_forward_hook(lambda *_: calls.append(1))


@pytest.fixture(scope="module")
def stores(model, data, tmp_path_factory) -> tuple[Path, attrib.MapStore, dict[str, attrib.MapStore],
                                                   int, int]:
    """The store of the four methods in one run, each method's own store, and the forward passes."""
    images, labels, names = data
    root = tmp_path_factory.mktemp("several")
    calls, hook = _forwards(model)
    try:
        several = attrib.explain_dataset(model, _batches(images, labels), method=METHODS,
                                         layer="conv4", target="labels", out=root / "all.zarr",
                                         class_names=names, progress=False)
        together = len(calls)
        calls.clear()
        alone = {m: attrib.explain_dataset(model, _batches(images, labels), method=m,
                                           target="labels", out=root / f"{m}.zarr", progress=False,
                                           class_names=names,
                                           **({"layer": "conv4"} if "gradcam" in m else {}))
                 for m in METHODS}
        separately = len(calls)
    finally:
        hook.remove()
    return root, several, alone, together, separately


def test_every_methods_maps_equal_its_own_store_bit_for_bit(stores):
    root, several, alone, together, separately = stores
    assert several.methods == METHODS and several.several and len(several) == N
    for method, own in alone.items():
        assert not own.several and own.methods == [method]
        maps = several.maps(method)
        assert sorted(maps) == sorted(own.maps())  # layer maps for the Grad-CAMs only
        for name, array in maps.items():
            assert array.dtype == own[name].dtype
            np.testing.assert_array_equal(array[:], own[name][:], err_msg=f"{method} {name}")
            assert array.chunks[0] % BATCH == 0  # whole batches (fewer: the chunk holds 4 methods)
        for name in SHARED:  # kept once, the same as in every method's own store
            np.testing.assert_array_equal(several[name][:], own[name][:], err_msg=name)
    # the layout: one group per method, the batch's arrays once
    assert several.arrays() == sorted(
        ["checksums", "labels", "logits", "targets", "thumbnails",
         *(f"methods/{m}/attribution" for m in METHODS),
         "methods/gradcam/layer_attribution", "methods/guided_gradcam/layer_attribution"])
    settings = several.settings
    assert settings["format"] == 2 and settings["method"] == METHODS and settings["layer"] == "conv4"
    assert alone["gradcam"].settings["format"] == 1 and alone["gradcam"].settings["method"] == "gradcam"
    reopened = attrib.open_maps(root / "all.zarr")
    np.testing.assert_array_equal(reopened["methods/gradcam/attribution"][:],
                                  alone["gradcam"]["attribution"][:])
    # one forward pass per batch for the four methods (one backward pass per rule)
    assert together == N // BATCH
    assert separately == len(METHODS) * N // BATCH


def test_reading_a_store_of_several_methods(stores):
    _, several, alone, _, _ = stores
    with pytest.raises(attrib.AttribError, match=r"name: expected an array of the store; its maps are "
                                                 r"per method.*store.maps\('saliency'\)"):
        several["attribution"]
    with pytest.raises(attrib.AttribError, match=r"method: expected one of the store's methods.*"
                                                 r"Did you mean 'gradcam'"):
        several.maps("gradcamm")
    with pytest.raises(attrib.AttribError, match=r"method: expected one of the store's methods"):
        several.maps()
    # a store of one method reads as before, and through maps() too
    own = alone["gradcam"]
    assert own.maps().keys() == own.maps("gradcam").keys() == {"attribution", "layer_attribution"}
    assert own.arrays() == ["attribution", "checksums", "labels", "layer_attribution", "logits",
                            "targets", "thumbnails"]


def test_resume_after_an_interruption_with_several_methods(model, data, tmp_path, monkeypatch):
    images, labels, _ = data
    methods = ["gradcam", "integrated_gradients", "saliency"]
    options = {"gradcam": {"layer": "conv3"}, "integrated_gradients": {"steps": 3}}
    run = dict(method=methods, options=options, layer="conv4", progress=False, batches_per_chunk=1)
    reference = tmp_path / "reference.zarr"
    attrib.explain_dataset(model, _batches(images, labels), out=reference, **run)
    own = attrib.explain(model, images[:BATCH], method="gradcam", layer="conv3")  # its own layer
    np.testing.assert_array_equal(attrib.open_maps(reference).maps("gradcam")["attribution"][:BATCH],
                                  own.attribution)
    # the disk fails on batch 1 of the second method's maps: the first method's reach the disk
    out = tmp_path / "maps.zarr"
    with failing_write(monkeypatch, "methods/integrated_gradients/attribution/c/1/0/0/0"):
        with pytest.raises(OSError, match="injected"):
            attrib.explain_dataset(model, _batches(images, labels), out=out, **run)
    assert (out / "methods" / "gradcam" / "attribution" / "c" / "1" / "0" / "0").is_file()
    half = attrib.open_maps(out)
    assert half.completed(0) == (0, BATCH) and half.completed(1) is None and len(half) == BATCH
    # another list of methods, or one of them alone, is refused before any work
    for other in (["gradcam", "saliency"], ["saliency", "gradcam", "integrated_gradients"]):
        with pytest.raises(attrib.AttribError, match=r"out: expected a store made with this run's "
                                                     r"settings.*method=\['gradcam', "):
            attrib.explain_dataset(model, _batches(images, labels), out=out,
                                   **{**run, "method": other,
                                      "options": {k: v for k, v in options.items() if k in other}})
    with pytest.raises(attrib.AttribError, match=r"format=2 \(this run: 1\).*method=\['gradcam'"):
        attrib.explain_dataset(model, _batches(images, labels), out=out, method="saliency",
                               progress=False)
    # other weights: refused (the logits of the first stored batch differ)
    other = attrib.demo_model("torch")
    with torch.no_grad():
        other.conv1.weight.mul_(1.01)
    with pytest.raises(attrib.AttribError, match=r"model: expected the model \(weights\)"):
        attrib.explain_dataset(other, _batches(images, labels), out=out, **run)
    attrib.explain_dataset(model, _batches(images, labels), out=out, **run)
    assert store_files(out) == store_files(reference)


def test_report_shows_every_method_side_by_side(stores, tmp_path):
    from attrib._cli import main

    root, several, alone, _, _ = stores
    assert main(["report", str(root / "all.zarr"), "--out", str(tmp_path / "all")]) == 0
    assert main(["report", str(root / "gradcam.zarr"), "--out", str(tmp_path / "one")]) == 0
    page = (tmp_path / "all" / "index.html").read_text()
    assert re.search(r"<th>image</th>" + "".join(f"<th>{m}</th>" for m in METHODS) + r"<th>predicted",
                     page)
    assert "<th>map</th>" not in page and "saliency, guided_backprop, gradcam, guided_gradcam" in page
    for method in METHODS:  # one picture per sample and method
        assert len(list((tmp_path / "all" / "map" / method).glob("*.png"))) == N
    # Grad-CAM's column is the gallery of the Grad-CAM store, pixel for pixel
    for i in (0, 13):
        with Image.open(tmp_path / "all" / "map" / "gradcam" / f"{i:06d}.png") as a, \
                Image.open(tmp_path / "one" / "map" / f"{i:06d}.png") as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with Image.open(tmp_path / "all" / "map" / "saliency" / "000000.png") as a, \
            Image.open(tmp_path / "all" / "map" / "gradcam" / "000000.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))
    single = (tmp_path / "one" / "index.html").read_text()
    assert "<th>map</th>" in single and '"methods"' not in single
    if CHROMIUM is not None:  # the page's script puts one map per method in each row
        dom, stderr = chromium((tmp_path / "all" / "index.html").as_uri(), "--dump-dom")
        assert console(stderr) == []
        for method in METHODS:
            cells = re.findall(rf'src="map/{method}/(\d+)\.png"', dom)
            assert cells == [f"{i:06d}" for i in range(min(N, 50))], method
