"""Gateway API routes that make a server plan's Service reachable from a Gateway (spec.expose).

The operator owns the route, not the Gateway: platform teams run gateways
(Envoy Gateway, Istio, GKE, ...) and decide which namespaces may attach;
model owners only say which gateway, which host names and which paths. So
the routes name their Gateway in `parentRefs` and send traffic to the
plan's one Service, which already selects every region's pods and so keeps
one address through a make-before-break move.

HTTP is routed by path: Triton serves each model under `/v2/models/<name>`
(infer, ready, config, versions), so that prefix sends one model's traffic
to its Service even when many models share a host name. gRPC cannot be
routed per model: Triton's service `inference.GRPCInferenceService` names
the model inside each request message, so the GRPCRoute matches the whole
service, and models sharing a gateway tell their gRPC apart by host name or
listener.

Only fields the operator means to own are rendered (no weights, no default
group or kind), so the API server's defaults never read as a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.core.render.triton import GRPC_PORT, HTTP_PORT
from smallfleet.core.spec import Expose

GATEWAY_API_VERSION: Final = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
HTTP_ROUTE: Final = "HTTPRoute"
GRPC_ROUTE: Final = "GRPCRoute"
ROUTE_KINDS: Final = (HTTP_ROUTE, GRPC_ROUTE)
TRITON_GRPC_SERVICE: Final = "inference.GRPCInferenceService"


def model_path(name: str) -> str:
    """The path prefix under which Triton serves a model's HTTP API."""
    return f"/v2/models/{name}"


def _parent_ref(expose: Expose, section_name: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": expose.gateway.name}
    if expose.gateway.namespace:
        ref["namespace"] = expose.gateway.namespace
    if section_name:
        ref["sectionName"] = section_name
    return ref


def _route(
    kind: str,
    metadata: Mapping[str, Any],
    parent: dict[str, Any],
    hostnames: tuple[str, ...],
    rule: dict[str, Any],
) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    spec["rules"] = [rule]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": kind,
        "metadata": dict(metadata),
        "spec": spec,
    }


def route_manifests(plan: ServerPlan, metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The HTTPRoute and GRPCRoute that `plan.expose` asks for (none without it).

    `metadata` is the children's common metadata (name, namespace, labels,
    ownerReferences); both routes take the plan's name, as kinds apart.
    """
    expose = plan.expose
    if expose is None:
        return []
    out: list[dict[str, Any]] = []
    if expose.http.enabled:
        prefix = expose.http.path_prefix or model_path(plan.name)
        out.append(
            _route(
                HTTP_ROUTE,
                metadata,
                _parent_ref(expose, expose.gateway.section_name),
                expose.hostnames,
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "backendRefs": [{"name": plan.name, "port": HTTP_PORT}],
                },
            )
        )
    if expose.grpc.enabled:
        out.append(
            _route(
                GRPC_ROUTE,
                metadata,
                _parent_ref(expose, expose.grpc.section_name or expose.gateway.section_name),
                expose.grpc.hostnames or expose.hostnames,
                {
                    "matches": [{"method": {"type": "Exact", "service": TRITON_GRPC_SERVICE}}],
                    "backendRefs": [{"name": plan.name, "port": GRPC_PORT}],
                },
            )
        )
    return out
