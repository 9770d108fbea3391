"""GPU room per node, from Node and Pod objects as the API server returns them.

Placement needs whole replicas per node, not a regional GPU total: two nodes
with one free GPU each cannot hold a two-GPU replica. This turns the raw
objects into `NodeCapacity` values without I/O; the runtime lists nodes and
pods and calls `node_capacity`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from smallfleet.core.placement.policies import NodeCapacity

REGION_LABEL: Final = "topology.kubernetes.io/region"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_RESOURCE: Final = "nvidia.com/gpu"


def _count(value: Any) -> int:
    try:
        return max(0, int(str(value if value is not None else "0")))
    except ValueError:
        return 0


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds: its containers' requests, or its largest init container's."""
    spec = pod.get("spec") or {}
    total = 0
    for container in spec.get("containers") or []:
        res = container.get("resources") or {}
        requests = res.get("requests") or {}
        limits = res.get("limits") or {}
        total += _count(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE)))
    init = 0
    for container in spec.get("initContainers") or []:
        res = container.get("resources") or {}
        init = max(init, _count((res.get("requests") or {}).get(GPU_RESOURCE)))
    return max(total, init)


def node_capacity(
    nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> list[NodeCapacity]:
    """One `NodeCapacity` per schedulable node that carries a region label."""
    used: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        used[node] = used.get(node, 0) + pod_gpus(pod)
    out: list[NodeCapacity] = []
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        region = labels.get(REGION_LABEL)
        if not region or (node.get("spec") or {}).get("unschedulable"):
            continue
        name = str(meta.get("name", ""))
        allocatable = _count(
            ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
        )
        product = labels.get(GPU_PRODUCT_LABEL)
        out.append(
            NodeCapacity(
                name=name,
                region=str(region),
                gpu_product=str(product) if product else None,
                allocatable_gpus=allocatable,
                requested_gpus=used.get(name, 0),
                cpu_only=allocatable == 0,
            )
        )
    return sorted(out, key=lambda n: n.name)


@dataclass(frozen=True)
class Claim:
    """GPUs a placement decision promised to a model whose pods are not bound yet.

    Decisions made at the same moment all see the same free GPUs until the
    scheduler binds the first model's pods; without claims the later models
    crowd into the room the first one took, wait Unschedulable, and move again.
    """

    region: str
    gpu_product: str | None
    gpus_per_replica: int
    replicas: int  # replicas not bound yet


def with_claims(capacity: Sequence[NodeCapacity], claims: Iterable[Claim]) -> list[NodeCapacity]:
    """Capacity as it will be once the claimed replicas bind.

    Each replica goes where the scheduler's default spreading would put it:
    the fitting node with the most free GPUs (ties by name). A replica that
    fits nowhere takes nothing; its own model will learn that from the scheduler.
    """
    nodes = {n.name: n for n in capacity}
    for claim in claims:
        if claim.gpus_per_replica <= 0:
            continue
        for _ in range(claim.replicas):
            fitting = [
                n
                for n in nodes.values()
                if n.region == claim.region
                and not n.cpu_only
                and n.free_gpus >= claim.gpus_per_replica
                and (
                    not claim.gpu_product
                    or (n.gpu_product or "").lower() == claim.gpu_product.lower()
                )
            ]
            if not fitting:
                break
            best = min(fitting, key=lambda n: (-n.free_gpus, n.name))
            nodes[best.name] = dataclasses.replace(
                best, requested_gpus=best.requested_gpus + claim.gpus_per_replica
            )
    return sorted(nodes.values(), key=lambda n: n.name)
