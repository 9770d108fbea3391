"""kopf indices: the operator's view of the cluster, kept by kopf from its watches.

kopf fills every index from its watch streams (the initial listing first:
resource handlers start only once the indices are populated) and keeps it
current; `control.facts.IndexFacts` reads them. The index functions are
coroutines, though nothing in them waits: kopf runs a sync function in its
handler thread pool, where every event of every watched Pod and Deployment
would queue behind the reconciles (and hold its body meanwhile); a coroutine
runs at once on kopf's event loop. Each function stores the
least that the operator reads: children and owners without their
`managedFields` and kopf's bookkeeping annotations, and of every other pod
only its node and GPU requests, and only if it holds a GPU, so that
unrelated objects in the cluster cost (almost) no memory. The objects kept
per model (the owner, its children and pods) are kept packed
(`facts.pack`: compressed JSON), a fifteenth of what they cost as Python
objects; `IndexFacts` decodes them on each read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import kopf

from smallfleet.control.facts import MODEL_PIPELINE, SERVING_POOL, SMALL_MODEL, Key, pack
from smallfleet.control.readiness import TRITON_CONTAINER
from smallfleet.core import projections
from smallfleet.core.placement.capacity import GPU_RESOURCE, pod_gpus
from smallfleet.core.status import waits_on_triton
from smallfleet.handlers.base import (
    BUDGETS,
    CONFIGMAPS,
    DEPLOYMENTS,
    GRPCROUTES,
    HPAS,
    HTTPROUTES,
    MANAGED,
    MODELS,
    OWNER_KINDS,
    PIPELINES,
    POOLS,
    SCALEDOBJECTS,
    SERVICES,
    owner_of,
    registry,
)

KOPF_PREFIX: Final = "smallfleet.io/"


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its managedFields and kopf's own annotations."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    notes = meta.get("annotations") or {}
    if any(k.startswith(KOPF_PREFIX) for k in notes):
        meta["annotations"] = {k: v for k, v in notes.items() if not k.startswith(KOPF_PREFIX)}
    out["metadata"] = meta
    return out


def _key(kind: str, namespace: str | None, name: str) -> Key:
    return (kind, namespace or "", name)


@kopf.index(*MODELS, registry=registry)
async def smallmodels(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, bytes]:
    return {_key(SMALL_MODEL, namespace, name): pack(slim(body))}


@kopf.index(*PIPELINES, registry=registry)
async def modelpipelines(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, bytes]:
    return {_key(MODEL_PIPELINE, namespace, name): pack(slim(body))}


@kopf.index(*PIPELINES, registry=registry)
async def pipelines_by_model(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """(namespace, SmallModel) -> the pipelines whose steps name it."""
    steps = spec.get("steps") or []
    return {(namespace or "", str(s.get("model"))): name for s in steps if isinstance(s, Mapping)}


@kopf.index(*POOLS, registry=registry)
async def servingpools(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {_key(SERVING_POOL, namespace, name): slim(body)}


@kopf.index(*MODELS, registry=registry)
async def models_by_pool(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str] | None:
    """(namespace, ServingPool) -> the SmallModels whose spec.serving.pool names it."""
    pool = (spec.get("serving") or {}).get("pool")
    return {(namespace or "", str(pool)): name} if pool else None


@kopf.index(*DEPLOYMENTS, registry=registry)
async def child_deployments(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, bytes] | None:
    owner = owner_of(labels)
    return None if owner is None else {_key(owner[0], namespace, owner[1]): pack(slim(body))}


@kopf.index("", "v1", "pods", registry=registry)
async def child_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, bytes] | None:
    """A child pod's identity, node and status: what readiness, problems and scrapes read.

    The spec (a copy of the Deployment's template) is left out: it is most of
    a pod's size and nothing reads it.
    """
    owner = owner_of(labels, OWNER_KINDS)
    if owner is None:
        return None
    meta = slim(body)["metadata"]
    pod = {
        "metadata": meta,
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": body.get("status") or {},
    }
    return {_key(owner[0], namespace, owner[1]): pack(pod)}


@kopf.index("", "v1", "pods", registry=registry)
async def triton_waiting(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, str] | None:
    """The owners of child pods whose Triton runs unready: all that `control.readiness` asks.

    So its pass every two seconds costs what is loading, not what the fleet is.
    """
    owner = owner_of(labels, OWNER_KINDS)
    if owner is None or not waits_on_triton(body, TRITON_CONTAINER):
        return None
    return {_key(owner[0], namespace, owner[1]): str(body.get("metadata", {}).get("uid"))}


@kopf.index("", "v1", "pods", registry=registry)
async def gpu_pods(
    body: kopf.Body, namespace: str | None, name: str, labels: kopf.Labels, **_: Any
) -> dict[None, dict[str, Any]] | None:
    """Every bound, live pod that holds GPUs: the room it takes on its node, and whose it is."""
    spec = body.get("spec") or {}
    node = spec.get("nodeName")
    if not node or (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    gpus = pod_gpus(body)
    if gpus <= 0:
        return None
    return {
        None: {
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "nodeName": node,
                "containers": [{"resources": {"requests": {GPU_RESOURCE: str(gpus)}}}],
            },
            "status": {"phase": (body.get("status") or {}).get("phase")},
        }
    }


async def child_object(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, bytes] | None:
    """A child other than a Deployment or pod, whole (less managedFields), keyed by its owner.

    The reconciler diffs these against their rendering when the spec or the
    rendering changes, and prunes the ones no longer wanted, from here
    instead of listing each kind per owner (seven requests per owner per
    spec change, each a scan of the namespace on the API server). A route's
    status is the gateway controllers' answer, which status reads.
    """
    owner = owner_of(labels)
    if owner is None:
        return None
    return {_key(owner[0], namespace, owner[1]): pack(slim(body))}


# One index per kind, named as `control.facts.CHILD_INDICES` reads them. Without the CRDs of
# KEDA's ScaledObjects or the Gateway API's routes kopf resolves no such resource and theirs
# stay empty (nothing of that kind can exist to prune).
CHILD_OBJECT_INDICES: Final = {
    "child_configmaps": CONFIGMAPS,
    "child_services": SERVICES,
    "child_poddisruptionbudgets": BUDGETS,
    "child_horizontalpodautoscalers": HPAS,
    "child_scaledobjects": SCALEDOBJECTS,
    "child_httproutes": HTTPROUTES,
    "child_grpcroutes": GRPCROUTES,
}
for _index, _resource in CHILD_OBJECT_INDICES.items():
    kopf.index(*_resource, id=_index, labels=MANAGED, registry=registry)(child_object)


@kopf.index("", "v1", "nodes", registry=registry)
async def cluster_nodes(body: kopf.Body, **_: Any) -> dict[None, dict[str, Any]]:
    node = projections.node(slim(body))
    status = node.get("status") or {}
    node["status"] = {k: dict(status.get(k) or {}) for k in projections.NODE_STATUS_FIELDS}
    return {None: node}
