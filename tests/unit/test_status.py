"""Status derivation from recorded Deployment and Pod status dicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core import conditions as c
from smallfleet.core import status as s


def deployment(
    name: str = "tiny-eu-west",
    *,
    replicas: int = 1,
    generation: int = 1,
    observed: int = 1,
    updated: int | None = None,
    total: int | None = None,
    available: int | None = None,
    ready: int | None = None,
    region: str = "eu-west",
    progressing: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "replicas": replicas if total is None else total,
        "updatedReplicas": replicas if updated is None else updated,
        "availableReplicas": replicas if available is None else available,
        "readyReplicas": replicas if ready is None else ready,
    }
    if progressing is not None:
        st_, reason, message = progressing
        status["conditions"] = [
            {"type": "Progressing", "status": st_, "reason": reason, "message": message}
        ]
    return {
        "metadata": {"name": name, "generation": generation, "labels": {}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"nodeSelector": {"topology.kubernetes.io/region": region}}},
        },
        "status": status,
    }


def pod(name: str = "tiny-eu-west-abc", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


UNSCHEDULABLE_MSG = "0/7 nodes are available: 7 Insufficient nvidia.com/gpu."

UNSCHEDULABLE = pod(
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": UNSCHEDULABLE_MSG,
        }
    ]
)
FETCH_FAILED = pod(
    initContainerStatuses=[
        {
            "name": "fetch",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {
                "terminated": {
                    "exitCode": 2,
                    "reason": "Error",
                    "message": "digest mismatch: want sha256:aa got sha256:bb",
                }
            },
        }
    ]
)
TRITON_FAILED = pod(
    containerStatuses=[
        {
            "name": "triton",
            "state": {
                "terminated": {"exitCode": 1, "message": "failed to load 'tiny': bad config"}
            },
        }
    ]
)
IMAGE_PULL = pod(
    containerStatuses=[
        {
            "name": "triton",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
        }
    ]
)
READY_POD = pod(conditions=[{"type": "Ready", "status": "True"}])
STARTING_POD = pod(
    containerStatuses=[{"name": "triton", "state": {"waiting": {"reason": "ContainerCreating"}}}]
)


def by_type(derived: s.Derived) -> dict[str, c.Condition]:
    return {x.type: x for x in derived.conditions}


CASES: list[tuple[str, dict[str, Any], tuple[str, str, str, str]]] = [
    # id, derive kwargs, (Ready, Reconciling, Stalled, Ready reason)
    ("available", {"deployments": [deployment()]}, ("True", "False", "False", c.REASON_AVAILABLE)),
    (
        "no replicas ready",
        {"deployments": [deployment(ready=0, available=0)], "pods": [STARTING_POD]},
        ("False", "True", "False", c.REASON_PROGRESSING),
    ),
    (
        "generation not observed",
        {"deployments": [deployment(generation=2, observed=1)]},
        ("False", "True", "False", c.REASON_PROGRESSING),
    ),
    (
        "old replicas still terminating",
        {"deployments": [deployment(replicas=2, total=3)]},
        ("False", "True", "False", c.REASON_PROGRESSING),
    ),
    (
        "expected deployment missing",
        {"deployments": [deployment()], "expected": ["tiny-eu-west", "tiny-us-east"]},
        ("False", "True", "False", c.REASON_PROGRESSING),
    ),
    ("nothing observed", {"deployments": []}, ("False", "True", "False", c.REASON_PROGRESSING)),
    (
        "unschedulable",
        {"deployments": [deployment(ready=0, available=0)], "pods": [UNSCHEDULABLE]},
        ("False", "False", "True", c.REASON_UNSCHEDULABLE),
    ),
    (
        "fetch failed",
        {"deployments": [deployment(ready=0, available=0)], "pods": [FETCH_FAILED]},
        ("False", "False", "True", c.REASON_ARTIFACT_FAILED),
    ),
    (
        "model load failed",
        {"deployments": [deployment(ready=0, available=0)], "pods": [TRITON_FAILED]},
        ("False", "False", "True", c.REASON_MODEL_LOAD_FAILED),
    ),
    (
        "image pull",
        {"deployments": [deployment(ready=0, available=0)], "pods": [IMAGE_PULL]},
        ("False", "False", "True", c.REASON_MODEL_LOAD_FAILED),
    ),
    (
        "deadline exceeded",
        {
            "deployments": [
                deployment(
                    ready=0,
                    available=0,
                    progressing=("False", "ProgressDeadlineExceeded", "ReplicaSet timed out"),
                )
            ]
        },
        ("False", "False", "True", c.REASON_ROLLOUT_FAILED),
    ),
    (
        "ready despite an unschedulable surge pod",
        {"deployments": [deployment()], "pods": [READY_POD, UNSCHEDULABLE]},
        ("True", "False", "False", c.REASON_AVAILABLE),
    ),
    (
        "two regions, one not ready",
        {
            "deployments": [
                deployment("a", region="eu-west"),
                deployment("b", region="eu-north", ready=0, available=0),
            ]
        },
        ("False", "True", "False", c.REASON_PROGRESSING),
    ),
    (
        "scaled to zero",
        {"deployments": [deployment(replicas=0)]},
        ("True", "False", "False", c.REASON_AVAILABLE),
    ),
    (
        "autoscaled beyond the GPUs: the minimum serves",
        {
            "deployments": [deployment(replicas=4, ready=2, available=2)],
            "pods": [READY_POD, READY_POD, UNSCHEDULABLE, UNSCHEDULABLE],
            "floor": 1,
        },
        ("True", "False", "False", c.REASON_AVAILABLE),
    ),
    (
        "autoscaled, extra replicas still starting",
        {
            "deployments": [deployment(replicas=3, ready=1, available=1)],
            "pods": [READY_POD, STARTING_POD, STARTING_POD],
            "floor": 1,
        },
        ("True", "False", "False", c.REASON_AVAILABLE),
    ),
    (
        "below the minimum: stalled",
        {
            "deployments": [deployment(replicas=4, ready=1, available=1)],
            "pods": [READY_POD, UNSCHEDULABLE, UNSCHEDULABLE, UNSCHEDULABLE],
            "floor": 2,
        },
        ("False", "False", "True", c.REASON_UNSCHEDULABLE),
    ),
    (
        "minimum met by old pods during a rollout: not yet",
        {
            "deployments": [deployment(replicas=2, updated=1, total=3, ready=2, available=2)],
            "pods": [READY_POD, READY_POD, UNSCHEDULABLE],
            "floor": 1,
        },
        ("False", "False", "True", c.REASON_UNSCHEDULABLE),
    ),
    (
        "minimum met in one region only",
        {
            "deployments": [
                deployment("a", region="eu-west", replicas=3, ready=1, available=1),
                deployment("b", region="eu-north", ready=0, available=0),
            ],
            "pods": [UNSCHEDULABLE],
            "floor": 1,
        },
        ("False", "False", "True", c.REASON_UNSCHEDULABLE),
    ),
    (
        "the scale-up timed out, the minimum serves",
        {
            "deployments": [
                deployment(
                    replicas=3,
                    ready=1,
                    available=1,
                    progressing=("False", "ProgressDeadlineExceeded", "ReplicaSet timed out"),
                )
            ],
            "floor": 1,
        },
        ("True", "False", "False", c.REASON_AVAILABLE),
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "want"), [(k, w) for _, k, w in CASES], ids=[i for i, _, _ in CASES]
)
def test_derive_table(kwargs: dict[str, Any], want: tuple[str, str, str, str]) -> None:
    got = by_type(s.derive(**kwargs))
    assert (got[c.READY].status, got[c.RECONCILING].status, got[c.STALLED].status) == want[:3]
    assert got[c.READY].reason == want[3]


def test_a_shortfall_above_the_minimum_is_named_in_the_ready_message() -> None:
    got = by_type(
        s.derive(
            deployments=[deployment(replicas=4, ready=2, available=2)],
            pods=[READY_POD, READY_POD, UNSCHEDULABLE, UNSCHEDULABLE],
            digest="sha256:aa",
            floor=1,
        )
    )
    message = got[c.READY].message
    assert message.startswith("2/4 replicas ready in eu-west; beyond the minimum of 1, ")
    assert f"{c.REASON_UNSCHEDULABLE}: {UNSCHEDULABLE_MSG}" in message
    assert got[c.ARTIFACT_VERIFIED].status == "True"


def test_unschedulable_reports_the_scheduler_message() -> None:
    got = by_type(s.derive(deployments=[deployment(ready=0, available=0)], pods=[UNSCHEDULABLE]))
    assert got[c.STALLED].message == UNSCHEDULABLE_MSG
    assert got[c.READY].message == UNSCHEDULABLE_MSG


def test_fetch_failure_names_the_digest_and_artifact_condition() -> None:
    got = by_type(
        s.derive(deployments=[deployment(ready=0)], pods=[FETCH_FAILED], digest="sha256:aa")
    )
    assert "digest mismatch" in got[c.STALLED].message
    assert got[c.ARTIFACT_VERIFIED].status == "False"


def test_artifact_verified_once_a_pod_is_ready() -> None:
    d = s.derive(deployments=[deployment()], pods=[READY_POD], digest="sha256:aa")
    assert by_type(d)[c.ARTIFACT_VERIFIED].status == "True"
    assert d.fields["artifact"] == {"digest": "sha256:aa", "verified": True}
    pending = s.derive(deployments=[deployment(ready=0)], pods=[STARTING_POD], digest="sha256:aa")
    assert by_type(pending)[c.ARTIFACT_VERIFIED].status == "Unknown"


def bound(name: str, node: str, replica_set: str = "tiny-eu-west-7d9f") -> dict[str, Any]:
    """A ready pod of Deployment tiny-eu-west (through its ReplicaSet) bound to `node`."""
    return {
        "metadata": {
            "name": name,
            "ownerReferences": [{"kind": "ReplicaSet", "name": replica_set, "uid": "rs"}],
        },
        "spec": {"nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_pod_on_a_deleted_node_is_not_ready_though_its_deployment_counts_it() -> None:
    """The Deployment still counts the pod (until the pod GC deletes it): status does not."""
    dep = deployment(replicas=2)
    pods = [bound("tiny-eu-west-7d9f-a", "gpu-1"), bound("tiny-eu-west-7d9f-b", "gone")]
    d = s.derive(deployments=[dep], pods=pods, nodes={"gpu-1", "gpu-2"}, digest="sha256:aa")
    got = by_type(d)
    assert (got[c.READY].status, got[c.RECONCILING].status, got[c.STALLED].status) == (
        "False",
        "True",
        "False",
    )
    assert d.fields["readyReplicas"] == 1
    assert "tiny-eu-west-7d9f-b on gone" in got[c.RECONCILING].message
    assert got[c.ARTIFACT_VERIFIED].status == "True"  # the other pod fetched it
    # Nodes unknown (None or none listed): the Deployment's count stands.
    for nodes in (None, set()):
        assert (
            by_type(s.derive(deployments=[dep], pods=pods, nodes=nodes))[c.READY].status == "True"
        )
    # Every node known: Ready.
    every = s.derive(deployments=[dep], pods=pods, nodes={"gpu-1", "gone"})
    assert by_type(every)[c.READY].status == "True"


def test_fields_sum_over_regions() -> None:
    d = s.derive(
        deployments=[
            deployment("a", replicas=2, region="eu-west"),
            deployment("b", replicas=1, ready=0, region="eu-north"),
        ]
    )
    assert d.fields["desiredReplicas"] == 3
    assert d.fields["readyReplicas"] == 2
    assert d.fields["region"] == "eu-west"
    assert d.fields["regions"] == ["eu-west"]


@pytest.mark.parametrize(
    ("dep", "want"),
    [
        ({"metadata": {"labels": {"serving.smallfleet.io/region": "r1"}}}, "r1"),
        ({"metadata": {"labels": {"topology.kubernetes.io/region": "r2"}}}, "r2"),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "affinity": {
                                "nodeAffinity": {
                                    "requiredDuringSchedulingIgnoredDuringExecution": {
                                        "nodeSelectorTerms": [
                                            {
                                                "matchExpressions": [
                                                    {
                                                        "key": "topology.kubernetes.io/region",
                                                        "operator": "In",
                                                        "values": ["r3"],
                                                    }
                                                ]
                                            }
                                        ]
                                    }
                                }
                            }
                        }
                    }
                }
            },
            "r3",
        ),
        ({}, ""),
    ],
)
def test_region_of(dep: dict[str, Any], want: str) -> None:
    assert s.region_of(dep) == want


def test_deleted_pods_are_not_problems() -> None:
    gone = {**UNSCHEDULABLE, "metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert s.pod_problem(gone) is None


def test_merge_flips_and_transition_times() -> None:
    first, flips = s.merge(None, s.stalled(c.REASON_INVALID_SPEC, "bad"), now="t1", generation=1)
    assert first["observedGeneration"] == 1
    assert {f.type for f in flips} == {c.READY, c.RECONCILING, c.STALLED}
    assert all(x["lastTransitionTime"] == "t1" for x in first["conditions"])

    # Same verdict again: no flips, times kept, generation follows.
    again, flips = s.merge(first, s.stalled(c.REASON_INVALID_SPEC, "worse"), now="t2", generation=2)
    assert flips == []
    assert all(x["lastTransitionTime"] == "t1" for x in again["conditions"])
    assert c.get_condition(again["conditions"], c.STALLED)["message"] == "worse"  # type: ignore[index]
    assert again["observedGeneration"] == 2

    fixed, flips = s.merge(again, s.derive(deployments=[deployment()]), now="t3", generation=3)
    assert {f.type for f in flips} == {c.READY, c.STALLED}
    ready = c.get_condition(fixed["conditions"], c.READY)
    assert ready is not None and ready["lastTransitionTime"] == "t3"
    assert fixed["readyReplicas"] == 1


def test_merge_keeps_conditions_owned_elsewhere() -> None:
    current = {
        "conditions": [
            {"type": c.PLACED, "status": "True", "reason": "Placed", "message": "eu-north"}
        ],
        "carbon": {"intensity": 30},
    }
    out, _ = s.merge(current, s.derive(deployments=[deployment()]), now="t", generation=1)
    assert c.get_condition(out["conditions"], c.PLACED) is not None
    assert out["carbon"] == {"intensity": 30}


def test_status_patch_only_changed_keys() -> None:
    assert s.status_patch({"a": 1, "b": 2}, {"a": 1, "b": 3}) == {"b": 3}
    assert s.status_patch(None, {"a": 1}) == {"a": 1}


def test_summary() -> None:
    out, _ = s.merge(None, s.derive(deployments=[deployment()]), now="t", generation=1)
    assert s.summary(out["conditions"]) == "Ready"
    out, _ = s.merge(None, s.stalled("X", "y"), now="t", generation=1)
    assert s.summary(out["conditions"]) == "Stalled"
    assert s.summary([]) == "Unknown"


counts = st.integers(min_value=0, max_value=5)


@given(
    replicas=counts,
    ready=counts,
    updated=counts,
    extra=counts,
    gen=st.integers(1, 3),
    lag=st.integers(0, 2),
    floor=st.none() | st.integers(1, 3),
    pods=st.lists(st.sampled_from([UNSCHEDULABLE, READY_POD, STARTING_POD]), max_size=3),
)
def test_kstatus_invariants(
    replicas: int,
    ready: int,
    updated: int,
    extra: int,
    gen: int,
    lag: int,
    floor: int | None,
    pods: list[dict[str, Any]],
) -> None:
    dep = deployment(
        replicas=replicas,
        ready=ready,
        available=ready,
        updated=updated,
        total=updated + extra,
        generation=gen,
        observed=max(0, gen - lag),
    )
    got = by_type(s.derive(deployments=[dep], pods=pods, floor=floor))
    # Exactly one of Ready / Reconciling / Stalled holds.
    trues = [t for t in (c.READY, c.RECONCILING, c.STALLED) if got[t].status == "True"]
    assert len(trues) == 1
    # Ready means the current template everywhere, with every replica ready, or (given a
    # floor) at least the floor's worth.
    need = replicas if floor is None else min(replicas, floor)
    if got[c.READY].status == "True":
        assert ready >= need and lag == 0 and extra == 0 and updated >= replicas
    elif lag == 0 and extra == 0 and updated >= replicas:
        assert ready < need


@given(pods=st.lists(st.sampled_from([UNSCHEDULABLE, FETCH_FAILED, TRITON_FAILED, STARTING_POD])))
def test_stalled_iff_a_problem_and_not_ready(pods: list[dict[str, Any]]) -> None:
    got = by_type(s.derive(deployments=[deployment(ready=0, available=0)], pods=pods))
    stuck = any(p is not STARTING_POD for p in pods)
    assert (got[c.STALLED].status == "True") == stuck
    assert got[c.READY].status == "False"
