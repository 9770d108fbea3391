"""What the operator reads of the pods and nodes it watches, and nothing more.

The operator watches every pod (GPU capacity counts other teams' pods too)
and every node, yet it reads few of their fields: a pod's identity, node,
its containers' resource requests and its status; a node's identity, spec
and capacity. The rest (a pod's volumes, env, probes and tolerations, the
copy of its Deployment's template; a node's image list and conditions) is
most of each body. kopf holds every listed body until all kinds are indexed,
so what a restart costs in memory is what reaches it; the watch stream
projects these two kinds to what the readers below need.

Readers: `placement.capacity.pod_gpus`, `status.pod_problem`,
`status.waits_on_triton`, `status.pod_ready`, `status.scheduler_refusal`
and the pod and node indices. A reader of another field must add it here;
`tests/unit/test_projections.py` checks each reader against whole bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

CONTAINER_FIELDS: Final = ("name", "resources")
POD_SPEC_FIELDS: Final = ("nodeName",)
NODE_STATUS_FIELDS: Final = ("allocatable", "capacity")


def _containers(items: Any) -> list[dict[str, Any]] | None:
    if not isinstance(items, list):
        return None
    return [{k: c[k] for k in CONTAINER_FIELDS if k in c} for c in items if isinstance(c, Mapping)]


def pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """The pod with its spec cut to its node and its containers' names and resources."""
    out = dict(body)
    spec = body.get("spec")
    if isinstance(spec, Mapping):
        cut: dict[str, Any] = {k: spec[k] for k in POD_SPEC_FIELDS if k in spec}
        for key in ("containers", "initContainers"):
            containers = _containers(spec.get(key))
            if containers is not None:
                cut[key] = containers
        out["spec"] = cut
    return out


def node(body: Mapping[str, Any]) -> dict[str, Any]:
    """The node with its status cut to its allocatable and capacity."""
    out = dict(body)
    status = body.get("status")
    if isinstance(status, Mapping):
        out["status"] = {k: status[k] for k in NODE_STATUS_FIELDS if k in status}
    return out
