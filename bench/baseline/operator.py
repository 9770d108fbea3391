"""The plainest kopf operator: one Deployment per PlainApp, adopted, status from the handler.

`bench/operator_throughput.py` and `bench/fleet.py` run it as `python -m kopf
run` with kopf's default settings to get the figure any kopf operator pays for
a burst of new objects (watch, handler, one create, kopf's own bookkeeping
patches), so smallfleet's figure measured in the same run shows what its own
work costs. A spec change patches the Deployment and returns the generation it
handled (kopf has no observedGeneration of its own); deletion is left to the
garbage collector through the owner reference.
"""

from __future__ import annotations

from typing import Any, cast

import kopf
import kubernetes

kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
APPS = kubernetes.client.AppsV1Api()


@kopf.on.create("bench.smallfleet.io", "v1", "plainapps")
def create(spec: kopf.Spec, name: str, namespace: str | None, **_: Any) -> dict[str, str]:
    deployment = _deployment(spec, name)
    kopf.adopt(deployment)
    try:
        APPS.create_namespaced_deployment(str(namespace), cast(Any, deployment))
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:  # a retry after a lost response finds it already there
            raise
    return {"deployment": name}


@kopf.on.update("bench.smallfleet.io", "v1", "plainapps")
def update(
    spec: kopf.Spec, meta: kopf.Meta, name: str, namespace: str | None, **_: Any
) -> dict[str, Any]:
    APPS.patch_namespaced_deployment(
        name, str(namespace), {"spec": _deployment(spec, name)["spec"]}
    )
    return {"deployment": name, "generation": meta.get("generation")}


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
