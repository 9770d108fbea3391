"""SmallModel handlers: reconcile on create, update and resume; tell pipelines that use it."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from smallfleet.control.facts import MODEL_PIPELINE, SMALL_MODEL
from smallfleet.handlers import storage
from smallfleet.handlers.base import MODELS, enqueue, registry, runtime_of


@kopf.on.create(*MODELS, registry=registry)
async def smallmodel_create(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, SMALL_MODEL, namespace, name, once=True)


@kopf.on.update(*MODELS, registry=registry)
async def smallmodel_update(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, SMALL_MODEL, namespace, name)


@kopf.on.resume(*MODELS, registry=registry)
async def smallmodel_resume(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, SMALL_MODEL, namespace, name)


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
    for pipeline in runtime.facts.pipelines_using(*key):
        runtime.enqueue((MODEL_PIPELINE, key[0], pipeline))
