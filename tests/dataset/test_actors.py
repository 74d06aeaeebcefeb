"""plan_actors: Ray actors never take the CPU that Ray Data's read stage needs (no cluster needed)."""

from __future__ import annotations

import itertools

import pytest

import attrib
from attrib._dataset._actors import UPSTREAM_CPUS, ActorPlan, plan_actors


def _worst_placement_blocks(plan: ActorPlan, node_cpus: list[float]) -> bool:
    """Brute force: is there a placement of the actors that leaves no node a whole free CPU?"""
    for placement in itertools.product(range(len(node_cpus)), repeat=plan.size):
        used = [sum(plan.num_cpus for p in placement if p == j) for j in range(len(node_cpus))]
        if any(u > c + 1e-9 for u, c in zip(used, node_cpus)):
            continue  # Ray would not place them so
        if all(c - u < UPSTREAM_CPUS - 1e-9 for u, c in zip(used, node_cpus)):
            return True
    return False


@pytest.mark.parametrize("nodes", [[2.0], [1.0], [4.0], [1.0, 1.0], [0.0, 1.0, 1.0], [2.0, 1.0],
                                   [1.5, 1.5], [3.0, 0.5]])
@pytest.mark.parametrize("concurrency", [1, 2, 3, "auto"])
def test_no_placement_of_the_planned_actors_leaves_the_read_stage_without_a_cpu(nodes, concurrency):
    plan = plan_actors(concurrency, None, None, [{"CPU": c} for c in nodes])
    assert plan.size >= 1 and 0 <= plan.num_cpus <= 1 and plan.num_gpus is None
    assert not _worst_placement_blocks(plan, nodes)
    if concurrency != "auto":
        assert plan.size == concurrency


def test_one_local_machine_of_two_cpus():
    two = [{"CPU": 2.0}]
    assert plan_actors(1, None, None, two) == ActorPlan(1, 1.0)  # as before: one actor, one CPU
    assert plan_actors(2, None, None, two) == ActorPlan(2, 0.5)  # was 2 x 1 CPU: waited forever
    assert plan_actors(3, None, None, two) == ActorPlan(3, 0.3333)
    assert plan_actors("auto", None, None, two) == ActorPlan(2, 0.5)
    assert plan_actors("auto", None, None, [{"CPU": 16.0}]) == ActorPlan(16, 0.9375)
    # two 1-CPU nodes: two actors of any share can block both; auto takes one, 2 get no CPU share
    assert plan_actors("auto", None, None, [{"CPU": 1.0}, {"CPU": 1.0}]) == ActorPlan(1, 1.0)
    assert plan_actors(2, None, None, [{"CPU": 1.0}, {"CPU": 1.0}]) == ActorPlan(2, 0.0)
    assert plan_actors(1, None, None, [{"CPU": 1.0}]) == ActorPlan(1, 0.0)


def test_gpu_actors_keep_a_small_cpu_share():
    node = [{"CPU": 8.0, "GPU": 4.0}]
    assert plan_actors("auto", None, 1, node) == ActorPlan(4, 0.25, 1.0)
    assert plan_actors("auto", None, 0.5, node) == ActorPlan(8, 0.25, 0.5)
    assert plan_actors(2, None, 1, [{"CPU": 1.0, "GPU": 2.0}]) == ActorPlan(2, 0.0, 1.0)
    assert plan_actors(1, None, 1, node).remote_args() == {"num_cpus": 0.25, "num_gpus": 1.0}


def test_resources_the_cluster_cannot_give_are_refused_before_any_work():
    with pytest.raises(attrib.AttribError, match=r"num_cpus: expected a CPU share that leaves Ray "
                                                 r"Data's read stage one CPU .*at most 0.5 with 2"):
        plan_actors(2, 1, None, [{"CPU": 2.0}])
    assert plan_actors(2, 0.5, None, [{"CPU": 2.0}]) == ActorPlan(2, 0.5)
    with pytest.raises(attrib.AttribError, match=r"num_gpus: expected GPUs the cluster has .*"
                                                 r"concurrency to at most 2"):
        plan_actors(3, None, 1, [{"CPU": 8.0, "GPU": 2.0}])
    with pytest.raises(attrib.AttribError, match="Start the cluster with GPUs"):
        plan_actors("auto", None, 1, [{"CPU": 8.0}])
    for bad in (0, -1, 1.5, "all", True):
        with pytest.raises(attrib.AttribError, match="concurrency: expected a positive number"):
            plan_actors(bad, None, None, [{"CPU": 2.0}])
    with pytest.raises(attrib.AttribError, match="num_cpus: expected None or a number of at least 0"):
        plan_actors(1, -0.5, None, [{"CPU": 2.0}])
    with pytest.raises(attrib.AttribError, match="num_gpus: expected None or a positive number"):
        plan_actors(1, None, 0, [{"CPU": 2.0}])
