"""What every kopf handler module shares: the registry, the resources, and the reconcile call.

The handlers of SmallModels and ModelPipelines only put the object's key on
the reconcile queue (`control.workqueue`), whose threads reconcile it and
retry a failure with backoff. What only reads memory also runs on kopf's
event loop (the indices, `when=` filters and the event handlers that usually
have nothing to do), so the many events of children and unrelated pods
never wait behind a reconcile for a thread. The few handlers that wait for
the API server (a deletion's forgetting, ServingPools) are sync functions in
kopf's thread pool.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import kopf

from smallfleet.control.facts import MODEL_PIPELINE, SERVING_POOL, SMALL_MODEL
from smallfleet.control.runtime import Runtime
from smallfleet.core.render.children import (
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    MANAGED_BY,
)
from smallfleet.core.render.routes import GATEWAY_GROUP

log = logging.getLogger("smallfleet.handlers")

GROUP: Final = "serving.smallfleet.io"
VERSION: Final = "v1alpha1"
MODELS: Final = (GROUP, VERSION, "smallmodels")
PIPELINES: Final = (GROUP, VERSION, "modelpipelines")
POOLS: Final = (GROUP, VERSION, "servingpools")
# The kinds whose kopf change handlers only put a key on the reconcile queue (`enqueue`):
# a listed one passes kopf's start-up gate, and the queue waits instead (`handlers.gate`).
QUEUED_OWNERS: Final = ((GROUP, MODELS[2]), (GROUP, PIPELINES[2]))
MANAGED: Final = {LABEL_MANAGED_BY: MANAGED_BY}
MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
# Every kind of child a SmallModel or ModelPipeline has, as kopf watches it: with the
# managed-by label selector on the server, so that unrelated objects never reach kopf.
DEPLOYMENTS: Final = ("apps", "v1", "deployments")
CONFIGMAPS: Final = ("", "v1", "configmaps")
SERVICES: Final = ("", "v1", "services")
BUDGETS: Final = ("policy", "v1", "poddisruptionbudgets")
HPAS: Final = ("autoscaling", "v2", "horizontalpodautoscalers")
SCALEDOBJECTS: Final = ("keda.sh", "v1alpha1", "scaledobjects")
HTTPROUTES: Final = (GATEWAY_GROUP, "v1", "httproutes")
GRPCROUTES: Final = (GATEWAY_GROUP, "v1", "grpcroutes")
CHILD_RESOURCES: Final = (
    DEPLOYMENTS,
    CONFIGMAPS,
    SERVICES,
    BUDGETS,
    HPAS,
    SCALEDOBJECTS,
    HTTPROUTES,
    GRPCROUTES,
)

registry: Final = kopf.OperatorRegistry()


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("smallfleet runtime missing from kopf memo")
    return runtime


def enqueue(memo: Any, kind: str, namespace: str | None, name: str, *, once: bool = False) -> None:
    """Have one SmallModel or ModelPipeline reconciled by the queue's threads, from its key.

    The handler returns at once: kopf's per-object worker, and the event body
    it holds, are gone before the reconcile starts (`control.workqueue`).
    """
    runtime_of(memo).enqueue((kind, namespace or "", name), once=once)


def refresh_soon(memo: Any, kind: str, namespace: str | None, name: str) -> None:
    """Have an owner's status brought up to date from its watched children, by the refresh queue.

    Returns at once: a burst of child events costs one queue entry per owner,
    not a kopf worker per event holding its body until a thread is free.
    """
    runtime_of(memo).refresh_soon((kind, namespace or "", name))


def owner_of(
    labels: Any, kinds: tuple[str, ...] = (SMALL_MODEL, MODEL_PIPELINE)
) -> tuple[str, str] | None:
    """(kind, name) of the resource of `kinds` whose child the labels say this is, if any."""
    kind, name = labels.get(LABEL_OWNER_KIND), labels.get(LABEL_OWNER_NAME)
    if kind in kinds and name:
        return str(kind), str(name)
    return None


OWNER_KINDS: Final = (SMALL_MODEL, MODEL_PIPELINE, SERVING_POOL)
