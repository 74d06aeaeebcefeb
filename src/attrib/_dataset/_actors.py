"""How many Ray Data actors, with what resources: a plan that never starves the stages before them.

Ray Data's read and repartition stages run as tasks that each ask for one
CPU. Actors that hold every CPU (``ray.init(num_cpus=2)`` and two actors of
one CPU each) leave them nowhere to run and the job waits forever, silently.
:func:`plan_actors` sizes the actors so that, however Ray places them on the
nodes, some node keeps one whole CPU free; it uses only the nodes' resources
(no ray import), so it is tested without a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import argument_error, shown

__all__ = ["ActorPlan", "plan_actors", "UPSTREAM_CPUS", "GPU_ACTOR_CPUS"]

#: CPUs one read / repartition task of Ray Data asks for.
UPSTREAM_CPUS = 1.0
#: Largest CPU share a GPU actor gets by default (its work runs on the GPU).
GPU_ACTOR_CPUS = 0.25
_PRECISION = 10_000  # Ray keeps fractional resources to 1e-4


@dataclass(frozen=True)
class ActorPlan:
    """``size`` actors of ``num_cpus`` CPUs (and ``num_gpus`` GPUs) each."""

    size: int
    num_cpus: float
    num_gpus: float | None = None

    def remote_args(self) -> dict[str, float]:
        """The resources as ``map_batches`` takes them."""
        return {"num_cpus": self.num_cpus, **({"num_gpus": self.num_gpus} if self.num_gpus else {})}


def _leaves_room(size: int, share: float, node_cpus: Sequence[float]) -> bool:
    """Whether ``size`` actors of ``share`` CPUs, placed anywhere, leave a node with a CPU free.

    Node ``j`` (``c`` CPUs) stops taking a task once it holds
    ``floor((c - 1) / share) + 1`` actors; only if the actors are fewer than
    the sum of these over the nodes is some node always left free.
    """
    if share == 0:
        return True
    blocking = sum(math.floor((c - UPSTREAM_CPUS) / share + 1e-9) + 1
                   for c in node_cpus if c >= UPSTREAM_CPUS)
    fits = sum(math.floor(c / share + 1e-9) for c in node_cpus)
    return size < blocking and size <= fits


def _share(budget: float, size: int, cap: float) -> float:
    """The CPUs each of ``size`` actors gets out of ``budget`` (at most ``cap``; Ray's precision)."""
    return max(0.0, math.floor(min(cap, budget / size) * _PRECISION) / _PRECISION)


def _check_number(name: str, value: Any, positive: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise argument_error(name, "None or a positive number" if positive else
                             "None or a number of at least 0", value)
    return float(value)


def plan_actors(concurrency: Any, num_cpus: Any, num_gpus: Any,
                nodes: Sequence[Mapping[str, float]]) -> ActorPlan:
    """The actors to run on a cluster whose alive nodes have the resources ``nodes``.

    Parameters
    ----------
    concurrency : int or "auto"
        Number of actors; ``"auto"``: one per CPU (one per ``num_gpus`` of
        GPU with ``num_gpus``), fewer if that would leave no CPU to read.
    num_cpus, num_gpus : float, optional
        Each actor's resources. ``num_cpus`` omitted: an equal share of all
        CPUs but one (at most 1; at most ``GPU_ACTOR_CPUS`` for GPU actors),
        or 0 (the actors share the CPUs with reading) where no share leaves
        a CPU free on some node.
    nodes : sequence of dicts
        Each alive node's resources, ``{"CPU": 2.0, "GPU": 1.0, ...}``.

    Raises
    ------
    AttribError
        Bad arguments, GPUs the cluster lacks, or a ``num_cpus`` that would
        leave Ray Data's read stage no CPU (the job would wait forever).
    """
    cpus = _check_number("num_cpus", num_cpus, positive=False)
    gpus = _check_number("num_gpus", num_gpus, positive=True)
    auto = concurrency == "auto"
    if not auto and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise argument_error("concurrency", "a positive number of actors, or 'auto'", concurrency)
    node_cpus = [float(node.get("CPU", 0.0)) for node in nodes]
    total_cpus = sum(node_cpus)
    if gpus is not None:
        node_gpus = [float(node.get("GPU", 0.0)) for node in nodes]
        slots = sum(math.floor(g / gpus + 1e-9) for g in node_gpus)
        if slots == 0 or (not auto and concurrency > slots):
            wanted = f"{concurrency} actor(s) of num_gpus={num_gpus}" if not auto else f"num_gpus={num_gpus}"
            raise argument_error("num_gpus", f"GPUs the cluster has (its nodes: {node_gpus})",
                                 shown(wanted), f"Set concurrency to at most {slots} or lower num_gpus."
                                 if slots else "Start the cluster with GPUs, or leave num_gpus unset.")
        size = slots if auto else concurrency
    else:
        size = max(1, math.floor(total_cpus)) if auto else concurrency
    cap = 1.0 if gpus is None else GPU_ACTOR_CPUS
    if cpus is not None:
        if not _leaves_room(size, cpus, node_cpus):
            room = _share(total_cpus - UPSTREAM_CPUS, size, 1.0)
            raise argument_error(
                "num_cpus", f"a CPU share that leaves Ray Data's read stage one CPU (the nodes have "
                            f"{node_cpus} CPUs)", shown(f"{concurrency} actor(s) of num_cpus={num_cpus}"),
                f"The job would wait forever. Leave num_cpus unset (attrib sizes it), or set it to "
                f"at most {room} with {size} actor(s), or use fewer actors.")
        return ActorPlan(size, cpus, gpus)
    while True:
        share = _share(total_cpus - UPSTREAM_CPUS, size, cap)
        if share > 0 and _leaves_room(size, share, node_cpus):
            return ActorPlan(size, share, gpus)
        if not auto or size == 1:
            return ActorPlan(size, 0.0, gpus)
        size -= 1
