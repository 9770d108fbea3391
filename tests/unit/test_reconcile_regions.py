"""Where the operator runs a server when no placement engine is plugged in: sticky, then roomiest."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from smallfleet.control.facts import StaticFacts
from smallfleet.control.reconcile import RegionRequest, sticky_regions
from smallfleet.core.render import UNPLACED, ServerPlan, plan_for_model
from smallfleet.core.spec import parse_small_model
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def plan(example: str, **resources: Any) -> ServerPlan:
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / example).read_text()) if d]
    p = plan_for_model(parse_small_model(doc), Settings())
    if resources:
        p = dataclasses.replace(p, resources=dataclasses.replace(p.resources, **resources))
    return p


def node(name: str, region: str, product: str | None, gpus: int) -> dict[str, Any]:
    labels = {"topology.kubernetes.io/region": region}
    if product:
        labels["nvidia.com/gpu.product"] = product
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)} if gpus else {}},
    }


def pod(node_name: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": phase},
    }


NODES = [
    node("a10g-north", "eu-north-1", "NVIDIA-A10G", 4),
    node("a10g-west", "eu-west-1", "NVIDIA-A10G", 4),
    node("l4-west", "eu-west-1", "NVIDIA-L4", 4),
    node("cpu-west", "eu-west-1", None, 0),
]


def request(
    p: ServerPlan, pods: list[dict[str, Any]], deployments: tuple[dict[str, Any], ...] = ()
) -> RegionRequest:
    return RegionRequest(p, {}, deployments, StaticFacts(node_list=NODES, gpu_pod_list=pods))


@pytest.mark.parametrize(
    ("pods", "want"),
    [
        ([], {"eu-north-1": 4, "eu-west-1": 4}),
        ([pod("a10g-north", 3)], {"eu-north-1": 1, "eu-west-1": 4}),
        ([pod("a10g-north", 3, phase="Succeeded")], {"eu-north-1": 4, "eu-west-1": 4}),
        ([pod("l4-west", 4)], {"eu-north-1": 4, "eu-west-1": 4}),
    ],
)
def test_room_counts_only_fitting_nodes_and_live_pods(
    pods: list[dict[str, Any]], want: dict[str, int]
) -> None:
    roomiest = min(want, key=lambda r: (-want[r], r))
    assert sticky_regions(request(plan("minilm-embedder.yaml"), pods)) == {roomiest: 1}


def test_roomiest_allowed_region_wins_and_ties_go_by_name() -> None:
    p = plan("minilm-embedder.yaml")
    assert sticky_regions(request(p, [])) == {"eu-north-1": 1}
    assert sticky_regions(request(p, [pod("a10g-north", 2)])) == {"eu-west-1": 1}


def test_running_regions_stay() -> None:
    p = plan("minilm-embedder.yaml")
    running = [
        {
            "metadata": {"labels": {"serving.smallfleet.io/region": "eu-north-1"}},
            "spec": {"replicas": 3},
        }
    ]
    assert sticky_regions(request(p, [pod("a10g-north", 4)], tuple(running))) == {"eu-north-1": 3}


def test_cpu_servers_go_to_cpu_nodes() -> None:
    assert sticky_regions(request(plan("cpu-classifier.yaml"), [])) == {"eu-west-1": 1}


def test_no_fitting_node_leaves_it_unplaced_for_the_scheduler_to_explain() -> None:
    p = plan("minilm-embedder.yaml", gpu_product="NVIDIA-B200")
    assert sticky_regions(request(p, [])) == {UNPLACED: 1}


def test_replicas_stay_within_bounds() -> None:
    p = plan("minilm-embedder.yaml")
    p = dataclasses.replace(
        p, scaling=dataclasses.replace(p.scaling, min_replicas=2, max_replicas=3)
    )
    running = [
        {
            "metadata": {"labels": {"serving.smallfleet.io/region": "eu-west-1"}},
            "spec": {"replicas": 9},
        }
    ]
    assert sticky_regions(request(p, [], tuple(running))) == {"eu-west-1": 3}
