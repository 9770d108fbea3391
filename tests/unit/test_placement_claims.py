"""Claims: GPUs promised by a decision count as taken until the model's pods bind.

Decisions made at the same moment see the same free GPUs; without claims the
later models crowd into the room the first one took.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_placement_runtime import NOW, SETTINGS, node, plan, reading

from smallfleet.control import placement as hp
from smallfleet.control.facts import StaticFacts
from smallfleet.control.reconcile import RegionRequest
from smallfleet.core.placement import Claim, with_claims
from smallfleet.core.placement.evaluate import Signals
from smallfleet.core.placement.policies import NodeCapacity
from smallfleet.providers import default_region_table


def cap(name: str, region: str, free: int, product: str | None = "NVIDIA-A10G") -> NodeCapacity:
    return NodeCapacity(name, region, product, 4, 4 - free, cpu_only=product is None)


CAPACITY = [
    cap("north-a", "eu-north-1", 4),
    cap("north-b", "eu-north-1", 2),
    cap("north-l4", "eu-north-1", 4, "NVIDIA-L4"),
    cap("west-a", "eu-west-1", 4),
]


def free(capacity: list[NodeCapacity]) -> dict[str, int]:
    return {n.name: n.free_gpus for n in capacity}


@pytest.mark.parametrize(
    ("claims", "want"),
    [
        ([], {"north-a": 4, "north-b": 2, "north-l4": 4, "west-a": 4}),
        # Each replica goes to the fitting node with the most free GPUs, as the scheduler spreads.
        ([Claim("eu-north-1", "NVIDIA-A10G", 1, 3)], {"north-a": 1, "north-b": 2, "north-l4": 4, "west-a": 4}),
        ([Claim("eu-north-1", "NVIDIA-A10G", 1, 4)], {"north-a": 1, "north-b": 1, "north-l4": 4, "west-a": 4}),
        # The product must match; another region is untouched.
        ([Claim("eu-north-1", "NVIDIA-L4", 2, 1)], {"north-a": 4, "north-b": 2, "north-l4": 2, "west-a": 4}),
        # No product named: any GPU node of the region (the most free first, ties by name).
        ([Claim("eu-north-1", None, 4, 1)], {"north-a": 0, "north-b": 2, "north-l4": 4, "west-a": 4}),
        # What fits nowhere takes nothing: the scheduler will tell that model.
        ([Claim("eu-north-1", "NVIDIA-A10G", 8, 1)], {"north-a": 4, "north-b": 2, "north-l4": 4, "west-a": 4}),
        ([Claim("eu-north-1", "NVIDIA-A10G", 2, 5)], {"north-a": 0, "north-b": 0, "north-l4": 4, "west-a": 4}),
    ],
)  # fmt: skip
def test_with_claims(claims: list[Claim], want: dict[str, int]) -> None:
    assert free(with_claims(CAPACITY, claims)) == want


@given(
    st.lists(
        st.builds(
            Claim,
            st.sampled_from(["eu-north-1", "eu-west-1"]),
            st.sampled_from([None, "NVIDIA-A10G", "NVIDIA-L4"]),
            st.integers(0, 5),
            st.integers(0, 4),
        ),
        max_size=5,
    )
)
def test_claims_only_ever_take_room_that_exists(claims: list[Claim]) -> None:
    after = {n.name: n for n in with_claims(CAPACITY, claims)}
    for before in CAPACITY:
        now = after[before.name]
        assert 0 <= now.free_gpus <= before.free_gpus
        assert now.requested_gpus <= now.allocatable_gpus
    taken = sum(b.free_gpus - after[b.name].free_gpus for b in CAPACITY)
    assert taken <= sum(c.gpus_per_replica * c.replicas for c in claims)


# -- the Placer: two decisions at once ------------------------------------------------------

SMALL = [
    node("a10g-north", "eu-north-1", "NVIDIA-A10G", 1),  # the cleanest region: room for one
    node("a10g-west", "eu-west-1", "NVIDIA-A10G", 4),
]


@dataclasses.dataclass
class FixedSignals:
    def latest(self) -> Signals:
        readings = {r: reading(r, v) for r, v in (("eu-north-1", 40), ("eu-west-1", 300))}
        return Signals(readings, default_region_table(), NOW)


def placer() -> hp.Placer:
    return hp.Placer(None, SETTINGS, FixedSignals(), StaticFacts(), now=lambda: NOW)  # type: ignore[arg-type]


def owner(name: str) -> dict[str, Any]:
    return {"kind": "SmallModel", "metadata": {"namespace": "ns", "name": name}, "status": {}}


def bound_pod(model: str, node_name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"{model}-x",
            "labels": {
                "serving.smallfleet.io/owner-kind": "SmallModel",
                "serving.smallfleet.io/owner-name": model,
            },
        },
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
        "status": {"phase": "Running"},
    }


def decide(p: hp.Placer, model: str, pods: list[dict[str, Any]]) -> dict[str, int]:
    return p.regions(
        RegionRequest(plan(), owner(model), (), StaticFacts(node_list=SMALL, gpu_pod_list=pods))
    )


def test_the_second_of_two_decisions_at_once_does_not_take_the_firsts_gpu() -> None:
    p = placer()
    assert decide(p, "a", []) == {"eu-north-1": 1}
    assert decide(p, "b", []) == {"eu-west-1": 1}  # a's GPU is promised, its pod not bound yet
    # Deciding again for a model keeps its own claim out of its way.
    assert decide(p, "a", []) == {"eu-north-1": 1}


def test_a_bound_pod_replaces_its_claim_and_an_old_claim_lapses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = placer()
    decide(p, "a", [])
    # Bound: the pod itself holds the GPU now, counted once.
    assert decide(p, "b", [bound_pod("a", "a10g-north")]) == {"eu-west-1": 1}
    # Never bound, and the claim is older than its TTL: the room is free again.
    later = hp.time.monotonic() + hp.CLAIM_TTL_SECONDS + 1
    monkeypatch.setattr(hp.time, "monotonic", lambda: later)
    assert decide(p, "c", []) == {"eu-north-1": 1}


def test_a_cpu_model_claims_nothing() -> None:
    p = placer()
    cpu = plan("cpu-classifier.yaml")
    p.regions(RegionRequest(cpu, owner("cpu"), (), StaticFacts(node_list=SMALL)))
    assert decide(p, "b", []) == {"eu-north-1": 1}
