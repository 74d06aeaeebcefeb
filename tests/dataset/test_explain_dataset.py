"""attrib.explain_dataset: the store holds what attrib.explain gives per batch; resume; refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import attrib
from attrib._dataset import _explainer
from support.stores import array_batches, failing_write, store_files

torch = pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

N, BATCH = 40, 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    scenes = attrib.demo_data(N, seed=7)
    return scenes.images.transpose(0, 3, 1, 2).copy(), scenes.labels


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return attrib.demo_model("torch")


def _batches(images: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return array_batches(images, labels, BATCH)



def test_store_holds_what_explain_gives_per_batch(model, data, tmp_path):
    images, labels = data
    store = attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                                   out=tmp_path / "maps.zarr", progress=False)
    assert len(store) == N and store.completed_batches == 3
    for i in range(0, N, BATCH):  # the reference: attrib.explain on each batch, by hand
        expected = attrib.explain(model, images[i:i + BATCH], method="gradcam", layer="conv4")
        np.testing.assert_array_equal(store["attribution"][i:i + BATCH], expected.attribution)
        np.testing.assert_array_equal(store["layer_attribution"][i:i + BATCH],
                                      expected.layer_attribution)
        np.testing.assert_array_equal(store["logits"][i:i + BATCH], expected.logits)
        np.testing.assert_array_equal(store["targets"][i:i + BATCH], expected.targets)
    np.testing.assert_array_equal(store["labels"][:], labels)
    np.testing.assert_array_equal(store["checksums"][:], _explainer.checksums(images))
    thumbs = store["thumbnails"][:]  # demo inputs are in [0, 1]: the thumbnail is the picture
    np.testing.assert_array_equal(thumbs, np.round(images.transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    np.testing.assert_array_equal(store["batches"][:], [[0, 16], [16, 16], [32, 8]])
    assert "inputs" not in store
    # chunked by whole batches (by default as many as fit 16 MiB: here all), compressed
    attribution = zarr.open_group(tmp_path / "maps.zarr", mode="r")["attribution"]
    assert attribution.chunks[1:] == (64, 64) and attribution.chunks[0] % BATCH == 0
    assert attribution.chunks[0] >= N
    one = attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                                 out=tmp_path / "one.zarr", progress=False, batches_per_chunk=1)
    assert one["attribution"].chunks == (BATCH, 64, 64)
    assert one["thumbnails"].chunks == (BATCH, 64, 64, 3)
    np.testing.assert_array_equal(one["attribution"][:], store["attribution"][:])
    # the run's settings as attributes
    assert [type(c).__name__ for c in attribution.compressors] == ["BloscCodec"]
    settings = store.settings
    assert settings["method"] == "gradcam" and settings["layer"] == "conv4"
    assert settings["backend"] == "torch" and settings["target"] is None
    assert settings["versions"]["attrib"] == attrib.__version__
    assert settings["versions"]["torch"] == torch.__version__.split("+")[0] or \
        torch.__version__.startswith(settings["versions"]["torch"])
    assert attrib.open_maps(tmp_path / "maps.zarr").settings == settings


def test_every_kind_of_batches_gives_the_same_store(model, data, tmp_path):
    images, labels = data
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)),
        batch_size=BATCH)
    sources = {
        "list": _batches(images, labels),
        "dataloader": loader,
        "generator": ((images[i:i + BATCH], labels[i:i + BATCH]) for i in range(0, N, BATCH)),
        "dicts": [{"image": x, "label": y} for x, y in _batches(images, labels)],
    }
    stores = {}
    for name, batches in sources.items():
        attrib.explain_dataset(model, batches, method="saliency", out=tmp_path / name, progress=False)
        stores[name] = store_files(tmp_path / name)
    assert stores["list"] == stores["dataloader"] == stores["generator"] == stores["dicts"]
    # arrays alone (no labels): the same maps, and no labels array
    no_labels = attrib.explain_dataset(model, [x for x, _ in _batches(images, labels)],
                                       method="saliency", out=tmp_path / "arrays", progress=False)
    assert "labels" not in no_labels
    np.testing.assert_array_equal(no_labels["attribution"][:],
                                  attrib.open_maps(tmp_path / "list")["attribution"][:])


def test_target_labels_explains_each_label(model, data, tmp_path):
    images, labels = data
    store = attrib.explain_dataset(model, _batches(images, labels), method="saliency",
                                   target="labels", out=tmp_path / "m.zarr", progress=False)
    np.testing.assert_array_equal(store["targets"][:], labels)
    expected = attrib.explain(model, images[:BATCH], method="saliency", target=labels[:BATCH])
    np.testing.assert_array_equal(store["attribution"][:BATCH], expected.attribution)
    with pytest.raises(attrib.AttribError, match="target: expected batches with labels"):
        attrib.explain_dataset(model, [images[:4]], method="saliency", target="labels",
                               out=tmp_path / "no_labels.zarr", progress=False)
    with pytest.raises(attrib.AttribError, match="target: expected None .*'labels'"):
        attrib.explain_dataset(model, [images[:4]], method="saliency", target=[0, 1, 2, 3],
                               out=tmp_path / "list_target.zarr", progress=False)


def test_a_second_call_recomputes_nothing_and_rewrites_nothing(model, data, tmp_path, monkeypatch):
    images, labels = data
    out = tmp_path / "maps.zarr"
    attrib.explain_dataset(model, _batches(images, labels), method="saliency", out=out, progress=False)
    before = store_files(out)
    calls = []
    original = _explainer.BatchExplainer.__call__
    monkeypatch.setattr(_explainer.BatchExplainer, "__call__",
                        lambda self, batch: calls.append(1) or original(self, batch))
    store = attrib.explain_dataset(model, _batches(images, labels), method="saliency", out=out,
                                   progress=False)
    assert calls == [] and len(store) == N
    assert store_files(out) == before


def test_a_store_of_other_settings_or_other_data_is_refused(model, data, tmp_path):
    images, labels = data
    out = tmp_path / "maps.zarr"
    attrib.explain_dataset(model, _batches(images, labels)[:1], method="saliency", out=out,
                           progress=False)
    with pytest.raises(attrib.AttribError, match=r"other settings: method='saliency' \(this run: "
                                                 r"'guided_backprop'\)"):
        attrib.explain_dataset(model, _batches(images, labels), method="guided_backprop", out=out,
                               progress=False)
    with pytest.raises(attrib.AttribError, match=r"target=None \(this run: 'labels'\)"):
        attrib.explain_dataset(model, _batches(images, labels), method="saliency", out=out,
                               target="labels", progress=False)
    with pytest.raises(attrib.AttribError, match="batches: expected the same data.*batch 0"):
        attrib.explain_dataset(model, _batches(images[::-1].copy(), labels), method="saliency",
                               out=out, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(attrib.AttribError, match="out: expected a new folder or an attrib Zarr store"):
        attrib.explain_dataset(model, [images[:4]], method="saliency", out=tmp_path / "notes",
                               progress=False)


def test_a_resume_with_other_weights_is_refused(model, data, tmp_path):
    images, labels = data
    out = tmp_path / "maps.zarr"
    attrib.explain_dataset(model, _batches(images, labels)[:1], method="saliency", out=out,
                           progress=False)
    other = attrib.demo_model("torch")
    with torch.no_grad():
        other.conv1.weight.mul_(1.01)  # the same architecture and settings, 1% other weights
    with pytest.raises(attrib.AttribError, match=r"model: expected the model \(weights\) that made "
                                                 r"the store.*batch 0 differ"):
        attrib.explain_dataset(other, _batches(images, labels), method="saliency", out=out,
                               progress=False)
    assert len(attrib.open_maps(out)) == BATCH  # nothing was written
    # the same weights in another copy of the model resume it
    store = attrib.explain_dataset(attrib.demo_model("torch"), _batches(images, labels),
                                   method="saliency", out=out, progress=False)
    assert len(store) == N


def test_an_exception_half_way_through_a_batch_then_resume_gives_the_uninterrupted_store(
        model, data, tmp_path, monkeypatch):
    images, labels = data
    reference = tmp_path / "reference.zarr"
    attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                           out=reference, progress=False, batches_per_chunk=1)
    # the disk fails on batch 1's thumbnails: its other arrays reach the disk, its marker does not
    out = tmp_path / "maps.zarr"
    with failing_write(monkeypatch, "thumbnails/c/1/0/0/0"):
        with pytest.raises(OSError, match="injected"):
            attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                                   out=out, progress=False, batches_per_chunk=1)
    assert (out / "attribution" / "c" / "1" / "0" / "0").is_file()  # batch 1 is half on disk
    assert not (out / "thumbnails" / "c" / "1" / "0" / "0" / "0").exists()
    half = attrib.open_maps(out)
    assert half.completed(0) == (0, 16) and half.completed(1) is None and len(half) == 16
    attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                           out=out, progress=False)  # a resumed store keeps its chunks
    assert store_files(out) == store_files(reference)


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import attrib
    images, labels = np.load(sys.argv[1])["images"], np.load(sys.argv[1])["labels"]
    kill_at = int(sys.argv[3])

    def batches():
        for k, i in enumerate(range(0, len(images), 16)):
            if k == kill_at:  # batch k-1 was just handed to the writer: kill mid-run
                os.kill(os.getpid(), signal.SIGKILL)
            yield images[i:i + 16], labels[i:i + 16]

    attrib.explain_dataset(attrib.demo_model("torch"), batches(), method="gradcam", layer="conv4",
                           out=sys.argv[2], target="labels", progress=False, batches_per_chunk=2)
""")


def test_a_process_killed_during_a_run_resumes_to_the_uninterrupted_store(model, data, tmp_path):
    images, labels = data
    arrays = tmp_path / "data.npz"
    np.savez(arrays, images=images, labels=labels)
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    out = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, str(script), str(arrays), str(out), "2"], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert 0 <= len(attrib.open_maps(out)) < N  # the run did not finish
    done = subprocess.run([sys.executable, str(script), str(arrays), str(out), "-1"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference.zarr"
    attrib.explain_dataset(model, _batches(images, labels), method="gradcam", layer="conv4",
                           target="labels", out=reference, progress=False, batches_per_chunk=2)
    assert store_files(out) == store_files(reference)


def test_progress_bar_counts_images_per_second(model, data, tmp_path, capsys):
    images, labels = data
    attrib.explain_dataset(model, _batches(images, labels), method="saliency",
                           out=tmp_path / "a.zarr")
    err = capsys.readouterr().err
    assert "40/40" in err and "img/s" in err
    attrib.explain_dataset(model, _batches(images, labels), method="saliency",
                           out=tmp_path / "b.zarr", progress=False)
    assert capsys.readouterr().err == ""


def test_import_attrib_imports_neither_zarr_nor_ray_nor_tqdm():
    code = ("import sys, attrib; attrib.explain_dataset; attrib.BatchExplainer; "
            "print(sorted(m for m in ('zarr', 'ray', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_batches_of_uneven_sizes_and_any_memory_order_are_stored_as_given(tmp_path):
    from attrib._dataset._store import MapStore

    rng = np.random.default_rng(0)
    sizes = [16, 5, 11, 8, 16, 3]  # chunks of 2 × 16 rows; batches straddle them
    store = MapStore.create_or_resume(tmp_path / "s.zarr", {"method": "by hand"}, batches_per_chunk=2)
    offset, maps, sums = 0, [], []
    for k, n in enumerate(sizes):
        batch_maps = np.asfortranarray(rng.normal(size=(n, 6, 7)).astype(np.float32))
        batch_sums = rng.integers(0, 2**32, size=n, dtype=np.uint32)
        maps.append(batch_maps.copy())
        sums.append(batch_sums.copy())
        store.add_batch(k, offset, {"attribution": batch_maps, "checksums": batch_sums})
        batch_maps[...] = 0  # the store keeps its own copy: the caller may reuse its arrays
        offset += n
    store.finish()
    reopened = attrib.open_maps(tmp_path / "s.zarr")
    assert len(reopened) == sum(sizes) and reopened["attribution"].chunks == (32, 6, 7)
    np.testing.assert_array_equal(reopened["attribution"][:], np.concatenate(maps))
    np.testing.assert_array_equal(reopened["checksums"][:], np.concatenate(sums))
    np.testing.assert_array_equal(reopened["batches"][:],
                                  np.stack([np.cumsum([0, *sizes[:-1]]), sizes], axis=1))


def test_a_failing_flush_never_masks_the_error_that_stopped_the_run(model, data, tmp_path, monkeypatch):
    from attrib._dataset._store import MapStore

    images, labels = data

    def batches():
        yield images[:BATCH], labels[:BATCH]
        raise KeyError("the loader lost its files")

    def flush(self):
        raise OSError("disk full")

    monkeypatch.setattr(MapStore, "flush", flush)
    with pytest.raises(KeyError, match="the loader lost its files") as raised:
        attrib.explain_dataset(model, batches(), method="saliency", out=tmp_path / "maps.zarr",
                               progress=False)
    assert any("OSError: disk full" in note for note in raised.value.__notes__)
    with pytest.raises(OSError, match="disk full"):  # with no other error, the flush's own is raised
        attrib.explain_dataset(model, _batches(images, labels), method="saliency",
                               out=tmp_path / "other.zarr", progress=False)
