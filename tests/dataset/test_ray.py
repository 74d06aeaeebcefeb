"""attrib.ray.explain_dataset on a local Ray cluster writes the one-process run's store, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import attrib

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("torch")
pytest.importorskip("zarr")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def demo_model_factory():
    return attrib.demo_model("torch")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_store_equals_the_one_process_store_bit_for_bit_and_resumes(local_ray, tmp_path):
    scenes = attrib.demo_data(40, seed=11)
    images, labels = scenes.images.transpose(0, 3, 1, 2).copy(), scenes.labels
    one = tmp_path / "one.zarr"
    attrib.explain_dataset(demo_model_factory(), [(images[i:i + 16], labels[i:i + 16])
                                                  for i in range(0, 40, 16)],
                           method="gradcam", layer="conv4", target="labels", out=one, progress=False)
    # blocks of 17 and 23 rows, not the batches of 16 (unaligned, Ray would hand an actor a batch
    # of one sample, which torch computes with other kernels): the actors must get 16, 16, 8
    rows = [{"picture": images[i], "class": int(labels[i])} for i in range(40)]
    ds = ray.data.from_items(rows[:17], override_num_blocks=1).union(
        ray.data.from_items(rows[17:], override_num_blocks=1))
    distributed = tmp_path / "ray.zarr"
    store = attrib.ray.explain_dataset(ds, demo_model_factory, method="gradcam", layer="conv4",
                                       target="labels", out=distributed, batch_size=16,
                                       image_column="picture", label_column="class", progress=False)
    assert len(store) == 40
    assert _files(distributed) == _files(one)
    # a second run over the complete store computes nothing (the dataset is empty after the split)
    # and leaves every byte as it was
    attrib.ray.explain_dataset(ds, demo_model_factory, method="gradcam", layer="conv4",
                               target="labels", out=distributed, batch_size=16,
                               image_column="picture", label_column="class", progress=False)
    assert _files(distributed) == _files(one)
    with pytest.raises(attrib.AttribError, match="other settings"):
        attrib.ray.explain_dataset(ds, demo_model_factory, method="saliency", out=distributed,
                                   image_column="picture", label_column="class", progress=False)
    np.testing.assert_array_equal(store["labels"][:], labels)
    with pytest.raises(attrib.AttribError, match="label_column: expected a column of the dataset"):
        attrib.ray.explain_dataset(ds, demo_model_factory, method="saliency", target="labels",
                                   out=tmp_path / "other.zarr", image_column="picture")


def test_cli_ray_writes_the_one_process_store(local_ray, tmp_path):
    from attrib._cli import main
    from support.image_folders import make_folder

    folder, _, _ = make_folder(tmp_path, 6)
    common = [str(folder), "--model", "demo", "--method", "saliency", "--batch-size", "4", "--quiet"]
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "one.zarr")]) == 0
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "ray.zarr"), "--ray"]) == 0
    assert _files(tmp_path / "ray.zarr") == _files(tmp_path / "one.zarr")
