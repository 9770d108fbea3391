"""Child handlers: a Deployment's or pod's change reaches its owner's status within one event.

Children report back through the same watches that fill the indices, so
readiness reaches the owner's status within a watch event instead of a
polling period; the resync is only the safety net.
"""

from __future__ import annotations

from typing import Any

import kopf

from smallfleet.core import status as st
from smallfleet.handlers.base import (
    DEPLOYMENTS,
    GRPCROUTES,
    HTTPROUTES,
    MANAGED,
    owner_of,
    refresh_soon,
    registry,
    runtime_of,
)


def _deployment_news(
    type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> bool:
    """Whether a child Deployment's event tells its owner something new.

    A filter, so kopf decides it on its event loop: most events of a
    Deployment (its own status bookkeeping, our applies) change nothing the
    owner reports, and they never wait for a handler thread.
    """
    owner = owner_of(body.get("metadata", {}).get("labels") or {})
    if not type or owner is None:
        return False  # the initial listing: the resume handlers cover it
    return type == "DELETED" or runtime_of(memo).reconciler.deployment_changed(
        owner[0], namespace, owner[1], body
    )


@kopf.on.event(*DEPLOYMENTS, labels=MANAGED, when=_deployment_news, registry=registry)
async def deployment_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child Deployment changed: bring its owner's status up to date (by the refresh queue)."""
    owner = owner_of(body.get("metadata", {}).get("labels") or {})
    if owner is not None:
        refresh_soon(memo, owner[0], namespace, owner[1])


def _watched(type: str, **_: Any) -> bool:
    """Not the initial listing: the owners' resume handlers cover what a listed child says.

    Every event handler here ignores the listing, so listed children need not
    wait at kopf's start-up gate (`handlers.gate`).
    """
    return bool(type)


@kopf.on.event(*HTTPROUTES, labels=MANAGED, when=_watched, registry=registry)
async def httproute_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child route changed (a gateway controller answered): bring Exposed up to date."""
    _route_changed(body, namespace, memo)


@kopf.on.event(*GRPCROUTES, labels=MANAGED, when=_watched, registry=registry)
async def grpcroute_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """As `httproute_event`, for a GRPCRoute."""
    _route_changed(body, namespace, memo)


def _route_changed(body: kopf.Body, namespace: str | None, memo: Any) -> None:
    owner = owner_of(body.get("metadata", {}).get("labels") or {})
    if owner is not None:
        refresh_soon(memo, owner[0], namespace, owner[1])


def _pod_in_trouble(type: str, body: kopf.Body, **_: Any) -> bool:
    return type in ("ADDED", "MODIFIED") and st.pod_problem(body) is not None


@kopf.on.event("", "v1", "pods", labels=MANAGED, when=_pod_in_trouble, registry=registry)
async def pod_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child pod reports a problem (unschedulable, failed fetch or load): surface it now."""
    owner = owner_of(body.get("metadata", {}).get("labels") or {})
    if owner is not None:
        refresh_soon(memo, owner[0], namespace, owner[1])


def _node_deleted(type: str, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event("", "v1", "nodes", when=_node_deleted, registry=registry)
def node_deleted(name: str, memo: Any, **_: Any) -> None:
    """A node was deleted: the owners of pods bound to it no longer serve from them.

    Those pods stay Ready, and counted by their Deployments, until the pod
    garbage collector deletes them (40 s or more later), and no event of
    theirs says so; status, which no longer counts a pod on a missing node,
    is brought up to date now rather than at the next resync.
    """
    runtime = runtime_of(memo)
    for kind, namespace, owner in runtime.reconciler.known():
        pods = runtime.facts.pods((kind, namespace, owner))
        if any((p.get("spec") or {}).get("nodeName") == name for p in pods):
            refresh_soon(memo, kind, namespace, owner)
