"""kopf handlers: when to reconcile, never how.

Each handler is a few lines that hand the object to `Reconciler` and turn a
transient failure into `kopf.TemporaryError` so kopf retries it with backoff.
Children report back through watches on Deployments and Pods labelled
`app.kubernetes.io/managed-by=smallfleet`, so readiness reaches the owner's
status within a watch event instead of a polling period; a slow timer
resyncs as a safety net. SmallModel events re-reconcile the pipelines that
name the model, so a pipeline Stalled on a missing model recovers as soon
as the model is applied.

Handlers are sync functions: kopf runs them in its thread pool, and the
Kubernetes client they use is synchronous.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf

from smallfleet import leadership, telemetry
from smallfleet import status as st
from smallfleet.handlers.reconcile import MODEL_PIPELINE, SMALL_MODEL, Reconciler
from smallfleet.kube import Kube, KubeError, Transient
from smallfleet.render.children import (
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    MANAGED_BY,
)

log = logging.getLogger("smallfleet.handlers")

GROUP: Final = "serving.smallfleet.io"
VERSION: Final = "v1alpha1"
MODELS: Final = (GROUP, VERSION, "smallmodels")
PIPELINES: Final = (GROUP, VERSION, "modelpipelines")
MANAGED: Final = {LABEL_MANAGED_BY: MANAGED_BY}
RESYNC_SECONDS: Final = 60.0
MAX_BACKOFF_SECONDS: Final = 60.0
PERIODIC_TICK_SECONDS: Final = 1.0
LEADERSHIP_CACHE_SECONDS: Final = 2.0

registry: Final = kopf.OperatorRegistry()


@dataclass
class Runtime:
    """What every handler shares; passed to kopf as its `memo`.

    Periodic work (the status resync here; carbon refresh and autoscaling
    register theirs with `every`) runs in one background thread rather than
    as kopf timers: kopf guards each timer with a finalizer on the resource,
    and a finalizer would block deleting a model, or its namespace, whenever
    the operator is not running.
    """

    reconciler: Reconciler
    generations: dict[tuple[str, str], Any] = field(default_factory=dict)
    tasks: list[Periodic] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    # Whether this replica leads (always, when standalone); kopf pauses only its handlers.
    leading: Callable[[], bool] = lambda: True

    def every(self, seconds: float, fn: Callable[[], None], name: str) -> None:
        """Run `fn` every `seconds` in the background thread (first run after one period)."""
        self.tasks.append(Periodic(name, seconds, fn, time.monotonic() + seconds))

    def run_periodic(self) -> None:
        while not self.stop.wait(PERIODIC_TICK_SECONDS):
            try:
                leading = self.leading()
            except Exception:  # unknown counts as not leading: two actors are worse than none
                log.exception("could not tell whether this replica leads")
                leading = False
            if not leading:
                continue
            now = time.monotonic()
            for task in self.tasks:
                if now < task.due:
                    continue
                task.due = now + task.seconds
                try:
                    task.fn()
                except Exception:  # one failing task must not stop the others
                    log.exception("periodic task %s failed", task.name)

    def resync(self) -> None:
        """Refresh every known resource's status from its children (the safety net)."""
        for kind, namespace, name in self.reconciler.known():
            if self.stop.is_set():
                return
            try:
                self.reconciler.refresh(kind, namespace, name)
            except KubeError as exc:
                log.warning("resync of %s %s/%s failed: %s", kind, namespace, name, exc)


def peering_leader(
    kube: Kube, name: str, namespace: str | None, identity: str, priority: int
) -> Callable[[], bool]:
    """`Runtime.leading` for a replica in kopf peering `name` (cluster-wide when no namespace)."""
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    cached: list[tuple[float, bool]] = []

    def leading() -> bool:
        now = time.monotonic()
        if cached and now - cached[0][0] < LEADERSHIP_CACHE_SECONDS:
            return cached[0][1]
        peering = kube.get("kopf.dev/v1", kind, namespace, name)
        answer = leadership.leads(
            (peering or {}).get("status"), identity, priority, dt.datetime.now(dt.UTC)
        )
        if not cached or cached[0][1] != answer:
            log.info("replica %s %s", identity, "leads" if answer else "stands by")
        cached[:] = [(now, answer)]
        return answer

    return leading


@dataclass
class Periodic:
    name: str
    seconds: float
    fn: Callable[[], None]
    due: float


def _runtime(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("smallfleet runtime missing from kopf memo")
    return runtime


def _reconcile(memo: Any, body: Any, retry: int, *, once: bool = False) -> None:
    try:
        outcome = _runtime(memo).reconciler.reconcile(body, once=once)
    except Transient as exc:
        telemetry.ERRORS.labels(kind=body.get("kind", ""), error_class="transient").inc()
        raise kopf.TemporaryError(str(exc), delay=min(MAX_BACKOFF_SECONDS, 2.0**retry)) from exc
    except KubeError as exc:
        telemetry.ERRORS.labels(kind=body.get("kind", ""), error_class="rejected").inc()
        raise kopf.TemporaryError(str(exc), delay=MAX_BACKOFF_SECONDS) from exc
    log.debug("%s: %s", body.get("metadata", {}).get("name"), outcome)


def _refresh(memo: Any, kind: str, namespace: str | None, name: str) -> None:
    try:
        _runtime(memo).reconciler.refresh(kind, namespace, name)
    except KubeError as exc:
        telemetry.ERRORS.labels(kind=kind, error_class="transient").inc()
        log.warning(
            "refresh of %s %s/%s failed, the resync will retry: %s", kind, namespace, name, exc
        )


@kopf.on.startup(registry=registry)
def start_periodic(memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    runtime.every(RESYNC_SECONDS, runtime.resync, "resync")
    threading.Thread(target=runtime.run_periodic, name="smallfleet-periodic", daemon=True).start()


@kopf.on.cleanup(registry=registry)
def stop_periodic(memo: Any, **_: Any) -> None:
    _runtime(memo).stop.set()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The credentials the Kubernetes client finds: in-cluster token, else KUBECONFIG."""
    # kopf registers its default login handlers only in its default registry.
    return kopf.login_via_client(**kwargs)


# -- SmallModel ---------------------------------------------------------------


@kopf.on.create(*MODELS, registry=registry)
def smallmodel_create(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry, once=True)


@kopf.on.update(*MODELS, registry=registry)
def smallmodel_update(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry)


@kopf.on.resume(*MODELS, registry=registry)
def smallmodel_resume(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry)


@kopf.on.delete(*MODELS, registry=registry, optional=True)
def smallmodel_delete(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    # Children go by garbage collection (ownerReferences); only memory is left to clear.
    _runtime(memo).reconciler.forget(SMALL_MODEL, namespace, name)


@kopf.on.event(*MODELS, registry=registry)
def smallmodel_event(
    type: str,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: Any,
    **kwargs: Any,
) -> None:
    """Re-reconcile the pipelines that name this model when it appears, changes or goes."""
    runtime = _runtime(memo)
    key = (namespace or "", name)
    generation = body.get("metadata", {}).get("generation")
    if type == "DELETED":
        runtime.generations.pop(key, None)
        runtime.reconciler.forget(SMALL_MODEL, namespace, name)
    elif not type or runtime.generations.get(key) == generation:
        runtime.generations[key] = generation
        return
    else:
        runtime.generations[key] = generation
    try:
        index: kopf.Index[tuple[str, str], str] = kwargs["pipelines_by_model"]
        for pipeline in sorted(set(index.get(key, ()))):
            runtime.reconciler.reconcile_named(MODEL_PIPELINE, key[0], pipeline)
    except KubeError as exc:
        log.warning("pipelines using %s/%s not updated, the resync will: %s", namespace, name, exc)


# -- ModelPipeline ------------------------------------------------------------


@kopf.index(*PIPELINES, registry=registry)
def pipelines_by_model(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """(namespace, SmallModel) -> the pipelines whose steps name it, kept by kopf from the watch."""
    steps = spec.get("steps") or []
    return {(namespace or "", str(s.get("model"))): name for s in steps if isinstance(s, Mapping)}


@kopf.on.create(*PIPELINES, registry=registry)
def modelpipeline_create(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry, once=True)


@kopf.on.update(*PIPELINES, registry=registry)
def modelpipeline_update(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry)


@kopf.on.resume(*PIPELINES, registry=registry)
def modelpipeline_resume(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    _reconcile(memo, body, retry)


@kopf.on.delete(*PIPELINES, registry=registry, optional=True)
def modelpipeline_delete(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _runtime(memo).reconciler.forget(MODEL_PIPELINE, namespace, name)


@kopf.on.event(*PIPELINES, registry=registry)
def modelpipeline_event(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    if type == "DELETED":
        _runtime(memo).reconciler.forget(MODEL_PIPELINE, namespace, name)


# -- children -----------------------------------------------------------------


def _owner(labels: Any) -> tuple[str, str] | None:
    kind, name = labels.get(LABEL_OWNER_KIND), labels.get(LABEL_OWNER_NAME)
    if kind in (SMALL_MODEL, MODEL_PIPELINE) and name:
        return str(kind), str(name)
    return None


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED, registry=registry)
def deployment_event(
    type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A child Deployment changed: bring its owner's status up to date."""
    owner = _owner(body.get("metadata", {}).get("labels") or {})
    if not type or owner is None:
        return  # the initial listing: the resume handlers cover it
    if type == "DELETED" or _runtime(memo).reconciler.deployment_changed(
        owner[0], namespace, owner[1], body
    ):
        _refresh(memo, owner[0], namespace, owner[1])


def _pod_in_trouble(body: kopf.Body, **_: Any) -> bool:
    return st.pod_problem(body) is not None


@kopf.on.event("", "v1", "pods", labels=MANAGED, when=_pod_in_trouble, registry=registry)
def pod_event(type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child pod reports a problem (unschedulable, failed fetch or load): surface it now."""
    owner = _owner(body.get("metadata", {}).get("labels") or {})
    if not type or type == "DELETED" or owner is None:
        return
    _refresh(memo, owner[0], namespace, owner[1])
