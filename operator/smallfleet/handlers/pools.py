"""ServingPool handlers: a pool's change reaches its servers at once, not at the next pass."""

from __future__ import annotations

from typing import Any

import kopf

from smallfleet.control.facts import SERVING_POOL
from smallfleet.handlers import storage
from smallfleet.handlers.base import POOLS, log, registry, runtime_of
from smallfleet.kube import KubeError, Transient


def _sync(memo: Any, namespace: str | None, name: str) -> None:
    pools = runtime_of(memo).pools
    if pools is None:
        return
    try:
        pools.sync((SERVING_POOL, namespace or "", name))
    except Transient as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc
    except KubeError as exc:
        log.warning("pool %s/%s: %s; the periodic pass retries", namespace, name, exc)


@kopf.on.create(*POOLS, registry=registry)
def servingpool_create(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _sync(memo, namespace, name)


@kopf.on.update(*POOLS, registry=registry)
def servingpool_update(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _sync(memo, namespace, name)


@kopf.on.resume(*POOLS, registry=registry)
def servingpool_resume(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _sync(memo, namespace, name)


def _deleted(type: str, **_: Any) -> bool:
    """A filter: only a deletion needs a handler thread (kopf decides it on its event loop)."""
    return type == "DELETED"


@kopf.on.event(*POOLS, when=_deleted, registry=registry)
def servingpool_event(
    body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """A pool gone: its servers go by garbage collection; its models say so at once."""
    storage.forget(body)
    runtime = runtime_of(memo)
    if runtime.pools is None:
        return
    for key in runtime.pools.forget_pool((SERVING_POOL, namespace or "", name)):
        try:
            runtime.reconciler.reconcile_named(*key)
        except KubeError as exc:
            log.warning("model %s/%s not updated, the resync will: %s", key[1], key[2], exc)
