"""The Kubernetes children of a plan: names, labels, scheduling, security, scaling ownership."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import pytest
from render_fixtures import CPU_PYTHON, GPU_ONNX, PIPELINE, PIPELINE_MODELS

from smallfleet.core.render import UNPLACED, plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.spec import Scaling
from smallfleet.settings import Settings

SETTINGS: Final = Settings()
OWNER: Final = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "metadata": {"name": "minilm", "uid": "2b7e1c9a-1d1f-4f7e-9a51-8d1e9e0f0001"},
}
COMMON: Final = {
    "app.kubernetes.io/name": "triton",
    "app.kubernetes.io/instance": "minilm",
    "app.kubernetes.io/component": "model-server",
    "app.kubernetes.io/part-of": "smallfleet",
    "app.kubernetes.io/managed-by": "smallfleet",
    "serving.smallfleet.io/owner-kind": "SmallModel",
    "serving.smallfleet.io/owner-name": "minilm",
}


def _children(spec: Any = GPU_ONNX, regions: dict[str, int] | None = None) -> list[dict[str, Any]]:
    return render_children(
        plan_for_model(spec, SETTINGS), owner=OWNER, regions=regions or {"eu-north-1": 2}
    )


def _of(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == kind]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_kinds_in_apply_order() -> None:
    kinds = [c["kind"] for c in _children(regions={"eu-west-1": 1, "eu-north-1": 1})]
    assert kinds == ["ConfigMap", "Service", "Deployment", "Deployment", "PodDisruptionBudget"]


def test_every_child_carries_labels_namespace_and_owner() -> None:
    for child in _children():
        meta = child["metadata"]
        assert COMMON.items() <= meta["labels"].items()
        assert meta["namespace"] == "models"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "serving.smallfleet.io/v1alpha1",
                "kind": "SmallModel",
                "name": "minilm",
                "uid": "2b7e1c9a-1d1f-4f7e-9a51-8d1e9e0f0001",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_flat_owner_mapping_and_no_owner() -> None:
    flat = {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "name": "minilm",
        "uid": "u",
    }
    plan = plan_for_model(GPU_ONNX, SETTINGS)
    for child in render_children(plan, owner=flat, regions={"r": 1}):
        assert child["metadata"]["ownerReferences"][0]["uid"] == "u"
    for child in render_children(plan, owner=None, regions={"r": 1}):
        assert "ownerReferences" not in child["metadata"]


@pytest.mark.parametrize(
    ("regions", "names"),
    [
        ({"eu-north-1": 1}, ["minilm-eu-north-1"]),
        ({"eu-west-1": 1, "eu-north-1": 3}, ["minilm-eu-north-1", "minilm-eu-west-1"]),
        ({UNPLACED: 1}, ["minilm"]),
    ],
)
def test_one_deployment_per_region(regions: dict[str, int], names: list[str]) -> None:
    deployments = _of(_children(regions=regions), "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == names
    for d, region in zip(deployments, sorted(regions), strict=True):
        assert d["spec"]["replicas"] == regions[region]
        assert d["metadata"]["labels"]["serving.smallfleet.io/region"] == region
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector["serving.smallfleet.io/region"] == region
        assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_region_affinity_and_gpu_product() -> None:
    (d,) = _of(_children(regions={"eu-west-1": 1}), "Deployment")
    terms = _pod(d)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]},
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]},
            ]
        }
    ]
    assert _pod(d)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    resources = _pod(d)["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1


def test_cpu_model_avoids_gpu_nodes_and_unplaced_has_no_region() -> None:
    (d,) = _of(_children(CPU_PYTHON, {UNPLACED: 1}), "Deployment")
    exprs = _pod(d)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    assert exprs == [{"key": "nvidia.com/gpu.product", "operator": "DoesNotExist"}]
    assert "tolerations" not in _pod(d)
    assert "nvidia.com/gpu" not in _pod(d)["containers"][0]["resources"]["requests"]


@pytest.mark.parametrize(
    ("mode", "has_replicas"), [("operator", True), ("none", True), ("hpa", False), ("keda", False)]
)
def test_replicas_rendered_only_when_the_operator_owns_scale(mode: str, has_replicas: bool) -> None:
    spec = dataclasses.replace(GPU_ONNX, scaling=Scaling(mode=mode))  # type: ignore[arg-type]
    (d,) = _of(_children(spec, {"eu-north-1": 2}), "Deployment")
    assert ("replicas" in d["spec"]) is has_replicas


@pytest.mark.parametrize(
    ("regions", "budget"),
    [
        ({"a": 1}, {"maxUnavailable": 1}),
        ({"a": 0}, {"maxUnavailable": 1}),
        ({"a": 2}, {"minAvailable": 1}),
        ({"a": 1, "b": 1}, {"minAvailable": 1}),
    ],
)
def test_disruption_budget_is_honest_about_single_replicas(
    regions: dict[str, int], budget: dict[str, int]
) -> None:
    (pdb,) = _of(_children(regions=regions), "PodDisruptionBudget")
    spec = pdb["spec"]
    assert {k: v for k, v in spec.items() if k in ("minAvailable", "maxUnavailable")} == budget
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "minilm",
        "serving.smallfleet.io/owner-kind": "SmallModel",
    }
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_service_selects_every_region_and_names_ports() -> None:
    children = _children(regions={"a": 1, "b": 1})
    (svc,) = _of(children, "Service")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("grpc", 8001, "grpc"),
        ("metrics", 8002, "metrics"),
    ]
    for d in _of(children, "Deployment"):
        assert (
            svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        )
        ports = _pod(d)["containers"][0]["ports"]
        assert [(p["name"], p["containerPort"]) for p in ports] == [
            ("http", 8000),
            ("grpc", 8001),
            ("metrics", 8002),
        ]


def test_restricted_pod_security() -> None:
    (d,) = _of(_children(), "Deployment")
    pod = _pod(d)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsUser"] == 1000
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/models", "/tmp", "/dev/shm"} <= mounts


def test_probes_and_lifecycle() -> None:
    (d,) = _of(_children(), "Deployment")
    triton = _pod(d)["containers"][0]
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert _pod(d)["terminationGracePeriodSeconds"] > 30
    assert d["spec"]["revisionHistoryLimit"] == 3
    assert d["spec"]["progressDeadlineSeconds"] == 900
    assert triton["command"] == ["tritonserver"]
    assert "--load-model=minilm" in triton["args"]


def test_init_containers_fetch_each_artifact_then_write_configs() -> None:
    plan = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS)
    (d,) = _of(render_children(plan, owner=None, regions={"eu-north-1": 1}), "Deployment")
    inits = _pod(d)["initContainers"]
    assert [c["name"] for c in inits] == ["fetch-retrieve", "fetch-rerank", "model-config"]
    assert inits[0]["command"] == [
        "smallfleet",
        "fetch",
        "--uri",
        "s3://models/minilm-l3/model.onnx",
        "--digest",
        PIPELINE_MODELS["retrieve"].model.digest,
        "--format",
        "onnx",
        "--dest",
        "/models/retrieve",
    ]
    script = inits[-1]["command"][2]
    assert "mkdir -p /models/search/1" in script
    for model in ("retrieve", "rerank", "search"):
        assert (
            f"cp /etc/smallfleet/config/{model}.config.pbtxt /models/{model}/config.pbtxt" in script
        )
    annotations = d["spec"]["template"]["metadata"]["annotations"]
    assert annotations["serving.smallfleet.io/digest"] == (
        f"retrieve={PIPELINE_MODELS['retrieve'].model.digest},"
        f"rerank={PIPELINE_MODELS['rerank'].model.digest}"
    )


def test_config_map_keys_and_hash_roll_pods_on_change() -> None:
    before = _children()
    (cm,) = _of(before, "ConfigMap")
    assert list(cm["data"]) == ["minilm.config.pbtxt"]
    changed = dataclasses.replace(
        GPU_ONNX, triton=dataclasses.replace(GPU_ONNX.triton, instance_count=4)
    )
    after = _children(changed)

    def hash_of(children: list[dict[str, Any]]) -> str:
        (d,) = _of(children, "Deployment")
        value: str = d["spec"]["template"]["metadata"]["annotations"][
            "serving.smallfleet.io/config-hash"
        ]
        return value

    assert hash_of(before) != hash_of(after)
    assert hash_of(before) == hash_of(_children())


def test_digest_and_card_annotations() -> None:
    (d,) = _of(_children(), "Deployment")
    assert d["spec"]["template"]["metadata"]["annotations"]["serving.smallfleet.io/digest"] == (
        GPU_ONNX.model.digest
    )
    assert d["metadata"]["annotations"]["serving.smallfleet.io/model-owner"] == "search-team"
    assert d["metadata"]["annotations"]["serving.smallfleet.io/model-license"] == "Apache-2.0"


def test_children_share_no_nested_objects() -> None:
    children = _children(regions={"a": 1, "b": 1})
    seen: dict[int, Any] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict | list):
            assert id(value) not in seen, "a nested object is shared between children"
            seen[id(value)] = value
            for v in value.values() if isinstance(value, dict) else value:
                walk(v)

    walk(children)
