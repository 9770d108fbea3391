"""spec.expose against a real API server that serves the Gateway API's CRDs.

The CRDs come from the Go module sigs.k8s.io/gateway-api (`hack/build-bins.sh
gateway-api`, version pinned in hack/versions.env), so the HTTPRoutes and
GRPCRoutes the operator applies are validated by the real schema and CEL
rules. No gateway controller runs: the test writes a route's status through
its status subresource, as a controller would, and watches the model's
Exposed condition follow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.cluster import install_gateway_api_crds
from tests.e2e.cluster import Cluster, OperatorFactory, condition

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90.0
CONTROLLER = "example.com/test-gateway-controller"


@pytest.fixture(scope="module")
def gateway_api(cluster: Cluster) -> None:
    """Installed before any operator starts: a namespaced operator resolves kinds at start."""
    install_gateway_api_crds(cluster)


def documents(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]
    for doc in docs:
        doc["metadata"].pop("namespace", None)
    return docs


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.kubectl_json("get", kind, name, "-n", namespace)
    return found


def exists(cluster: Cluster, kind: str, name: str, namespace: str) -> bool:
    proc = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "name", check=False)
    return proc.returncode == 0


def wait_exposed(
    cluster: Cluster, kind: str, name: str, namespace: str, status: str | None, reason: str = ""
) -> dict[str, Any]:
    """Wait for Exposed to have `status` (and `reason`); None waits for it to be gone."""
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = get(cluster, kind, name, namespace)
        found = condition(last, "Exposed")
        if status is None:
            return not found
        return found.get("status") == status and (not reason or found.get("reason") == reason)

    try:
        cluster.wait_for(reached, TIMEOUT, f"{kind} {name}: Exposed never {status}", 1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{yaml.safe_dump(last.get('status', {}))}") from exc
    return last


def answer(
    cluster: Cluster,
    kind: str,
    name: str,
    namespace: str,
    accepted: tuple[str, str] = ("True", "Accepted"),
) -> None:
    """Write the route's status as a gateway controller would (status subresource)."""
    route = get(cluster, kind, name, namespace)
    generation = route["metadata"]["generation"]
    now = "2026-01-01T00:00:00Z"

    def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": f"{type_} {status} by the test",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }

    parents = [
        {
            "parentRef": ref,
            "controllerName": CONTROLLER,
            "conditions": [
                cond("Accepted", *accepted),
                cond("ResolvedRefs", "True", "ResolvedRefs"),
            ],
        }
        for ref in route["spec"]["parentRefs"]
    ]
    patch = yaml.safe_dump({"status": {"parents": parents}})
    cluster.kubectl(
        "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )


def expose(gateway_namespace: str, grpc: bool) -> dict[str, Any]:
    block: dict[str, Any] = {
        "gateway": {"name": "public", "namespace": gateway_namespace, "sectionName": "http"},
        "hostnames": ["models.example.com"],
    }
    if grpc:
        block["grpc"] = {
            "enabled": True,
            "sectionName": "grpc",
            "hostnames": ["grpc.models.example.com"],
        }
    return block


def test_smallmodel_routes_follow_the_gateway_and_go_with_spec_expose(
    cluster: Cluster, gateway_api: None, namespace: str, operator_process: OperatorFactory
) -> None:
    operator_process(namespace)
    (model,) = documents("cpu-classifier.yaml")
    model["spec"]["expose"] = expose("gateways", grpc=True)
    cluster.apply_yaml(yaml.safe_dump(model), namespace=namespace)

    cluster.wait_for(
        lambda: exists(cluster, "grpcroute", "cpu-classifier", namespace),
        TIMEOUT,
        "the GRPCRoute was never created",
    )
    http = get(cluster, "httproute", "cpu-classifier", namespace)
    assert http["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "http",
        }
    ]
    assert http["spec"]["hostnames"] == ["models.example.com"]
    (rule,) = http["spec"]["rules"]
    assert rule["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/v2/models/cpu-classifier"}}
    ]
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [("cpu-classifier", 8000)]
    owners = http["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("SmallModel", "cpu-classifier")]
    grpc = get(cluster, "grpcroute", "cpu-classifier", namespace)
    assert grpc["spec"]["parentRefs"][0]["sectionName"] == "grpc"
    assert grpc["spec"]["hostnames"] == ["grpc.models.example.com"]
    (grule,) = grpc["spec"]["rules"]
    assert grule["matches"][0]["method"] == {
        "type": "Exact",
        "service": "inference.GRPCInferenceService",
    }
    assert [(b["name"], b["port"]) for b in grule["backendRefs"]] == [("cpu-classifier", 8001)]

    # No gateway controller has answered: Unknown, and the address is already known.
    obj = wait_exposed(cluster, "sm", "cpu-classifier", namespace, "Unknown", "RoutesPending")
    assert obj["status"]["url"] == f"http://cpu-classifier.{namespace}.svc:8000"
    assert obj["status"]["grpcAddress"] == f"cpu-classifier.{namespace}.svc:8001"
    assert obj["status"]["endpoint"] == f"cpu-classifier.{namespace}.svc"

    # One route accepted is not enough; both are.
    answer(cluster, "httproute", "cpu-classifier", namespace)
    wait_exposed(cluster, "sm", "cpu-classifier", namespace, "Unknown", "RoutesPending")
    answer(cluster, "grpcroute", "cpu-classifier", namespace)
    obj = wait_exposed(cluster, "sm", "cpu-classifier", namespace, "True", "RoutesAccepted")
    assert "models.example.com" in condition(obj, "Exposed")["message"]

    # The gateway withdraws: its reason and words reach the model.
    answer(
        cluster,
        "httproute",
        "cpu-classifier",
        namespace,
        accepted=("False", "NotAllowedByListeners"),
    )
    obj = wait_exposed(cluster, "sm", "cpu-classifier", namespace, "False", "NotAllowedByListeners")
    assert "HTTPRoute cpu-classifier" in condition(obj, "Exposed")["message"]

    # Removing spec.expose deletes both routes and the condition.
    cluster.kubectl(
        "patch",
        "sm",
        "cpu-classifier",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/expose"}]',
    )
    cluster.wait_for(
        lambda: (
            not exists(cluster, "httproute", "cpu-classifier", namespace)
            and not exists(cluster, "grpcroute", "cpu-classifier", namespace)
        ),
        TIMEOUT,
        "the routes outlived spec.expose",
    )
    obj = wait_exposed(cluster, "sm", "cpu-classifier", namespace, None)
    assert obj["status"]["url"] == f"http://cpu-classifier.{namespace}.svc:8000"


def test_pipeline_route_reaches_the_ensemble(
    cluster: Cluster, gateway_api: None, namespace: str, operator_process: OperatorFactory
) -> None:
    operator_process(namespace)
    docs = documents("rag-pipeline.yaml")
    for doc in docs:
        if doc["kind"] == "ModelPipeline":
            doc["spec"]["expose"] = {"gateway": {"name": "public"}}
    cluster.apply_yaml(yaml.safe_dump_all(docs), namespace=namespace)
    cluster.wait_for(
        lambda: exists(cluster, "httproute", "rag", namespace),
        TIMEOUT,
        "the pipeline's HTTPRoute was never created",
    )
    route = get(cluster, "httproute", "rag", namespace)
    ref: Mapping[str, Any] = route["spec"]["parentRefs"][0]
    assert ref["name"] == "public" and "namespace" not in ref and "sectionName" not in ref
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/rag"}}]
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [("rag", 8000)]
    assert not exists(cluster, "grpcroute", "rag", namespace)
    answer(cluster, "httproute", "rag", namespace)
    obj = wait_exposed(cluster, "mp", "rag", namespace, "True", "RoutesAccepted")
    assert obj["status"]["url"] == f"http://rag.{namespace}.svc:8000"


def test_a_route_the_api_server_refuses_is_not_half_written(
    cluster: Cluster, gateway_api: None, namespace: str
) -> None:
    """The CRD refuses what the Gateway API schema would: a hostname that is not one."""
    (model,) = documents("cpu-classifier.yaml")
    model["spec"]["expose"] = {"gateway": {"name": "public"}, "hostnames": ["Not_A_Host"]}
    proc = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(model), check=False
    )
    assert proc.returncode != 0 and "hostnames" in proc.stderr, proc.stderr
