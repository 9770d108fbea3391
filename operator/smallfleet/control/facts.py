"""What the operator knows about the cluster, read from its watches rather than asked for.

kopf already watches SmallModels, ModelPipelines, every child the operator
made and their Pods, every Pod that holds a GPU, and the Nodes; the handlers
keep those as kopf indices (`handlers.indices`). `Facts` is the read side of
them: the reconciler, placement and the autoscaler take every read from
here, so at steady state the operator sends no requests beyond its watches
and the Triton scrapes.

An index lags the API server by one watch event. Every decision made from
it is safe to repeat: server-side apply is idempotent, a new child's name is
looked up before it is created, and a status write carries the
resourceVersion it was computed from, so a stale read costs a retry, never a
wrong write.

kopf updates its indices on its event loop while handlers and the periodic
thread read them; each read below copies what it returns under the GIL, so a
reader never sees a collection change under it.

**Objects are kept packed** (`pack`: compact JSON, compressed) and decoded
on each read. As Python dicts and strings a watched Deployment costs about
35 KiB (every key and value its own object, none shared between documents),
its compact JSON 7 KiB, compressed 2.4 KiB; a fleet keeps one Deployment, one
pod and the SmallModel per model, which was most of the operator's memory
per model. Packing costs about 100 us per watch event, a read about 60 us
for a Deployment, and every reader gets a copy of its own.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from smallfleet.core.status import waits_on_triton

Key = tuple[str, str, str]  # (kind, namespace, name)
# A kopf index: key -> the values every indexed object returned for that key.
IndexView = Mapping[Any, Collection[Any]]

SMALL_MODEL: Final = "SmallModel"
MODEL_PIPELINE: Final = "ModelPipeline"
SERVING_POOL: Final = "ServingPool"
POOL_INDEX: Final = "servingpools"
# The kopf indices `handlers.indices` keeps, by the name kopf passes each under.
OWNER_INDEX: Final = {SMALL_MODEL: "smallmodels", MODEL_PIPELINE: "modelpipelines"}
# A resource's children other than its Deployments (and their pods), one index per kind.
CHILD_INDICES: Final = (
    "child_configmaps",
    "child_services",
    "child_poddisruptionbudgets",
    "child_horizontalpodautoscalers",
    "child_scaledobjects",
    "child_httproutes",
    "child_grpcroutes",
)
INDEX_NAMES: Final = (
    "smallmodels",
    "modelpipelines",
    "pipelines_by_model",
    "servingpools",
    "models_by_pool",
    "child_deployments",
    "child_pods",
    "triton_waiting",
    "gpu_pods",
    "cluster_nodes",
    *CHILD_INDICES,
)


class Facts(Protocol):
    """Read-only views of the watched cluster, keyed the way the operator asks."""

    def owner(self, key: Key) -> dict[str, Any] | None:
        """The SmallModel or ModelPipeline itself (None when not known or being deleted)."""

    def resources(self) -> list[Key]:
        """Every SmallModel and ModelPipeline being watched, sorted."""

    def deployments(self, key: Key) -> list[dict[str, Any]]:
        """The Deployments labelled as this resource's children (any uid: callers filter)."""

    def pods(self, key: Key) -> list[dict[str, Any]]:
        """The pods of this resource's Deployments."""

    def other_children(self, key: Key) -> list[dict[str, Any]]:
        """Its other children (ConfigMaps, Services, budgets, autoscalers, routes; any uid)."""

    def waiting_on_triton(self) -> list[Key]:
        """Resources with a pod whose Triton runs but which is not Ready (`waits_on_triton`)."""

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes."""

    def gpu_pods(self) -> list[dict[str, Any]]:
        """Every bound pod of the cluster that holds GPUs (slim: node, containers' GPU requests)."""

    def pipelines_using(self, namespace: str, model: str) -> list[str]:
        """Names of the pipelines in `namespace` whose steps name SmallModel `model`."""

    def pools(self) -> list[Key]:
        """Every ServingPool being watched, sorted."""

    def pool_models(self, namespace: str, pool: str) -> list[str]:
        """Names of the SmallModels in `namespace` whose spec.serving.pool names `pool`."""


# zlib's fastest level: a third of the JSON's size, in a third of the time json.dumps takes.
PACK_LEVEL: Final = 1


def pack(obj: Mapping[str, Any]) -> bytes:
    """An object as an index keeps it: compressed compact JSON (see the module's note)."""
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), PACK_LEVEL)


def _unpacked(value: Any) -> Any:
    """An index value as a dict of the reader's own: decoded if packed, else as it is."""
    return json.loads(zlib.decompress(value)) if isinstance(value, bytes) else value


def _values(index: IndexView | None, key: Any) -> list[Any]:
    if index is None:
        return []
    found = index.get(key)
    return [_unpacked(v) for v in found] if found is not None else []


@dataclass
class IndexFacts:
    """`Facts` over kopf indices, set by the handlers at start-up (empty until then)."""

    indices: dict[str, IndexView] = field(default_factory=dict)

    def attach(self, indices: Mapping[str, IndexView]) -> None:
        self.indices = dict(indices)

    def owner(self, key: Key) -> dict[str, Any] | None:
        index = POOL_INDEX if key[0] == SERVING_POOL else OWNER_INDEX.get(key[0])
        found = _values(self.indices.get(index) if index else None, key)
        if not found or (found[0].get("metadata") or {}).get("deletionTimestamp"):
            return None
        return dict(found[0])

    def resources(self) -> list[Key]:
        keys: list[Key] = []
        for index in OWNER_INDEX.values():
            keys += [k for k in list(self.indices.get(index) or ()) if isinstance(k, tuple)]
        return sorted(keys)

    def deployments(self, key: Key) -> list[dict[str, Any]]:
        return _values(self.indices.get("child_deployments"), key)

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return _values(self.indices.get("child_pods"), key)

    def waiting_on_triton(self) -> list[Key]:
        keys = list(self.indices.get("triton_waiting") or ())
        return sorted(k for k in keys if isinstance(k, tuple))

    def nodes(self) -> list[dict[str, Any]]:
        return _values(self.indices.get("cluster_nodes"), None)

    def gpu_pods(self) -> list[dict[str, Any]]:
        return _values(self.indices.get("gpu_pods"), None)

    def pipelines_using(self, namespace: str, model: str) -> list[str]:
        return sorted(set(_values(self.indices.get("pipelines_by_model"), (namespace, model))))

    def pools(self) -> list[Key]:
        return sorted(k for k in list(self.indices.get(POOL_INDEX) or ()) if isinstance(k, tuple))

    def pool_models(self, namespace: str, pool: str) -> list[str]:
        return sorted(set(_values(self.indices.get("models_by_pool"), (namespace, pool))))

    def other_children(self, key: Key) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for index in CHILD_INDICES:
            out += _values(self.indices.get(index), key)
        return out

    def routes(self, key: Key) -> list[dict[str, Any]]:
        """The HTTPRoutes and GRPCRoutes labelled as this resource's children, with status."""
        return _values(self.indices.get("child_httproutes"), key) + _values(
            self.indices.get("child_grpcroutes"), key
        )


@dataclass
class StaticFacts:
    """`Facts` from plain lists: tests, the offline CLI and the stress test feed it directly."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    children: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    others: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    pod_list: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    node_list: list[dict[str, Any]] = field(default_factory=list)
    gpu_pod_list: list[dict[str, Any]] = field(default_factory=list)

    def owner(self, key: Key) -> dict[str, Any] | None:
        return self.objects.get(key)

    def resources(self) -> list[Key]:
        return sorted(k for k in self.objects if k[0] != SERVING_POOL)

    def deployments(self, key: Key) -> list[dict[str, Any]]:
        return list(self.children.get(key, []))

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return list(self.pod_list.get(key, []))

    def other_children(self, key: Key) -> list[dict[str, Any]]:
        return list(self.others.get(key, []))

    def waiting_on_triton(self) -> list[Key]:
        return sorted(
            k for k, pods in self.pod_list.items() if any(waits_on_triton(p) for p in pods)
        )

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.node_list)

    def gpu_pods(self) -> list[dict[str, Any]]:
        return list(self.gpu_pod_list)

    def pipelines_using(self, namespace: str, model: str) -> list[str]:
        out = []
        for (kind, ns, name), body in self.objects.items():
            steps = (body.get("spec") or {}).get("steps") or []
            if (
                kind == MODEL_PIPELINE
                and ns == namespace
                and any(isinstance(s, Mapping) and s.get("model") == model for s in steps)
            ):
                out.append(name)
        return sorted(out)

    def pools(self) -> list[Key]:
        return sorted(k for k in self.objects if k[0] == SERVING_POOL)

    def pool_models(self, namespace: str, pool: str) -> list[str]:
        return sorted(
            name
            for (kind, ns, name), body in self.objects.items()
            if kind == SMALL_MODEL
            and ns == namespace
            and ((body.get("spec") or {}).get("serving") or {}).get("pool") == pool
        )
