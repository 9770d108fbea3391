"""ModelPipeline handlers: reconcile on create, update and resume."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from smallfleet.control.facts import MODEL_PIPELINE
from smallfleet.handlers import storage
from smallfleet.handlers.base import PIPELINES, reconcile, registry, runtime_of


@kopf.on.create(*PIPELINES, registry=registry)
def modelpipeline_create(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry, once=True)


@kopf.on.update(*PIPELINES, registry=registry)
def modelpipeline_update(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry)


@kopf.on.resume(*PIPELINES, registry=registry)
def modelpipeline_resume(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    reconcile(memo, body, retry)


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
