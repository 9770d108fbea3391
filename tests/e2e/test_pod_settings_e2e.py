"""spec.pod places dedicated servers, and their Triton's word reaches status within seconds.

A dedicated SmallModel whose `spec.pod` tolerates the local node's taint and
selects its label lands on `triton-local`, which runs the rendered pod for
real: `smallfleet fetch` from a local HTTP store, then the wheel's
`tritonserver` on the pod IP. A correct model turns Ready and answers an
inference at its pod IP; one whose config names an output the artifact does
not make keeps its pod unready (strict readiness), and the operator, asking
that pod's Triton for its repository index, reports it Stalled with
ModelLoadFailed in Triton's words within seconds of the pod running, not
after the 15-minute progress deadline.

On the KWOK side, a GPU model that tolerates an extra taint on a GPU node
lands there, next to the operator's own GPU toleration; without it, it does not.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

import pytest
from tests.e2e.cluster import (
    LOCAL_NODE_REGION,
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    Cluster,
    LocalNode,
    OperatorFactory,
)
from tests.e2e.test_pools import DIM, condition, infer, store, triton_env

__all__ = ["store"]  # the module-scoped fixture, shared with the pool tests

READY_TIMEOUT_S: Final = 240.0  # a python-backend stub started on two shared cores
FAILURE_AFTER_RUNNING_S: Final = 10.0
GPU_NODE: Final = "gpu-eu-west-1b-l4"  # the one L4 node of eu-west-1
EXTRA_TAINT: Final = {"key": "smallfleet.e2e/reserved", "value": "ml", "effect": "NoSchedule"}


def dedicated(name: str, store_url: str, *, output: str = "VECTOR") -> dict[str, Any]:
    env = triton_env()
    artifact = env["index"]["hashed-ngrams"]
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"{store_url}/{artifact['file']}",
                "digest": artifact["digest"],
                "format": "python",
            },
            "triton": {
                "maxBatchSize": 8,
                "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": output, "datatype": "FP32", "dims": [DIM]}],
                "parameters": {"EXECUTION_ENV_PATH": env["execution_env_path"]},
            },
            "resources": {"gpus": 0, "cpu": "100m", "memory": "512Mi"},
            "scaling": {"mode": "none", "minReplicas": 1, "maxReplicas": 1},
            "placement": {"policy": "pinned", "regions": [LOCAL_NODE_REGION]},
            "pod": {
                "tolerations": [dict(LOCAL_NODE_TOLERATION)],
                "nodeSelector": dict(LOCAL_NODE_SELECTOR),
                "labels": {"team": "e2e"},
            },
            "card": {"owner": "e2e", "license": "Apache-2.0", "description": "hashed trigrams"},
        },
    }


def gpu_model(name: str, *, tolerate: bool) -> dict[str, Any]:
    pod: dict[str, Any] = {"nodeSelector": {"kubernetes.io/hostname": GPU_NODE}}
    if tolerate:
        pod["tolerations"] = [{"operator": "Equal", **EXTRA_TAINT}]
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": "https://models.example/minilm.onnx",
                "digest": "sha256:" + "a" * 64,
                "format": "onnx",
            },
            "resources": {"gpus": 1, "gpuProduct": "NVIDIA-L4"},
            "scaling": {"mode": "none", "minReplicas": 1, "maxReplicas": 1},
            "placement": {"policy": "pinned", "regions": ["eu-west-1"]},
            "pod": pod,
            "card": {"owner": "e2e", "license": "Apache-2.0", "description": "GPU placement"},
        },
    }


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.apply_yaml("\n---\n".join(json.dumps(d) for d in docs), namespace=namespace)


def model(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = cluster.kubectl_json("get", "smallmodel", name, "-n", namespace)
    return got


def pods_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"serving.smallfleet.io/owner-name={name}"
    )["items"]
    return items


def started_at(pod: dict[str, Any]) -> dt.datetime | None:
    for c in pod.get("status", {}).get("containerStatuses") or []:
        running = (c.get("state") or {}).get("running")
        if c.get("name") == "triton" and running and running.get("startedAt"):
            return dt.datetime.fromisoformat(running["startedAt"].replace("Z", "+00:00"))
    return None


def test_dedicated_models_on_the_local_node_ready_or_stalled_in_tritons_words(
    cluster: Cluster,
    local_node: LocalNode,
    namespace: str,
    operator_process: OperatorFactory,
    store: str,
) -> None:
    operator_process(namespace)
    apply(
        cluster,
        namespace,
        dedicated("ngrams-ok", store),
        dedicated("wrong-output", store, output="EMBEDDING"),
    )

    # The broken one: Stalled with Triton's words, seconds after its Triton started.
    running: dict[str, dt.datetime] = {}

    def stalled() -> dict[str, Any] | None:
        if "at" not in running:
            for p in pods_of(cluster, namespace, "wrong-output"):
                at = started_at(p)
                if at is not None:
                    running["at"] = at
                    running["seen"] = dt.datetime.now(dt.UTC)
        cond = condition(model(cluster, namespace, "wrong-output"), "Stalled")
        return cond if cond.get("status") == "True" else None

    cond = cluster.wait_for(
        stalled,
        READY_TIMEOUT_S,
        lambda: (
            "wrong-output never stalled: "
            + json.dumps(model(cluster, namespace, "wrong-output").get("status"))[:2000]
            + "\n--- node log\n"
            + "\n".join(local_node.log().splitlines()[-30:])
        ),
        interval=0.5,
    )
    stalled_seen = dt.datetime.now(dt.UTC)
    assert cond["reason"] == "ModelLoadFailed", cond
    assert "this model needs output VECTOR" in cond["message"], cond
    assert "at" in running, "the pod's Triton was never seen running"
    transition = dt.datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))
    took = (transition - running["at"]).total_seconds()
    print(f"\nwrong-output: Stalled {took:.0f} s after its Triton started (API clock)")
    # The API stamps in whole seconds; allow one for the truncation of both stamps.
    assert took <= FAILURE_AFTER_RUNNING_S + 1, took
    assert (stalled_seen - running["seen"]).total_seconds() <= FAILURE_AFTER_RUNNING_S + 2
    (broken,) = pods_of(cluster, namespace, "wrong-output")
    assert broken["spec"]["nodeName"] == local_node.name

    # The correct one: Ready on the local node with the pod settings, answering at its pod IP.
    ok = cluster.wait_for(
        lambda: (
            m
            if condition(m := model(cluster, namespace, "ngrams-ok"), "Ready").get("status")
            == "True"
            else None
        ),
        READY_TIMEOUT_S,
        lambda: (
            "ngrams-ok never Ready: "
            + json.dumps(model(cluster, namespace, "ngrams-ok").get("status"))[:2000]
        ),
    )
    assert condition(ok, "Stalled").get("status") == "False"
    (served,) = pods_of(cluster, namespace, "ngrams-ok")
    assert served["spec"]["nodeName"] == local_node.name
    assert dict(LOCAL_NODE_TOLERATION) in served["spec"]["tolerations"]
    assert served["spec"]["nodeSelector"] == dict(LOCAL_NODE_SELECTOR)
    assert served["metadata"]["labels"]["team"] == "e2e"
    vector = infer(served["status"]["podIP"], "ngrams-ok", "a cat sleeps")
    assert vector.shape == (1, DIM)
    # The broken one is still Stalled, and still named in Triton's words.
    again = condition(model(cluster, namespace, "wrong-output"), "Stalled")
    assert again.get("status") == "True" and again.get("reason") == "ModelLoadFailed"


@pytest.fixture
def extra_taint(cluster: Cluster) -> Any:
    taint = f"{EXTRA_TAINT['key']}={EXTRA_TAINT['value']}:{EXTRA_TAINT['effect']}"
    cluster.kubectl("taint", "node", GPU_NODE, taint, "--overwrite")
    yield taint
    cluster.kubectl("taint", "node", GPU_NODE, f"{taint}-", check=False)


def test_a_gpu_model_tolerating_a_nodes_extra_taint_lands_there(
    cluster: Cluster,
    namespace: str,
    operator_process: OperatorFactory,
    extra_taint: str,
) -> None:
    operator_process(namespace)
    apply(
        cluster,
        namespace,
        gpu_model("tolerant", tolerate=True),
        gpu_model("intolerant", tolerate=False),
    )

    def placed() -> dict[str, Any] | None:
        pods = pods_of(cluster, namespace, "tolerant")
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    tolerant = cluster.wait_for(placed, 90, "the tolerant model's pod was never scheduled")
    assert tolerant["spec"]["nodeName"] == GPU_NODE
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerant[
        "spec"
    ]["tolerations"]
    assert {"operator": "Equal", **EXTRA_TAINT} in tolerant["spec"]["tolerations"]
    cluster.wait_for(
        lambda: condition(model(cluster, namespace, "tolerant"), "Ready").get("status") == "True",
        90,
        "the tolerant model never became Ready on the KWOK node",
    )

    # Without the toleration the same node refuses it, and status says so.
    def refused() -> dict[str, Any] | None:
        cond = condition(model(cluster, namespace, "intolerant"), "Stalled")
        return cond if cond.get("status") == "True" else None

    cond = cluster.wait_for(refused, 90, "the intolerant model never stalled")
    assert cond["reason"] == "Unschedulable" and "taint" in cond["message"], cond
    (pending,) = pods_of(cluster, namespace, "intolerant")
    assert not pending["spec"].get("nodeName")
