"""A node lost mid-run on a two-node local cluster: does the Ray store still equal the one-process store?

Head node with no CPU, two worker nodes of one CPU each (``ray.cluster_utils.Cluster``);
48 demo scenes in batches of 4, each actor forward 0.25 s slower so the run is
mid-way when the driver writes batch 1; then the node running the actor is
removed and (with ``replace``) a new 1-CPU node joins, as an autoscaler would.
Prints whether the job finished, and which stored rows hold which input rows.

Found before the fix (ray 2.60, 7 runs with ``replace``): the job always
finished by itself (~11 s), but in 2 runs the store differed from the
one-process store (in one, rows 12-19 held other rows). The cause: attrib set
``preserve_order`` on the process-wide DataContext, but a dataset's run reads
its own copy (taken when the dataset was made), so batches came in order of
completion — after a retry or a rebuilt block, not the dataset's order.
Without ``replace`` the job waited forever (the restarted actor and the re-run
read tasks each need the one CPU left); now it stops with an AttribError once
the capacity has been lost for ``attrib.ray.LOST_GRACE_S`` seconds, and this
script then adds a node and calls again, which resumes the store.

Usage::

    python benchmarks/ray_node_loss.py replace|noreplace
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

import attrib
import attrib.ray
from attrib._dataset._store import MapStore


def slow_model(delay: float, record: str | None) -> Any:
    """The demo CNN, ``delay`` seconds slower per forward; an actor notes its node in ``record``."""
    model = attrib.demo_model("torch")
    if record and ray.get_runtime_context().get_actor_id() is not None:
        with open(os.path.join(record, str(os.getpid())), "w") as f:
            f.write(ray.get_runtime_context().get_node_id())
    model.register_forward_pre_hook(lambda m, a: time.sleep(delay))
    return model


def files(root: str) -> dict[str, bytes]:
    """Every file of a store, by its path inside it."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file()}


def main() -> None:
    replace = sys.argv[1] == "replace"
    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    print("up", time.time() - t0, ray.cluster_resources(), flush=True)
    scenes = attrib.demo_data(48, seed=2)
    images = scenes.images.transpose(0, 3, 1, 2).copy()
    tmp = tempfile.mkdtemp()
    record = os.path.join(tmp, "rec")
    os.mkdir(record)
    attrib.explain_dataset(slow_model(0, None), [images[i:i + 4] for i in range(0, 48, 4)],
                           method="saliency", out=tmp + "/one.zarr", progress=False)
    add = MapStore.add_batch
    done = []

    def hooked(self: MapStore, batch: int, offset: int, arrays: Any) -> None:
        add(self, batch, offset, arrays)
        if batch == 1 and not done:  # mid-run: remove the node that runs the actor
            done.append(1)
            with open(os.path.join(record, os.listdir(record)[0])) as f:
                nid = f.read()
            node = [n for n in cluster.worker_nodes if n.node_id == nid][0]
            print("removing", nid[:8], time.time() - t0, flush=True)
            cluster.remove_node(node)
            if replace:
                cluster.add_node(num_cpus=1)
            print("removed", time.time() - t0, flush=True)

    MapStore.add_batch = hooked  # type: ignore[method-assign]
    ds = ray.data.from_items([{"image": x} for x in images])
    explain = functools.partial(attrib.ray.explain_dataset, ds,
                                functools.partial(slow_model, 0.25, record), method="saliency",
                                out=tmp + "/ray.zarr", batch_size=4, progress=False)
    t = time.time()
    try:
        explain()
        print("finished", time.time() - t)
    except Exception as e:
        print("FAILED", type(e), str(e)[:2000], time.time() - t)
        print("written before the error", len(attrib.open_maps(tmp + "/ray.zarr")), flush=True)
        cluster.add_node(num_cpus=1)  # the capacity comes back: the same call resumes
        explain()
        print("resumed", time.time() - t)
    a, b = attrib.open_maps(tmp + "/ray.zarr"), attrib.open_maps(tmp + "/one.zarr")
    print("len", len(a), len(b), a["batches"][:].tolist(), b["batches"][:].tolist())
    for k in b.arrays():
        x, y = a[k][:], b[k][:]
        print(k, x.shape, y.shape, (x == y).all() if x.shape == y.shape else "shape")
    print("ck", (a["checksums"][:] == b["checksums"][:]).tolist())
    ca, cb = a["checksums"][:].tolist(), b["checksums"][:].tolist()
    print("where", [cb.index(c) if c in cb else None for c in ca])
    print("EQUAL", files(tmp + "/ray.zarr") == files(tmp + "/one.zarr"), os.listdir(record))
    ray.shutdown()
    cluster.shutdown()
    print("total", time.time() - t0)


if __name__ == "__main__":
    main()
