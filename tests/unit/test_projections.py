"""Pods and nodes cut to what the operator reads: every reader answers as on the whole body.

The pods are a golden Deployment's template, as the API server hands it out
(with defaults and a service-account volume), in each state the readers
tell apart; hypothesis varies containers, requests and statuses.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import kopf
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core import projections
from smallfleet.core import status as core_status
from smallfleet.core.placement.capacity import pod_gpus
from smallfleet.handlers import indices

GOLDEN: Final = Path(__file__).parent / "golden" / "gpu-onnx.yaml"
GPU: Final = "nvidia.com/gpu"


def _template() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(GOLDEN.read_text()) if isinstance(d, dict)]
    deployment = next(d for d in docs if d.get("kind") == "Deployment")
    return copy.deepcopy(deployment["spec"]["template"])


def _pod(status: dict[str, Any], *, node: str | None = "gpu-0", **meta: Any) -> dict[str, Any]:
    template = _template()
    spec = template["spec"]
    spec.setdefault("volumes", []).append(
        {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {}}]}}
    )
    spec["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
    ]
    if node:
        spec["nodeName"] = node
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("volumeMounts", []).append({"name": "kube-api-access-x", "mountPath": "/v"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "name": "m-abc",
            "namespace": "team",
            "uid": "u-1",
            "resourceVersion": "42",
            **meta,
        },
        "spec": spec,
        "status": status,
    }


RUNNING: Final = {"name": "triton", "state": {"running": {"startedAt": "t"}}, "ready": False}
CRASHED: Final = {
    "name": "triton",
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "model failed"}},
    "restartCount": 4,
}
FETCH_FAILED: Final = {
    "name": "fetch",
    "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "digest mismatch"}},
}
READY: Final = {"type": "Ready", "status": "True"}
NOT_READY: Final = {"type": "Ready", "status": "False"}

PODS: Final = {
    "pending-unschedulable": _pod(
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                }
            ],
        },
        node=None,
    ),
    "fetch-failed": _pod(
        {"phase": "Pending", "initContainerStatuses": [FETCH_FAILED], "conditions": [NOT_READY]}
    ),
    "triton-loading": _pod(
        {
            "phase": "Running",
            "podIP": "127.0.0.5",
            "conditions": [NOT_READY],
            "containerStatuses": [RUNNING],
        }
    ),
    "triton-crashing": _pod(
        {"phase": "Running", "podIP": "127.0.0.5", "containerStatuses": [CRASHED]}
    ),
    "serving": _pod(
        {
            "phase": "Running",
            "podIP": "127.0.0.5",
            "conditions": [READY],
            "containerStatuses": [{**RUNNING, "ready": True}],
        }
    ),
    "terminating": _pod(
        {"phase": "Running", "podIP": "127.0.0.5", "containerStatuses": [RUNNING]},
        deletionTimestamp="2026-12-07T00:00:00Z",
    ),
    "succeeded": _pod({"phase": "Succeeded"}),
}

READERS: Final[dict[str, Callable[[Mapping[str, Any]], Any]]] = {
    "pod_gpus": pod_gpus,
    "pod_problem": core_status.pod_problem,
    "waits_on_triton": core_status.waits_on_triton,
    "pod_ready": core_status.pod_ready,
    "scheduler_refusal": core_status.scheduler_refusal,
}


INDEX: Final[dict[str, Any]] = {
    "child_pods": indices.child_pods,
    "triton_waiting": indices.triton_waiting,
    "gpu_pods": indices.gpu_pods,
    "cluster_nodes": indices.cluster_nodes,
}


def _body(obj: Mapping[str, Any]) -> kopf.Body:
    raw: Any = copy.deepcopy(dict(obj))
    return kopf.Body(raw)


def _pod_indices(pod: Mapping[str, Any]) -> dict[str, Any]:
    body = _body(pod)
    meta = pod["metadata"]
    kwargs = dict(
        body=body,
        namespace=meta.get("namespace"),
        name=meta.get("name"),
        labels=body.metadata.labels,
    )

    async def run() -> dict[str, Any]:
        return {k: await INDEX[k](**kwargs) for k in ("child_pods", "triton_waiting", "gpu_pods")}

    return asyncio.run(run())


def test_the_golden_pod_holds_a_gpu_and_is_owned() -> None:
    pod = PODS["serving"]
    assert pod_gpus(pod) >= 1
    assert _pod_indices(pod)["child_pods"], "the fixture must be a smallfleet child"


@pytest.mark.parametrize("case", sorted(PODS))
def test_every_pod_reader_answers_as_on_the_whole_pod(case: str) -> None:
    pod = PODS[case]
    cut = projections.pod(pod)
    for name, read in READERS.items():
        assert read(cut) == read(pod), name
    assert _pod_indices(cut) == _pod_indices(pod)


@pytest.mark.parametrize("case", sorted(PODS))
def test_a_pod_loses_most_of_its_spec_and_keeps_metadata_and_status(case: str) -> None:
    pod = PODS[case]
    cut = projections.pod(pod)
    assert cut["metadata"] == pod["metadata"]
    assert cut["status"] == pod["status"]
    assert len(json.dumps(cut["spec"])) * 4 < len(json.dumps(pod["spec"]))
    assert pod == PODS[case], "the projection must not change its input"


requests = st.dictionaries(
    st.sampled_from([GPU, "cpu", "memory"]), st.sampled_from(["0", "1", "2", "8", "500m", "x"])
)
containers = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["triton", "fetch", "sidecar"])},
        optional={
            "resources": st.fixed_dictionaries(
                {}, optional={"requests": requests, "limits": requests}
            ),
            "image": st.just("img"),
            "env": st.just([{"name": "A", "value": "b"}]),
        },
    ),
    max_size=3,
)
container_status = st.fixed_dictionaries(
    {"name": st.sampled_from(["triton", "fetch"])},
    optional={
        "state": st.sampled_from(
            [{"running": {}}, {"waiting": {"reason": "ErrImagePull"}}, CRASHED["state"]]
        ),
        "lastState": st.just(CRASHED["lastState"]),
        "ready": st.booleans(),
    },
)


@settings(max_examples=100, deadline=None)
@given(
    spec=st.fixed_dictionaries(
        {},
        optional={
            "nodeName": st.sampled_from(["gpu-0", ""]),
            "containers": containers,
            "initContainers": containers,
            "volumes": st.just([{"name": "v", "emptyDir": {}}]),
        },
    ),
    status=st.fixed_dictionaries(
        {},
        optional={
            "phase": st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
            "podIP": st.just("127.0.0.9"),
            "conditions": st.lists(st.sampled_from([READY, NOT_READY]), max_size=1),
            "containerStatuses": st.lists(container_status, max_size=2),
            "initContainerStatuses": st.lists(container_status, max_size=1),
        },
    ),
)
def test_readers_agree_on_any_pod(spec: dict[str, Any], status: dict[str, Any]) -> None:
    pod = _pod({})
    pod["spec"], pod["status"] = spec, status
    cut = projections.pod(pod)
    for name, read in READERS.items():
        assert read(cut) == read(pod), name
    assert _pod_indices(cut) == _pod_indices(pod)


NODE: Final = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "gpu-0", "labels": {"topology.kubernetes.io/region": "eu-north"}},
    "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}], "unschedulable": True},
    "status": {
        "allocatable": {GPU: "8", "cpu": "32"},
        "capacity": {GPU: "8", "cpu": "32"},
        "conditions": [{"type": "Ready", "status": "True"}],
        "images": [{"names": [f"registry/image-{i}:v1"], "sizeBytes": 1} for i in range(50)],
        "nodeInfo": {"kubeletVersion": "v1.31.0"},
    },
}


def test_the_node_index_reads_the_same_from_a_projected_node() -> None:
    async def index(node: Mapping[str, Any]) -> Any:
        return await INDEX["cluster_nodes"](body=_body(node))

    cut = projections.node(NODE)
    assert asyncio.run(index(cut)) == asyncio.run(index(NODE))
    assert cut["spec"] == NODE["spec"] and cut["metadata"] == NODE["metadata"]
    assert "images" not in cut["status"]
