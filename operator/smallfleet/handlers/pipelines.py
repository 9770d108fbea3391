"""ModelPipeline handlers: reconcile on create, update and resume."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from smallfleet.control.facts import MODEL_PIPELINE
from smallfleet.handlers import storage
from smallfleet.handlers.base import PIPELINES, enqueue, registry, runtime_of


@kopf.on.create(*PIPELINES, registry=registry)
async def modelpipeline_create(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, MODEL_PIPELINE, namespace, name, once=True)


@kopf.on.update(*PIPELINES, registry=registry)
async def modelpipeline_update(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, MODEL_PIPELINE, namespace, name)


@kopf.on.resume(*PIPELINES, registry=registry)
async def modelpipeline_resume(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    enqueue(memo, MODEL_PIPELINE, namespace, name)


@kopf.on.delete(*PIPELINES, registry=registry, optional=True)
def modelpipeline_delete(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    runtime_of(memo).reconciler.forget(MODEL_PIPELINE, namespace, name)


@kopf.on.event(*PIPELINES, registry=registry)
async def modelpipeline_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """A pipeline gone: forget it. A coroutine, so its other events cost no handler thread."""
    if type == "DELETED":
        storage.forget(body)
        await asyncio.to_thread(runtime_of(memo).reconciler.forget, MODEL_PIPELINE, namespace, name)
