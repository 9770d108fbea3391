"""SmallModel handlers: reconcile on create, update and resume; tell pipelines that use it."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from smallfleet.control.facts import MODEL_PIPELINE, SMALL_MODEL
from smallfleet.control.runtime import Runtime
from smallfleet.handlers import storage
from smallfleet.handlers.base import MODELS, log, reconcile, registry, runtime_of
from smallfleet.kube import KubeError


@kopf.on.create(*MODELS, registry=registry)
def smallmodel_create(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry, once=True)


@kopf.on.update(*MODELS, registry=registry)
def smallmodel_update(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry)


@kopf.on.resume(*MODELS, registry=registry)
def smallmodel_resume(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry)


@kopf.on.delete(*MODELS, registry=registry, optional=True)
def smallmodel_delete(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    # Children go by garbage collection (ownerReferences); only memory is left to clear.
    runtime = runtime_of(memo)
    runtime.reconciler.forget(SMALL_MODEL, namespace, name)
    if runtime.pools is not None:
        runtime.pools.forget_model((SMALL_MODEL, namespace or "", name))


@kopf.on.event(*MODELS, registry=registry)
async def smallmodel_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Re-reconcile the pipelines that name this model when it appears, changes or goes.

    A coroutine: most events (our own status writes) change nothing here and
    are decided on kopf's event loop; only work that waits (a lock, requests)
    goes to a thread.
    """
    runtime = runtime_of(memo)
    key = (namespace or "", name)
    generation = body.get("metadata", {}).get("generation")
    if type == "DELETED":
        storage.forget(body)
        runtime.generations.pop(key, None)
        await asyncio.to_thread(runtime.reconciler.forget, SMALL_MODEL, namespace, name)
    elif not type or runtime.generations.get(key) == generation:
        runtime.generations[key] = generation
        return
    else:
        runtime.generations[key] = generation
    pipelines = runtime.facts.pipelines_using(*key)
    if pipelines:
        await asyncio.to_thread(_reconcile_pipelines, runtime, key, pipelines)


def _reconcile_pipelines(runtime: Runtime, key: tuple[str, str], pipelines: list[str]) -> None:
    try:
        for pipeline in pipelines:
            runtime.reconciler.reconcile_named(MODEL_PIPELINE, key[0], pipeline)
    except KubeError as exc:
        log.warning("pipelines using %s/%s not updated, the resync will: %s", *key, exc)
