"""One reconcile per kind: gather facts → plan (pure) → apply → status, written in one place.

The handlers only say *when* to reconcile; this module says *what*
reconciling is, so that a create, an update, a resume after a restart, a
child's watch event and a periodic pass converge on the same answer. Reads
come from `Facts` (what kopf watches), the plan from
`core.reconcile.plan_reconcile`, and this module executes it. It holds no
state the cluster does not: children are found by their labels, status is
derived from what is observed, and server-side apply makes a repeat harmless,
so an operator killed halfway through finishes the job without duplicates.

**Status has one writer.** Every part that reports on a resource (the
reconcile itself, placement through `status_extra`, the autoscaler through
`scaling_status`) hands its conditions and fields to `_write_status`, which
merges them into the freshest status it knows and sends only what changed,
carrying that status' resourceVersion: a write computed from a stale read is
refused (409) and merged again into a fresh one, so no part overwrites
another's, and nothing is sent when nothing changed.

**Concurrency.** kopf's worker threads and the periodic thread may act on one
resource at once; every reconcile, status write and scaling write of a
resource runs under that resource's lock (`KeyedLocks`), and its `_memo`
entry is only replaced under it. State that spans resources belongs to one
part (placement's claims, the autoscaler's loop), behind that part's lock.

Errors are sorted once, here: a spec the core rejects, or an object the API
server refuses, becomes `Stalled` with the message and is not retried until
the resource changes; anything transient propagates as `kube.Transient` for
the handler to retry with backoff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from smallfleet import telemetry
from smallfleet.control.facts import MODEL_PIPELINE, SMALL_MODEL, Facts, Key
from smallfleet.core import conditions as c
from smallfleet.core import spec as specs
from smallfleet.core import status as st
from smallfleet.core.autoscaling.report import fixed_scaling
from smallfleet.core.placement import node_capacity
from smallfleet.core.placement.evaluate import capacity_nodes
from smallfleet.core.reconcile import needs_comparing, plan_reconcile, stamped
from smallfleet.core.render import UNPLACED, plan_for_model, plan_for_pipeline, render_children
from smallfleet.core.render.children import (
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_REGION,
    MANAGED_BY,
    deployment_name,
)
from smallfleet.core.render.routes import ROUTE_KINDS
from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.core.render.triton import GRPC_PORT, HTTP_PORT
from smallfleet.core.replicas import replicas_to_run
from smallfleet.kube import (
    FIELD_MANAGER,
    PIPELINE_FIELD_MANAGER,
    Kube,
    KubeError,
    NotFound,
    Rejected,
    Transient,
)
from smallfleet.settings import Settings

log = logging.getLogger("smallfleet.reconcile")

API_VERSION: Final = "serving.smallfleet.io/v1alpha1"
STATUS_ATTEMPTS: Final = 3
# A status that only says "in progress" waits this long for the children to settle, so a
# new model usually gets one status write (Ready) instead of one per step of its rollout.
SETTLE_SECONDS: Final = 5.0
# Threads for status refreshes that wait only for the API server (deferred "in progress"
# statuses, a child's news): apart from kopf's handler threads, so a child's Ready reaches
# its owner without queuing behind a burst of new models' reconciles, and a burst's deferred
# statuses are not written one at a time.
STATUS_THREADS: Final = 8

__all__ = ["MODEL_PIPELINE", "SMALL_MODEL", "Key", "Outcome", "Reconciler", "RegionRequest"]


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Outcome:
    """What a reconcile concluded: 'ready', 'progressing', 'stalled', 'skipped' or 'gone'."""

    result: str
    message: str = ""


@dataclass
class _Memo:
    """What the last reconcile of one resource decided (an optimisation, never the truth)."""

    uid: str
    generation: int
    deployments: frozenset[str]
    digest: str | None
    states: dict[str, st.DeploymentState] = field(default_factory=dict)
    floor: int | None = None
    # The resource as our last status write returned it, until the watch delivers that
    # version (`Reconciler.body` drops it then): a write right after ours starts from it.
    body: Mapping[str, Any] | None = None
    stalled_for_good: bool = False  # InvalidSpec: only a new generation can help
    # What the last reconcile added beside the children's state (endpoint, placement, the
    # scaling mode), kept for the writes between reconciles.
    extra: st.Derived | None = None
    # The routes spec.expose asks for, as rendered: Exposed is derived from their watched
    # status on every refresh, since a gateway controller answers between reconciles.
    routes: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RegionRequest:
    """What region choice needs: the plan, the owner, what runs now and the watched cluster."""

    plan: ServerPlan
    owner: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]  # observed, this owner's
    facts: Facts


RegionChooser = Callable[[RegionRequest], dict[str, int]]
# Conditions and fields a part plugged in beside the reconcile adds to a resource's status.
StatusExtra = Callable[[Key, Mapping[str, Any], Sequence[Mapping[str, Any]]], st.Derived | None]


class KeyedLocks:
    """One re-entrant lock per resource, dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Key, tuple[threading.RLock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: Key) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key) or (threading.RLock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


def sticky_regions(req: RegionRequest) -> dict[str, int]:
    """Where to run when no placement engine is plugged in: keep what runs, else the roomiest.

    Regions already running stay (a restart must not move workloads); else,
    among the spec's allowed regions whose nodes can hold the server, those
    with room for the most replicas (name breaks ties); else unplaced, which
    leaves the scheduler to say why nothing fits.
    """
    replicas = replicas_to_run(req.plan.scaling, req.deployments)
    running = sorted(
        {
            str(d.get("metadata", {}).get("labels", {}).get(LABEL_REGION, UNPLACED))
            for d in req.deployments
        }
    )
    spread = max(1, req.plan.placement.spread)
    if running:
        return dict.fromkeys(running[:spread], replicas)
    gpus = req.plan.resources.gpus
    product = (req.plan.resources.gpu_product or "").lower()
    room: dict[str, int] = {}
    pods = req.facts.gpu_pods() if gpus > 0 else []
    for node in node_capacity(capacity_nodes(req.plan, req.facts.nodes()), pods):
        if gpus == 0:
            fits = 1_000_000  # CPU servers: GPU room does not limit them
        elif node.cpu_only or (product and (node.gpu_product or "").lower() != product):
            continue
        else:
            fits = node.free_gpus // gpus
        room[node.region] = room.get(node.region, 0) + fits
    allowed = set(req.plan.placement.regions)
    candidates = [r for r in room if not allowed or r in allowed]
    if not candidates:
        return {UNPLACED: replicas}
    ranked = sorted(candidates, key=lambda r: (-room[r], r))
    return dict.fromkeys(ranked[:spread], replicas)


def pooled(body: Mapping[str, Any]) -> str | None:
    """The ServingPool a SmallModel names (spec.serving.pool), if any."""
    pool = ((body.get("spec") or {}).get("serving") or {}).get("pool")
    return str(pool) if pool else None


def owner_selector(kind: str, name: str) -> dict[str, str]:
    """The labels every child of one resource carries."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_OWNER_KIND: kind, LABEL_OWNER_NAME: name}


def owned(objs: Sequence[dict[str, Any]], uid: Any) -> list[dict[str, Any]]:
    """The objects whose owner is the resource with this uid (not a deleted namesake)."""
    return [
        o
        for o in objs
        if any(r.get("uid") == uid for r in o.get("metadata", {}).get("ownerReferences") or [])
    ]


class _Predecessor(Transient):
    """A child's name is held by the children of a deleted resource of the same kind and name."""


class _Blocked(specs.SpecError):
    """A pipeline that cannot be rendered until another resource changes."""

    def __init__(self, reason: str, name: str, message: str) -> None:
        super().__init__(MODEL_PIPELINE, name, [specs.FieldError("spec.steps", message)])
        self.reason = reason
        self.text = message


def _manager(kind: str) -> str:
    return PIPELINE_FIELD_MANAGER if kind == MODEL_PIPELINE else FIELD_MANAGER


class _NameTaken(Exception):
    """A child's name belongs to an object this resource does not own."""


def _holder(obj: Mapping[str, Any]) -> str:
    """Who holds an object, in words: its controller, else the manager that made it."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')} {ref.get('name')!r}"
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_OWNER_NAME):
        # An orphan smallfleet made for another resource (a namesake of the other kind).
        return (
            f"{labels.get(LABEL_OWNER_KIND) or 'a resource'} {labels[LABEL_OWNER_NAME]!r} "
            "(left without an owner)"
        )
    managers = [m.get("manager") for m in meta.get("managedFields") or [] if m.get("manager")]
    return f"{managers[0]!r} (not smallfleet)" if managers else "someone else (not smallfleet)"


def _message(exc: specs.SpecError) -> str:
    if isinstance(exc, _Blocked):
        return exc.text
    return "; ".join(str(e) for e in exc.errors) or str(exc)


def _resource_version(body: Mapping[str, Any] | None) -> int:
    try:
        return int(str(((body or {}).get("metadata") or {}).get("resourceVersion") or 0))
    except ValueError:
        return 0


def _uid(body: Mapping[str, Any] | None) -> Any:
    return ((body or {}).get("metadata") or {}).get("uid")


def _in_progress(derived: st.Derived) -> bool:
    """Whether a status says only that work is under way (nothing a person must act on)."""
    by_type = {x.type: x.status for x in derived.conditions}
    return by_type.get(c.RECONCILING) == "True" and by_type.get(c.STALLED) != "True"


def _combine(base: st.Derived, more: st.Derived | None) -> st.Derived:
    """`base` with `more`'s conditions and fields laid over it."""
    if more is None:
        return base
    types = {x.type for x in more.conditions}
    return st.Derived(
        tuple(x for x in base.conditions if x.type not in types and x.type not in more.drop)
        + more.conditions,
        {**base.fields, **more.fields},
        tuple(d for d in dict.fromkeys((*base.drop, *more.drop)) if d not in types),
    )


class Reconciler:
    """Reconciles SmallModels and ModelPipelines against one API server."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        facts: Facts,
        *,
        regions: RegionChooser = sticky_regions,
        now: Callable[[], str] = utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.facts = facts
        self.choose_regions = regions
        self.now = now
        self.locks = KeyedLocks()
        self._memo: dict[Key, _Memo] = {}
        self._settling: dict[Key, float] = {}  # resource -> when its deferred status is due
        self._settling_lock = threading.Lock()
        self.status_pool = ThreadPoolExecutor(
            STATUS_THREADS, thread_name_prefix="smallfleet-status"
        )
        self.clock: Callable[[], float] = time.monotonic
        self.status_extra: StatusExtra = lambda _key, _body, _deployments: None
        # The autoscaler's part of status (`status.scaling`, ScalingActive), or None.
        self.scaling_status: Callable[[Key, Mapping[str, Any]], st.Derived | None] = (
            lambda _key, _status: None
        )
        # Told each status before it is written (placement watches for servers the
        # scheduler cannot place, to move them without waiting for a refresh).
        self.observed: Callable[[Key, st.Derived], None] = lambda _key, _derived: None
        # A pooled SmallModel's status part (control.pools): (model, pool) -> conditions and
        # fields; None until a pool controller is plugged in.
        self.pool_status: Callable[[Key, str], st.Derived] | None = None
        # What the Triton of each dedicated server pod that runs unready reported (its
        # repository index; see control.readiness), for `status.derive`; none until plugged in.
        self.triton_index: Callable[[Key], Sequence[st.ServerIndex]] = lambda _key: ()
        # Replicas the operator's autoscaler set on a Deployment (plan, namespace, name), so
        # that applying the spec again keeps them; None: no opinion (see control.scaling).
        self.decided_replicas: Callable[[ServerPlan, str, str], int | None] = (
            lambda _plan, _namespace, _deployment: None
        )
        # The HTTPRoutes and GRPCRoutes labelled as a resource's children, with their status
        # (kopf watches them; see handlers.indices); none until plugged in.
        self.routes: Callable[[Key], Sequence[Mapping[str, Any]]] = lambda _key: ()

    def lock(self, key: Key) -> contextlib.AbstractContextManager[None]:
        """Hold one resource: its reconcile, status write and scaling write never interleave."""
        return self.locks.hold(key)

    def forget(self, kind: str, namespace: str | None, name: str) -> None:
        key = (kind, namespace or "", name)
        with self.lock(key):
            self._memo.pop(key, None)
        with self._settling_lock:
            self._settling.pop(key, None)
        telemetry.record_state(*key, None)

    def known(self) -> list[Key]:
        """Every resource being watched (not only those reconciled since start)."""
        return self.facts.resources()

    def body(self, key: Key, seen: Mapping[str, Any] | None = None) -> Mapping[str, Any] | None:
        """The freshest body known of a resource: the watch's, `seen`, or our last write's."""
        watched = self.facts.owner(key)
        candidates = [b for b in (watched, seen) if b is not None]
        memo = self._memo.get(key)
        if memo is not None and memo.body is not None:
            if (
                watched is not None
                and _uid(watched) == _uid(memo.body)
                and _resource_version(watched) >= _resource_version(memo.body)
            ):
                # The watch has caught up with our write: keep one copy of the object, not two.
                memo.body = None
            elif any(_uid(memo.body) == _uid(b) for b in candidates):
                candidates.append(memo.body)
        if not candidates:
            return None
        return max(candidates, key=_resource_version)

    # -- entry points ------------------------------------------------------

    def reconcile(
        self, body: Mapping[str, Any], *, once: bool = False, settle: bool = True
    ) -> Outcome:
        """Full reconcile of a SmallModel or ModelPipeline body.

        `once`: do nothing if this very generation of this very object was
        already reconciled by this process. kopf can deliver a creation twice
        when the status write's watch event overtakes its own bookkeeping.
        """
        kind = str(body["kind"])
        meta = body["metadata"]
        key = (kind, str(meta["namespace"]), str(meta["name"]))
        with self.lock(key), telemetry.reconcile_timer(*key) as rec:
            memo = self._memo.get(key)
            if (
                once
                and memo is not None
                and memo.uid == meta.get("uid")
                and memo.generation == meta.get("generation")
            ):
                return Outcome("skipped")
            try:
                outcome = self._reconcile(key, self.body(key, body) or body, settle=settle)
            except BaseException:
                # Half done: the retry must not be mistaken for a repeat of a finished one.
                self._memo.pop(key, None)
                raise
            rec.result = outcome.result
            return outcome

    def refresh(
        self, kind: str, namespace: str | None, name: str, *, settle: bool = True
    ) -> Outcome | None:
        """Status from the watched children alone; a full reconcile when something is missing.

        Called on child events, by the autoscaler and by the periodic pass.
        None when the owner is gone. Sends nothing unless the status changes;
        with `settle`, a status that only says "in progress" waits up to
        SETTLE_SECONDS for the next one (`flush_settled` sends it then).
        """
        key = (kind, namespace or "", name)
        with self.lock(key):
            body = self.body(key)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                return None
            memo = self._memo.get(key)
            meta = body["metadata"]
            if (
                memo is not None
                and memo.uid == meta.get("uid")
                and memo.generation == meta.get("generation")
            ):
                if memo.stalled_for_good:
                    return Outcome("stalled")  # only a change of the spec can help
                deployments = self._deployments(key, body)
                names = {str(d["metadata"]["name"]) for d in deployments}
                memo.states = {
                    str(d["metadata"]["name"]): st.deployment_state(d) for d in deployments
                }
                # Nothing applied yet (a missing model, a refused object): only a full
                # reconcile can tell whether that has changed.
                if names == memo.deployments and memo.deployments:
                    derived = st.derive(
                        deployments=deployments,
                        pods=self.facts.pods(key),
                        expected=memo.deployments,
                        digest=memo.digest,
                        floor=memo.floor,
                        indices=self.triton_index(key),
                        nodes=self.node_names(),
                    )
                    derived = _combine(_combine(derived, memo.extra), self._exposure(key, memo))
                    with telemetry.reconcile_timer(*key) as rec:
                        outcome = self._write_status(key, body, derived, settle=settle)
                        rec.result = outcome.result
                        return outcome
            return self.reconcile(body, settle=settle)

    def flush_settled(self) -> None:
        """Write the deferred "in progress" statuses that are due (the periodic thread calls this)."""
        now = self.clock()
        with self._settling_lock:
            due = [k for k, at in self._settling.items() if at <= now]
            for key in due:
                del self._settling[key]

        def flush(key: Key) -> None:
            try:
                self.refresh(*key, settle=False)
            except KubeError as exc:
                log.warning("status of %s %s/%s not written, the resync will: %s", *key, exc)

        list(self.status_pool.map(flush, due))

    def write_status(self, key: Key) -> Outcome | None:
        """Bring one resource's status up to date with every part (the autoscaler calls this)."""
        return self.refresh(*key)

    def deployment_changed(
        self, kind: str, namespace: str | None, name: str, deployment: Mapping[str, Any]
    ) -> bool:
        """Whether a child Deployment's event says something its owner's status does not know yet.

        Most events of a Deployment (its own status bookkeeping, our applies)
        change nothing the owner reports; skipping them keeps a burst of
        creations from costing a status refresh per event.
        """
        memo = self._memo.get((kind, namespace or "", name))
        if memo is None:
            return True
        refs = deployment.get("metadata", {}).get("ownerReferences") or []
        if not any(r.get("uid") == memo.uid for r in refs):
            return True
        dep_name = str(deployment.get("metadata", {}).get("name"))
        return memo.states.get(dep_name) != st.deployment_state(deployment)

    def node_names(self) -> set[str]:
        """The nodes the watch knows (empty until it has listed them: then none is lost)."""
        return {str(n["metadata"]["name"]) for n in self.facts.nodes()}

    def plan(self, kind: str, body: Mapping[str, Any]) -> ServerPlan:
        """The server plan of a SmallModel or ModelPipeline body (SpecError when it has none)."""
        return self._plan(kind, body)

    def reconcile_named(
        self, kind: str, namespace: str, name: str, *, once: bool = False
    ) -> Outcome | None:
        """Full reconcile of a resource known by name (None when it is gone)."""
        body = self.body((kind, namespace, name))
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        return self.reconcile(body, once=once)

    # -- the work ----------------------------------------------------------

    def _deployments(self, key: Key, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return owned(self.facts.deployments(key), _uid(body))

    def _reconcile(self, key: Key, body: Mapping[str, Any], *, settle: bool = True) -> Outcome:
        kind, namespace, _ = key
        meta = body["metadata"]
        try:
            plan = self._plan(kind, body)
        except specs.SpecError as exc:
            reason = getattr(exc, "reason", c.REASON_INVALID_SPEC)
            telemetry.ERRORS.labels(kind=kind, error_class="invalid_spec").inc()
            return self._stall(
                key, body, reason, _message(exc), final=reason == c.REASON_INVALID_SPEC
            )

        pool = pooled(body)
        if kind == SMALL_MODEL and pool is not None:
            return self._reconcile_pooled(key, body, pool, settle=settle)
        deployments = self._deployments(key, body)
        regions = dict(self.choose_regions(RegionRequest(plan, body, deployments, self.facts)))
        for region in list(regions):
            decided = self.decided_replicas(plan, namespace, deployment_name(plan, region))
            if decided is not None:
                regions[region] = decided
        owner = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
        desired = stamped(render_children(plan, owner=owner, regions=regions))
        generation = int(meta.get("generation") or 0)
        observed_generation = int((body.get("status") or {}).get("observedGeneration") or 0)
        compared = needs_comparing(
            desired, deployments, generation=generation, observed_generation=observed_generation
        )
        observed: list[dict[str, Any]] = list(deployments)
        if compared or observed_generation == 0:
            # A first reconcile again (the last one stopped before its status write) finds
            # the children it made in the index, instead of creating each again (a 409).
            observed += owned(self.facts.other_children(key), meta.get("uid"))
        work = plan_reconcile(
            plan, desired, observed, complete=compared or observed_generation == 0
        )

        current: dict[str, dict[str, Any]] = {str(d["metadata"]["name"]): d for d in deployments}
        for change in work.changes:
            obj = change.obj
            log.info(
                "%s %s/%s: %s", change.action, obj["kind"], obj["metadata"]["name"], change.reason
            )
            try:
                if change.action == "create":
                    result = self._create(obj, kind, meta)
                else:
                    result = self.kube.apply(obj, manager=_manager(kind))
            except _Predecessor as exc:
                self._write_status(key, body, st.applying(exc.message))
                raise
            except _NameTaken as exc:
                telemetry.ERRORS.labels(kind=kind, error_class="name_conflict").inc()
                return self._stall(key, body, c.REASON_NAME_CONFLICT, str(exc))
            except (Rejected, NotFound) as exc:
                telemetry.ERRORS.labels(kind=kind, error_class="rejected").inc()
                hint = (
                    " (spec.expose needs the Gateway API CRDs, gateway.networking.k8s.io/v1, "
                    "installed in the cluster)"
                    if isinstance(exc, NotFound) and obj["kind"] in ROUTE_KINDS
                    else ""
                )
                return self._stall(
                    key,
                    body,
                    c.REASON_APPLY_FAILED,
                    f"{obj['kind']} {obj['metadata']['name']}: {exc.message}{hint}",
                )
            if obj["kind"] == "Deployment":
                current[str(obj["metadata"]["name"])] = result
        for obj in work.delete:
            log.info("delete %s/%s: no longer desired", obj["kind"], obj["metadata"]["name"])
            self.kube.delete(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
            current.pop(str(obj["metadata"]["name"]), None)

        derived = st.derive(
            deployments=list(current.values()),
            pods=self.facts.pods(key) if deployments else [],
            expected=work.expected,
            digest=work.digest,
            floor=work.floor,
            indices=self.triton_index(key),
            nodes=self.node_names(),
        )
        host = f"{plan.name}.{namespace}.svc"
        extra: dict[str, Any] = {
            "endpoint": host,
            "url": f"http://{host}:{HTTP_PORT}",
            "grpcAddress": f"{host}:{GRPC_PORT}",
        }
        if kind == MODEL_PIPELINE:
            extra["models"] = sorted({m.name for m in plan.models if not m.is_ensemble})
        parts = _combine(
            _combine(st.Derived((), extra), fixed_scaling(plan.scaling.mode)),
            self.status_extra(key, body, list(current.values())),
        )
        self._remember(
            key,
            body,
            deployments=frozenset(current),
            digest=work.digest,
            states={n: st.deployment_state(d) for n, d in current.items()},
            floor=work.floor,
            extra=parts,
            routes=tuple(o for o in desired if o["kind"] in ROUTE_KINDS),
        )
        derived = _combine(_combine(derived, parts), self._exposure(key, self._memo[key]))
        return self._write_status(key, body, derived, settle=settle)

    def _exposure(self, key: Key, memo: _Memo | None) -> st.Derived:
        """Exposed from the watched routes' status (dropped when spec.expose is unset)."""
        wanted = memo.routes if memo is not None else ()
        return st.exposure(wanted, self.routes(key) if wanted else ())

    def _reconcile_pooled(
        self, key: Key, body: Mapping[str, Any], pool: str, *, settle: bool = True
    ) -> Outcome:
        """A SmallModel loaded into a ServingPool: no children of its own, status from the pool.

        Children left from when it was served alone are deleted once, when the
        spec changes (or when its watched Deployments show some are left).
        """
        _, namespace, _ = key
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        observed_generation = int((body.get("status") or {}).get("observedGeneration") or 0)
        leftovers: list[dict[str, Any]] = self._deployments(key, body)
        if leftovers or generation != observed_generation:
            leftovers += owned(self.facts.other_children(key), meta.get("uid"))
        for obj in leftovers:
            log.info("delete %s/%s: served by pool %s", obj["kind"], obj["metadata"]["name"], pool)
            self.kube.delete(
                str(obj.get("apiVersion") or "apps/v1"),
                str(obj.get("kind") or "Deployment"),
                namespace,
                obj["metadata"]["name"],
            )
        part = (
            self.pool_status(key, pool)
            if self.pool_status is not None
            else st.stalled(c.REASON_POOL_MISSING, "this operator serves no ServingPools")
        )
        dedicated_only = dict.fromkeys(
            (
                "region",
                "regions",
                "replicas",
                "readyReplicas",
                "desiredReplicas",
                "carbon",
                "placement",
                "scaling",
            )
        )
        derived = st.Derived(
            part.conditions,
            {"endpoint": None, "url": None, "grpcAddress": None, **dedicated_only, **part.fields},
            drop=(c.EXPOSED,),
        )
        self._remember(key, body, extra=None)
        return self._write_status(key, body, derived, settle=settle)

    def _remember(self, key: Key, body: Mapping[str, Any], **what: Any) -> None:
        meta = body["metadata"]
        before = self._memo.get(key)
        self._memo[key] = _Memo(
            uid=str(meta.get("uid")),
            generation=int(meta.get("generation") or 0),
            body=before.body if before is not None and before.uid == meta.get("uid") else None,
            **{"deployments": frozenset(), "digest": None, **what},
        )

    def _plan(self, kind: str, body: Mapping[str, Any]) -> ServerPlan:
        if kind == SMALL_MODEL:
            return plan_for_model(specs.parse_small_model(body), self.settings)
        pipeline = specs.parse_model_pipeline(body)
        models: dict[str, specs.SmallModelSpec] = {}
        missing: list[str] = []
        broken: list[str] = []
        for name in sorted({step.model for step in pipeline.steps}):
            found = self.facts.owner((SMALL_MODEL, pipeline.namespace, name))
            if found is None:
                missing.append(name)
                continue
            try:
                models[name] = specs.parse_small_model(found)
            except specs.SpecError as exc:
                broken.append(f"{name}: {_message(exc)}")
        if missing:
            raise _Blocked(
                c.REASON_MISSING_MODEL,
                pipeline.name,
                "SmallModel "
                + ", ".join(repr(m) for m in missing)
                + f" not found in namespace {pipeline.namespace!r}",
            )
        if broken:
            raise _Blocked(
                c.REASON_MODEL_NOT_READY, pipeline.name, "invalid step model " + "; ".join(broken)
            )
        errors = specs.validate_pipeline_refs(pipeline, models)
        if errors:
            raise specs.SpecError(MODEL_PIPELINE, pipeline.name, errors)
        return plan_for_pipeline(pipeline, models, self.settings)

    def _create(
        self, obj: Mapping[str, Any], kind: str, owner: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply a child the owner does not hold yet, never taking over someone else's object.

        A plain server-side apply would merge our fields and our
        ownerReference into a namesake whose fields do not clash with ours,
        and the garbage collector would then delete it with the owner. So the
        first apply only creates (`create_only`: one request, no read first);
        when the name is taken (409), the holder is read and adopted only if
        it is ours (`_adopt_own`). Without force, apply also refuses a second
        controller reference (422).
        """
        meta = obj["metadata"]
        try:
            return self.kube.apply(obj, force=False, manager=_manager(kind), create_only=True)
        except (Transient, Rejected) as exc:
            if exc.status not in (409, 422):
                raise
            found = self.kube.get(
                obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]
            )
            if found is None:
                raise
            return self._adopt_own(obj, kind, owner, found)

    def _adopt_own(
        self,
        obj: Mapping[str, Any],
        kind: str,
        owner: Mapping[str, Any],
        found: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Apply over an existing object that is ours; wait out a deleted namesake's; else refuse.

        Ours: left by an interrupted attempt, or orphaned (`--cascade=orphan`)
        by an earlier resource of this kind and name, as its labels say, which
        is adopted the way a Deployment adopts its ReplicaSets.
        """
        found_meta = found.get("metadata") or {}
        controller = next(
            (r for r in found_meta.get("ownerReferences") or [] if r.get("controller")), None
        )
        labels = found_meta.get("labels") or {}
        made_for_us = all(
            labels.get(k) == v for k, v in owner_selector(kind, owner["name"]).items()
        )
        if owned([dict(found)], owner.get("uid")) or (controller is None and made_for_us):
            return self.kube.apply(obj, manager=_manager(kind))
        if controller is not None and (controller.get("kind"), controller.get("name")) == (
            kind,
            owner["name"],
        ):
            # A resource of this name was deleted and made again: the garbage collector is
            # still removing the old one's children. Retry (with backoff) until it has.
            raise _Predecessor(
                409,
                f"{obj['kind']} {obj['metadata']['name']!r} still belongs to the deleted "
                f"{kind} of this name; waiting for the garbage collector to remove it",
                verb="create",
                what=f"{obj['kind']} {obj['metadata']['name']}",
            )
        raise _NameTaken(
            f"{obj['kind']} {obj['metadata']['name']!r} already exists and belongs to "
            f"{_holder(found)}; smallfleet does not take it over: rename this {kind} or "
            f"remove that {obj['kind']}"
        )

    def _stall(
        self, key: Key, body: Mapping[str, Any], reason: str, message: str, *, final: bool = False
    ) -> Outcome:
        """Status for a resource the operator will not act on until something changes."""
        self._remember(key, body, stalled_for_good=final)
        return self._write_status(key, body, st.stalled(reason, message))

    def _write_status(
        self, key: Key, body: Mapping[str, Any], derived: st.Derived, *, settle: bool = False
    ) -> Outcome:
        """The one place status is written: merge every part, send what changed, with its version."""
        derived = _combine(derived, self.scaling_status(key, body.get("status") or {}))
        self.observed(key, derived)
        with self._settling_lock:
            if settle and _in_progress(derived):
                self._settling.setdefault(key, self.clock() + SETTLE_SECONDS)
                return Outcome("progressing")
            self._settling.pop(key, None)
        kind, namespace, name = key
        new: dict[str, Any] = dict(body.get("status") or {})
        flips: list[st.Transition] = []
        for attempt in range(STATUS_ATTEMPTS):
            generation = int(body["metadata"].get("generation") or 0)
            current = body.get("status") or {}
            new, flips = st.merge(current, derived, now=self.now(), generation=generation)
            patch = st.status_patch(current, new)
            if not patch:
                break
            version = str(body["metadata"].get("resourceVersion") or "") or None
            try:
                written = self.kube.patch_status(
                    API_VERSION, kind, namespace, name, patch, resource_version=version
                )
            except NotFound:
                return Outcome("gone")
            except Transient as exc:
                if exc.status != 409 or attempt == STATUS_ATTEMPTS - 1:
                    raise
                fresh = self.kube.get(API_VERSION, kind, namespace, name)
                if fresh is None:
                    return Outcome("gone")
                body = fresh  # someone wrote in between: merge again into what is there now
                continue
            memo = self._memo.get(key)
            if memo is not None and written.get("metadata"):
                meta = dict(written["metadata"])
                meta.pop("managedFields", None)  # most of the response's size; nothing reads it
                memo.body = {**written, "metadata": meta}
            break
        owner = {"apiVersion": API_VERSION, "kind": kind, "metadata": body["metadata"]}
        for flip in flips:
            if flip.type not in (c.READY, c.STALLED):
                continue
            bad = (flip.type == c.STALLED) == (flip.new == "True")
            if flip.old is None and not (flip.type == c.STALLED and bad):
                # A new object's first condition is news only when it is stuck; its first
                # Ready is in its status, and an Event would be one more write per model.
                continue
            try:
                self.kube.event(
                    owner,
                    type_="Warning" if bad else "Normal",
                    reason=flip.reason,
                    message=f"{flip.type}={flip.new}: {flip.message}".rstrip(": "),
                )
            except Exception as exc:  # an Event is a courtesy; never fail a reconcile on it
                log.warning("could not record event for %s/%s: %s", namespace, name, exc)
        summary = st.summary(new["conditions"])
        telemetry.record_state(kind, namespace, name, summary)
        result = {"Ready": "ready", "Stalled": "stalled"}.get(summary, "progressing")
        stalled = c.get_condition(new["conditions"], c.STALLED)
        return Outcome(result, str((stalled or {}).get("message", "")))
