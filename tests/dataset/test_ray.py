"""attrib.ray.explain_dataset on a local Ray cluster writes the one-process run's store, bit for bit."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import attrib

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("torch")
pytest.importorskip("zarr")

# no warning from attrib's own modules (Ray Data's deprecations are filtered in pyproject.toml)
pytestmark = pytest.mark.filterwarnings("error:::attrib")


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
    # two methods: each actor explains a batch with both in one call (methods/NAME/ of the store)
    common = [str(folder), "--model", "demo", "--method", "saliency,gradcam", "--batch-size", "4",
              "--quiet"]
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "one.zarr")]) == 0
    assert main(["explain-dataset", *common, "--out", str(tmp_path / "ray.zarr"), "--ray",
                 "--concurrency", "auto"]) == 0  # 'auto' as the Python API takes it
    assert attrib.open_maps(tmp_path / "ray.zarr").methods == ["saliency", "gradcam"]
    assert _files(tmp_path / "ray.zarr") == _files(tmp_path / "one.zarr")


def _rows(images: np.ndarray, labels: np.ndarray) -> list[dict]:
    return [{"image": images[i], "label": int(labels[i])} for i in range(len(images))]


def _one_process(images, labels, out, **options):
    return attrib.explain_dataset(demo_model_factory(), [(images[i:i + 8], labels[i:i + 8])
                                                         for i in range(0, len(images), 8)],
                                  method="saliency", out=out, progress=False, **options)


def _within(seconds: float, call, *args, **kwargs):
    """``call(*args, **kwargs)`` in a thread; fail (rather than hang) if it takes over ``seconds``."""
    result: dict = {}

    def run():
        try:
            result["value"] = call(*args, **kwargs)
        except BaseException as error:  # handed to the test's thread
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no result in {seconds} s: the job hangs")
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("concurrency", [2, 3])
def test_as_many_actors_as_cpus_or_more_finish_instead_of_waiting_forever(local_ray, tmp_path,
                                                                          concurrency):
    # ray.init(num_cpus=2): two actors of one CPU each left the read stage none, and the job
    # waited forever ("Active & requested resources: 3/2 CPU"); now the actors share the CPUs.
    # concurrency="auto" plans the same two actors of 0.5 CPU here (test_actors.py asserts the
    # plans equal); it runs end to end in test_cli_ray_writes_the_one_process_store
    scenes = attrib.demo_data(24, seed=3)
    images, labels = scenes.images.transpose(0, 3, 1, 2).copy(), scenes.labels
    _one_process(images, labels, tmp_path / "one.zarr")
    ds = ray.data.from_items(_rows(images, labels))
    _within(60, attrib.ray.explain_dataset, ds, demo_model_factory, method="saliency", batch_size=8,
            out=tmp_path / "ray.zarr", concurrency=concurrency, progress=False)
    assert _files(tmp_path / "ray.zarr") == _files(tmp_path / "one.zarr")


def test_actors_that_would_take_every_cpu_are_refused_before_any_work(local_ray, tmp_path):
    ds = ray.data.from_items(_rows(*_scenes(8)))
    with pytest.raises(attrib.AttribError, match=r"num_cpus: expected a CPU share that leaves Ray "
                                                 r"Data's read stage one CPU.*wait forever"):
        _within(60, attrib.ray.explain_dataset, ds, demo_model_factory, method="saliency",
                out=tmp_path / "ray.zarr", concurrency=2, num_cpus=1, progress=False)
    assert not (tmp_path / "ray.zarr").exists()
    with pytest.raises(attrib.AttribError, match="num_gpus: expected GPUs the cluster has"):
        attrib.ray.explain_dataset(ds, demo_model_factory, method="saliency",
                                   out=tmp_path / "ray.zarr", num_gpus=1, progress=False)


def _scenes(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    scenes = attrib.demo_data(n, seed=seed)
    return scenes.images.transpose(0, 3, 1, 2).copy(), scenes.labels


def _other_weights():
    import torch

    model = attrib.demo_model("torch")
    with torch.no_grad():
        model.fc.weight.mul_(1.5)  # the same architecture, other weights
    return model


def test_a_resumed_run_checks_the_data_and_the_weights_then_finishes_the_store(local_ray, tmp_path):
    images, labels = _scenes(24)
    _one_process(images, labels, tmp_path / "one.zarr")
    partial = tmp_path / "ray.zarr"
    _one_process(images[:16], labels[:16], partial)  # two of the three batches
    ds = ray.data.from_items(_rows(images, labels))
    with pytest.raises(attrib.AttribError, match=r"model: expected the model \(weights\) that made "
                                                 r"the store.*logits on batch 0 differ"):
        attrib.ray.explain_dataset(ds, _other_weights, method="saliency", batch_size=8, out=partial,
                                   progress=False)
    shuffled = ray.data.from_items(_rows(images[::-1].copy(), labels[::-1].copy()))
    with pytest.raises(attrib.AttribError, match="other data in batch 0"):
        attrib.ray.explain_dataset(shuffled, demo_model_factory, method="saliency", batch_size=8,
                                   out=partial, progress=False)
    attrib.ray.explain_dataset(ds, demo_model_factory, method="saliency", batch_size=8, out=partial,
                               progress=False)
    assert _files(partial) == _files(tmp_path / "one.zarr")


class _Boom(RuntimeError):
    pass


def test_a_failing_flush_never_masks_the_error_that_stopped_the_run(local_ray, tmp_path, monkeypatch):
    from attrib._dataset._store import MapStore

    def add_batch(self, batch, offset, arrays):
        raise _Boom(f"batch {batch} could not be kept")

    def flush(self):
        raise OSError("disk full")

    monkeypatch.setattr(MapStore, "add_batch", add_batch)
    monkeypatch.setattr(MapStore, "flush", flush)
    ds = ray.data.from_items(_rows(*_scenes(8)))
    with pytest.raises(_Boom, match="batch 0 could not be kept") as raised:
        attrib.ray.explain_dataset(ds, demo_model_factory, method="saliency", batch_size=8,
                                   out=tmp_path / "ray.zarr", progress=False)
    assert any("OSError: disk full" in note for note in raised.value.__notes__)


def recorded_slow_model(delay: float, record: str):
    """The demo model, each forward ``delay`` s slower; an actor writes its pid into ``record``."""
    model = attrib.demo_model("torch")
    if ray.get_runtime_context().get_actor_id() is not None:
        Path(record, str(os.getpid())).write_text(ray.get_runtime_context().get_node_id())
    model.register_forward_pre_hook(lambda module, args: time.sleep(delay))
    return model


def test_an_actor_killed_mid_run_is_restarted_and_the_store_loses_nothing(local_ray, tmp_path,
                                                                          monkeypatch):
    from attrib._dataset._store import MapStore

    images, labels = _scenes(48)
    one = tmp_path / "one.zarr"
    attrib.explain_dataset(demo_model_factory(), [images[i:i + 4] for i in range(0, 48, 4)],
                           method="saliency", out=one, progress=False)
    record = tmp_path / "actors"
    record.mkdir()
    add_batch, killed = MapStore.add_batch, []

    def add_then_kill(self, batch, offset, arrays):  # the driver writes batch 1: kill the actor
        add_batch(self, batch, offset, arrays)
        if batch == 1 and not killed:
            killed.append(int(next(record.iterdir()).name))
            os.kill(killed[0], signal.SIGKILL)

    monkeypatch.setattr(MapStore, "add_batch", add_then_kill)
    ds = ray.data.from_items([{"image": x} for x in images])
    _within(60, attrib.ray.explain_dataset, ds,
            functools.partial(recorded_slow_model, 0.1, str(record)), method="saliency",
            batch_size=4, out=tmp_path / "ray.zarr", progress=False)
    assert killed and len(list(record.iterdir())) == 2  # the actor was killed, and restarted
    assert _files(tmp_path / "ray.zarr") == _files(one)


def first_sample_slow_model(delay: float, first: float):
    """The demo model, ``delay`` s slower on any batch that starts with the dataset's first sample."""
    model = attrib.demo_model("torch")

    def hook(module, args):
        if float(args[0].reshape(-1)[0]) == first:
            time.sleep(delay)

    model.register_forward_pre_hook(hook)
    return model


def test_batches_finished_out_of_order_are_written_at_their_own_rows(local_ray, tmp_path):
    # two actors; batch 0 takes 3 s longer, so the other actor's batches finish before it. Ray
    # Data keeps the dataset's order only with preserve_order on the dataset's own DataContext (a
    # copy taken when the dataset was made); attrib set the process-wide one, which the run never
    # read, and wrote later batches' maps at rows 0-3 (as after a lost node's blocks were rebuilt)
    images, labels = _scenes(48, seed=8)
    assert len({float(x.reshape(-1)[0]) for x in images[::4]}) == 12  # only batch 0 is slowed
    one = tmp_path / "one.zarr"
    attrib.explain_dataset(demo_model_factory(), [(images[i:i + 4], labels[i:i + 4])
                                                  for i in range(0, 48, 4)],
                           method="saliency", out=one, progress=False)
    ds = ray.data.from_items(_rows(images, labels))
    keep = ds.context.execution_options.preserve_order
    _within(60, attrib.ray.explain_dataset, ds,
            functools.partial(first_sample_slow_model, 3.0, float(images[0].reshape(-1)[0])),
            method="saliency", batch_size=4, out=tmp_path / "ray.zarr", concurrency=2, progress=False)
    assert _files(tmp_path / "ray.zarr") == _files(one)
    assert ds.context.execution_options.preserve_order == keep  # the user's dataset as found


def test_capacity_lost_for_good_stops_with_a_clear_error_and_the_same_call_resumes(
        local_ray, tmp_path, monkeypatch):
    # Ray Data waits forever when a node is lost and none replaces it (benchmarks/ray_node_loss.py
    # on a two-node cluster); here the alive nodes are made to lose a CPU once batch 1 is written
    import attrib.ray as attrib_ray
    from attrib._dataset._store import MapStore

    images, labels = _scenes(48, seed=9)
    one = tmp_path / "one.zarr"
    attrib.explain_dataset(demo_model_factory(), [images[i:i + 4] for i in range(0, 48, 4)],
                           method="saliency", out=one, progress=False)
    alive, add_batch, lost = attrib_ray._alive_nodes, MapStore.add_batch, []

    def add_then_lose(self, batch, offset, arrays):
        add_batch(self, batch, offset, arrays)
        if batch == 1:
            lost.append(batch)

    def nodes():  # one CPU less once batch 1 is in: one actor of 1 CPU leaves none to read
        return [{**node, "CPU": node["CPU"] - 1} for node in alive()] if lost else alive()

    monkeypatch.setattr(MapStore, "add_batch", add_then_lose)
    monkeypatch.setattr(attrib_ray, "_alive_nodes", nodes)
    monkeypatch.setattr(attrib_ray, "STALL_CHECK_S", 0.1)
    monkeypatch.setattr(attrib_ray, "LOST_GRACE_S", 0.3)
    ds = ray.data.from_items([{"image": x} for x in images])
    out = tmp_path / "ray.zarr"
    slow = functools.partial(recorded_slow_model, 0.6, str(tmp_path))
    with pytest.raises(attrib.AttribError, match=r"ds: expected a cluster that keeps the resources "
                                                 r".*nodes lost mid-run: 1 alive node\(s\) with 1 CPUs "
                                                 r"cannot run 1 actor\(s\) of num_cpus=1.*resume"):
        _within(60, attrib.ray.explain_dataset, ds, slow, method="saliency", batch_size=4, out=out,
                progress=False)
    written = len(attrib.open_maps(out))
    assert 8 <= written < 48  # the batches before the stop are kept
    monkeypatch.undo()
    _within(60, attrib.ray.explain_dataset, ds, demo_model_factory, method="saliency", batch_size=4,
            out=out, progress=False)
    assert _files(out) == _files(one)


@ray.remote(num_cpus=1.5)
class _Hog:
    """Another job's actor that holds 1.5 of the cluster's 2 CPUs."""

    def ready(self) -> bool:
        return True


def test_capacity_lost_before_any_batch_stops_ray_data_too_and_the_same_call_resumes(
        local_ray, tmp_path, monkeypatch):
    # No batch ever comes out: the hog leaves neither the read stage nor attrib's actor a CPU,
    # and the watchdog is told the CPUs are gone. Ray Data keeps its executor on the dataset only
    # once a batch is out; the stalled execution must be stopped anyway (not left waiting, to
    # take the CPUs back from the resumed run once they are free)
    import attrib.ray as attrib_ray

    images, labels = _scenes(16, seed=12)
    one = tmp_path / "one.zarr"
    _one_process(images, labels, one)
    hog = _Hog.remote()
    ray.get(hog.ready.remote())
    alive, planned = attrib_ray._alive_nodes, []

    def nodes():  # the plan sees the whole cluster; every later check sees the hog's CPUs gone
        seen = alive()
        if planned:
            return [{**node, "CPU": node["CPU"] - 1.5} for node in seen]
        planned.append(seen)
        return seen

    monkeypatch.setattr(attrib_ray, "_alive_nodes", nodes)
    monkeypatch.setattr(attrib_ray, "STALL_CHECK_S", 0.1)
    monkeypatch.setattr(attrib_ray, "LOST_GRACE_S", 0.3)
    ds = ray.data.from_items(_rows(images, labels))
    out = tmp_path / "ray.zarr"
    with pytest.raises(attrib.AttribError, match=r"ds: expected a cluster that keeps the resources "
                                                 r".*cannot run 1 actor\(s\) of num_cpus=1.*resume"):
        _within(60, attrib.ray.explain_dataset, ds, demo_model_factory, method="saliency",
                batch_size=8, out=out, progress=False)
    assert len(attrib.open_maps(out)) == 0
    pulling = [t for t in threading.enumerate() if t.name == "attrib.ray batches" and t.is_alive()]
    assert not pulling  # Ray Data's execution was stopped, not left waiting for the CPUs
    monkeypatch.undo()
    ray.kill(hog)
    _within(60, attrib.ray.explain_dataset, ds, demo_model_factory, method="saliency", batch_size=8,
            out=out, progress=False)
    assert _files(out) == _files(one)
