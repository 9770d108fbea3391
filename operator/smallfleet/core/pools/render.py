"""A ServingPool's children: a StatefulSet of Triton servers with explicit model control.

A StatefulSet, not a Deployment, because packing assigns each model to one
server by ordinal: server `<pool>-pool-2` must stay that server across a
restart so that its models are loaded into it again, and a scale-down must
remove the highest ordinals, which packing empties first. The headless
Service gives each server a stable DNS name, the model's endpoint.

Each server runs two containers sharing the model repository (an emptyDir):
Triton with `--model-control-mode=explicit` and no model at start, and
`smallfleet agent`, which fetches an artifact and verifies its digest when
the operator asks, so that the operator then loads it through Triton's
repository API with the config in the request. Adding or removing a model
never changes the pod template, so it never restarts a server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from smallfleet.core.pools.spec import SERVING_POOL, PoolSpec
from smallfleet.core.render.children import (
    API_VERSION,
    GPU_RESOURCE,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    SHM_SIZE,
    TERMINATION_GRACE_SECONDS,
    container_security,
    node_expressions,
    pod_security,
)
from smallfleet.core.render.triton import (
    EXIT_TIMEOUT_SECONDS,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_INTERVAL_MS,
    METRICS_PORT,
)

AGENT_PORT: Final = 8010
REPOSITORY: Final = "/models"
COMPONENT: Final = "model-server-pool"


def workload_name(pool: str) -> str:
    """The StatefulSet and the headless Service of a pool."""
    return f"{pool}-pool"


def server_name(pool: str, ordinal: int) -> str:
    return f"{workload_name(pool)}-{ordinal}"


def server_ordinal(pool: str, pod_name: str) -> int | None:
    prefix = workload_name(pool) + "-"
    tail = pod_name[len(prefix) :] if pod_name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def server_host(pool: PoolSpec, ordinal: int) -> str:
    """The stable DNS name of one server (the endpoint of the models it holds)."""
    return f"{server_name(pool.name, ordinal)}.{workload_name(pool.name)}.{pool.namespace}.svc"


def pool_labels(pool: PoolSpec) -> dict[str, str]:
    return {
        LABEL_NAME: "triton",
        LABEL_INSTANCE: pool.name,
        LABEL_COMPONENT: COMPONENT,
        LABEL_PART_OF: "smallfleet",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_OWNER_KIND: SERVING_POOL,
        LABEL_OWNER_NAME: pool.name,
    }


def _selector(pool: PoolSpec) -> dict[str, str]:
    return {LABEL_NAME: "triton", LABEL_INSTANCE: pool.name, LABEL_OWNER_KIND: SERVING_POOL}


def triton_pool_args() -> list[str]:
    """An empty server that loads only what the operator asks for, and says ready without models."""
    return [
        f"--model-repository={REPOSITORY}",
        "--model-control-mode=explicit",
        "--strict-readiness=false",
        "--exit-on-error=false",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        "--allow-cpu-metrics=true",
        f"--metrics-interval-ms={METRICS_INTERVAL_MS}",
    ]


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _node_terms(pool: PoolSpec) -> list[dict[str, Any]]:
    server = pool.server
    return [{"matchExpressions": node_expressions(pool.region, server.gpus, server.gpu_product)}]


def render_pool(
    pool: PoolSpec,
    *,
    servers: int,
    owner: Mapping[str, Any] | None,
    triton_image: str,
    agent_image: str,
) -> list[dict[str, Any]]:
    """The pool's headless Service and StatefulSet, in apply order."""
    name = workload_name(pool.name)
    labels = pool_labels(pool)
    refs: list[dict[str, Any]] = []
    if owner is not None:
        meta = owner["metadata"]
        refs = [
            {
                "apiVersion": API_VERSION,
                "kind": SERVING_POOL,
                "name": str(meta["name"]),
                "uid": str(meta["uid"]),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    def metadata() -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "namespace": pool.namespace, "labels": dict(labels)}
        if refs:
            out["ownerReferences"] = [dict(r) for r in refs]
        return out

    requests: dict[str, Any] = {"cpu": pool.server.cpu, "memory": pool.server.memory}
    limits: dict[str, Any] = {"memory": pool.server.memory}
    if pool.server.gpus > 0:
        requests[GPU_RESOURCE] = pool.server.gpus
        limits[GPU_RESOURCE] = pool.server.gpus
    tolerations = [
        {
            k: v
            for k, v in (
                ("key", t.key),
                ("operator", t.operator),
                ("value", t.value),
                ("effect", t.effect),
            )
            if v
        }
        for t in pool.tolerations
    ]
    if pool.server.gpus > 0:
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security(),
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": _node_terms(pool)
                }
            }
        },
        "containers": [
            {
                "name": "triton",
                "image": triton_image,
                "command": ["tritonserver"],
                "args": triton_pool_args(),
                "env": [{"name": "HOME", "value": "/tmp"}],
                "ports": [
                    {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                    {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": _probe("/v2/health/ready", "http", 2, 3),
                "livenessProbe": _probe("/v2/health/live", "http", 10, 3),
                "resources": {"requests": requests, "limits": limits},
                "securityContext": container_security(),
                "volumeMounts": [
                    {"name": "models", "mountPath": REPOSITORY},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            },
            {
                "name": "agent",
                "image": agent_image,
                "command": ["smallfleet"],
                "args": [
                    "agent",
                    f"--repository={REPOSITORY}",
                    "--address=$(POD_IP)",
                    f"--port={AGENT_PORT}",
                ],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOME", "value": "/tmp"},
                ],
                "ports": [{"name": "agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
                "readinessProbe": _probe("/healthz", "agent", 2, 3),
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"memory": "512Mi"},
                },
                "securityContext": container_security(),
                "volumeMounts": [
                    {"name": "models", "mountPath": REPOSITORY},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
        ],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
        ],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if pool.node_selector:
        pod_spec["nodeSelector"] = dict(pool.node_selector)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": _selector(pool),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(),
        "spec": {
            "replicas": servers,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": _selector(pool)},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    fresh: list[dict[str, Any]] = json.loads(json.dumps([service, statefulset]))
    return fresh
