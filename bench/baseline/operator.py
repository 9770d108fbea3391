"""The plainest kopf operator: one Deployment per PlainApp, adopted, status from the handler.

`bench/operator_throughput.py` and `bench/fleet.py` run it as `python -m kopf
run` with kopf's default settings to get the figure any kopf operator pays for
a burst of new objects (watch, handler, one create, kopf's own bookkeeping
patches), so smallfleet's figure measured in the same run shows what its own
work costs. A spec change patches the Deployment and returns the generation it
handled (kopf has no observedGeneration of its own); deletion is left to the
garbage collector through the owner reference.

With SMALLFLEET_BASELINE_CHILDREN naming a JSON list of manifests, it makes
those instead of its own Deployment: `bench/fleet.py` passes the children
smallfleet renders for one bench SmallModel (ConfigMap, Service, Deployment,
PodDisruptionBudget), with that model's name and namespace as placeholders
that each PlainApp's own replace. That is what any kopf operator making the
same children pays, and what the cluster pays in answer (the Service's
Endpoints, the init containers' pod updates), without smallfleet's own work.
Its update then changes the ConfigMap and rolls the Deployment, as a
smallfleet config change does.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final, cast

import kopf
import kubernetes

kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
APPS = kubernetes.client.AppsV1Api()
CORE = kubernetes.client.CoreV1Api()
POLICY = kubernetes.client.PolicyV1Api()

CHILDREN_PATH: Final = os.environ.get("SMALLFLEET_BASELINE_CHILDREN", "")
NAME_PLACEHOLDER: Final = os.environ.get("SMALLFLEET_BASELINE_NAME", "")
NAMESPACE_PLACEHOLDER: Final = os.environ.get("SMALLFLEET_BASELINE_NAMESPACE", "")
TEMPLATE: Final = open(CHILDREN_PATH).read() if CHILDREN_PATH else ""  # noqa: SIM115


@kopf.on.create("bench.smallfleet.io", "v1", "plainapps")
def create(spec: kopf.Spec, name: str, namespace: str | None, **_: Any) -> dict[str, str]:
    children = _children(name, str(namespace)) if TEMPLATE else [_deployment(spec, name)]
    for child in children:
        kopf.adopt(child)
        try:
            _create(child, str(namespace))
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:  # a retry after a lost response finds it already there
                raise
    return {"deployment": name}


@kopf.on.update("bench.smallfleet.io", "v1", "plainapps")
def update(
    spec: kopf.Spec, meta: kopf.Meta, name: str, namespace: str | None, **_: Any
) -> dict[str, Any]:
    if TEMPLATE:
        image = str(spec.get("image", "app:latest"))
        CORE.patch_namespaced_config_map(
            f"{name}-config", str(namespace), {"data": {"image": image}}
        )
        annotations = {"bench.smallfleet.io/image": image}
        patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        APPS.patch_namespaced_deployment(name, str(namespace), patch)
    else:
        APPS.patch_namespaced_deployment(
            name, str(namespace), {"spec": _deployment(spec, name)["spec"]}
        )
    return {"deployment": name, "generation": meta.get("generation")}


def _children(name: str, namespace: str) -> list[dict[str, Any]]:
    text = TEMPLATE.replace(NAME_PLACEHOLDER, name).replace(NAMESPACE_PLACEHOLDER, namespace)
    return cast(list[dict[str, Any]], json.loads(text))


def _create(child: dict[str, Any], namespace: str) -> None:
    kind, body = child["kind"], cast(Any, child)
    if kind == "ConfigMap":
        CORE.create_namespaced_config_map(namespace, body)
    elif kind == "Service":
        CORE.create_namespaced_service(namespace, body)
    elif kind == "Deployment":
        APPS.create_namespaced_deployment(namespace, body)
    elif kind == "PodDisruptionBudget":
        POLICY.create_namespaced_pod_disruption_budget(namespace, body)
    else:
        raise kopf.PermanentError(f"the baseline does not make a {kind}")


def _deployment(spec: kopf.Spec, name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "plain-kopf"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": str(spec.get("image", "app:latest")),
                            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                        }
                    ]
                },
            },
        },
    }
