"""One reconcile per kind: parse → render → plan → apply → prune → status.

The handlers in `handlers.operator` only say *when* to reconcile; this module
says *what* reconciling is, so that a create, an update, a resume after a
restart, a child Deployment's event and a periodic resync all converge on the
same answer. It holds no state the cluster does not: children are found by
their labels, status is derived from what is observed, and server-side apply
makes a repeat harmless, so an operator killed halfway through and started
again finishes the job without duplicates.

Errors are sorted once, here: a spec the core rejects, or an object the API
server refuses, becomes `Stalled` with the message and is not retried until
the resource changes; anything transient propagates as `kube.Transient` for
the handler to retry with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from smallfleet import conditions as c
from smallfleet import spec as specs
from smallfleet import status as st
from smallfleet import telemetry
from smallfleet.kube import (
    FIELD_MANAGER,
    PIPELINE_FIELD_MANAGER,
    Kube,
    NotFound,
    Rejected,
    Transient,
)
from smallfleet.plan import plan_changes
from smallfleet.render import UNPLACED, plan_for_model, plan_for_pipeline, render_children
from smallfleet.render.children import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_REGION,
    MANAGED_BY,
    NODE_REGION_LABEL,
    deployment_name,
)
from smallfleet.render.serverplan import ServerPlan
from smallfleet.settings import Settings

log = logging.getLogger("smallfleet.reconcile")

API_VERSION: Final = "serving.smallfleet.io/v1alpha1"
SMALL_MODEL: Final = "SmallModel"
MODEL_PIPELINE: Final = "ModelPipeline"
# Every kind a plan may render; listed on each reconcile so a child that is no
# longer rendered (an HPA after switching to operator scaling) gets pruned.
CHILD_KINDS: Final = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
)

Key = tuple[str, str, str]  # (kind, namespace, name)
NODES_TTL: Final = 10.0


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Outcome:
    """What a reconcile concluded: 'ready', 'progressing' or 'stalled'."""

    result: str
    message: str = ""


@dataclass
class _Memo:
    """What the last reconcile of one resource decided (an optimisation, never the truth)."""

    uid: str
    generation: int
    deployments: frozenset[str]
    digest: str | None
    status: dict[str, Any] = field(default_factory=dict)
    states: dict[str, st.DeploymentState] = field(default_factory=dict)
    floor: int | None = None


@dataclass(frozen=True)
class RegionRequest:
    """What region choice needs: the plan, the owner, what runs now and how to see the cluster."""

    plan: ServerPlan
    owner: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]  # observed, this owner's
    nodes: Callable[[], list[dict[str, Any]]]
    pods: Callable[[], list[dict[str, Any]]]  # every running or pending pod of the cluster


RegionChooser = Callable[[RegionRequest], dict[str, int]]
# Conditions and fields a part plugged in beside the region chooser adds to a
# reconciled resource's status: (key, body, its Deployments) -> Derived or None.
StatusExtra = Callable[[Key, Mapping[str, Any], Sequence[Mapping[str, Any]]], st.Derived | None]


def _current_replicas(plan: ServerPlan, deployments: Sequence[Mapping[str, Any]]) -> int:
    """Replicas to render: what runs now (an autoscaler may have set it) within min..max."""
    scaling = plan.scaling
    observed = [
        int(d.get("spec", {}).get("replicas") or 0)
        for d in deployments
        if d.get("spec", {}).get("replicas") is not None
    ]
    current = max(observed) if observed else scaling.min_replicas
    return max(scaling.min_replicas, min(scaling.max_replicas, current))


def _gpu_count(value: Any) -> int:
    try:
        return int(str(value or "0"))
    except ValueError:
        return 0


def _node_fits(node: Mapping[str, Any], plan: ServerPlan) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    if plan.resources.gpus == 0:
        return GPU_PRODUCT_LABEL not in labels
    allocatable = node.get("status", {}).get("allocatable") or {}
    if _gpu_count(allocatable.get(GPU_RESOURCE)) < plan.resources.gpus:
        return False
    product = plan.resources.gpu_product
    return product is None or labels.get(GPU_PRODUCT_LABEL) == product


def free_capacity(
    plan: ServerPlan, nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    """Per region, how many more of this server's pods its fitting nodes could hold (GPU-wise)."""
    used: dict[str, int] = {}
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if not node or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod.get("spec", {}).get("containers") or []:
            limits = (container.get("resources") or {}).get("limits") or {}
            requests = (container.get("resources") or {}).get("requests") or {}
            used[node] = used.get(node, 0) + _gpu_count(
                requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE))
            )
    free: dict[str, int] = {}
    for node in nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        region = labels.get(NODE_REGION_LABEL)
        if not region or not _node_fits(node, plan):
            continue
        if plan.resources.gpus == 0:
            room = 1_000_000  # CPU servers: GPU room does not limit them
        else:
            allocatable = _gpu_count(
                (node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE)
            )
            room = (
                max(0, allocatable - used.get(node["metadata"]["name"], 0)) // plan.resources.gpus
            )
        free[str(region)] = free.get(str(region), 0) + room
    return free


def sticky_regions(req: RegionRequest) -> dict[str, int]:
    """Where to run when no placement engine is plugged in: keep what runs, else the roomiest.

    Regions already running stay (a restart must not move workloads); else,
    among the spec's allowed regions whose nodes can hold the server, those
    with the most free GPUs (name breaks ties); else unplaced, which leaves
    the scheduler to say why nothing fits.
    """
    replicas = _current_replicas(req.plan, req.deployments)
    running = sorted(
        {
            str(d.get("metadata", {}).get("labels", {}).get(LABEL_REGION, UNPLACED))
            for d in req.deployments
        }
    )
    spread = max(1, req.plan.placement.spread)
    if running:
        return dict.fromkeys(running[:spread], replicas)
    nodes = req.nodes()
    try:
        pods = req.pods() if req.plan.resources.gpus > 0 else []
    except Rejected:
        pods = []  # a namespaced install may not list every pod: judge by capacity alone
    free = free_capacity(req.plan, nodes, pods)
    allowed = set(req.plan.placement.regions)
    candidates = [r for r in free if not allowed or r in allowed]
    if not candidates:
        return {UNPLACED: replicas}
    ranked = sorted(candidates, key=lambda r: (-free[r], r))
    return dict.fromkeys(ranked[:spread], replicas)


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


def _floor(plan: ServerPlan) -> int:
    """Ready replicas per Deployment below which the resource does not serve as specified."""
    # A scale-to-zero minimum still needs one replica once the autoscaler asks for any.
    return max(1, plan.scaling.min_replicas)


def _digest(plan: ServerPlan) -> str | None:
    digests = sorted({m.artifact.digest for m in plan.models if m.artifact is not None})
    return digests[0] if len(digests) == 1 else None


class Reconciler:
    """Reconciles SmallModels and ModelPipelines against one API server."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        *,
        regions: RegionChooser = sticky_regions,
        now: Callable[[], str] = utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.choose_regions = regions
        self.now = now
        self._locks: dict[Key, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._memo: dict[Key, _Memo] = {}
        self._nodes: tuple[float, list[dict[str, Any]]] | None = None
        self.status_extra: StatusExtra = lambda _key, _body, _deployments: None
        # Told each status before it is written (placement watches for servers the
        # scheduler cannot place, to move them without waiting for a refresh).
        self.observed: Callable[[Key, st.Derived], None] = lambda _key, _derived: None
        # Replicas the operator's autoscaler set on a Deployment (plan, namespace, name), so
        # that applying the spec again keeps them; None: no opinion (see handlers.scaling).
        self.decided_replicas: Callable[[ServerPlan, str, str], int | None] = (
            lambda _plan, _namespace, _deployment: None
        )

    def lock(self, key: Key) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, kind: str, namespace: str | None, name: str) -> None:
        key = (kind, namespace or "", name)
        self._memo.pop(key, None)
        with self._locks_guard:
            self._locks.pop(key, None)
        telemetry.record_state(*key, None)

    def known(self) -> list[Key]:
        """Every resource reconciled since start and not deleted since."""
        return sorted(self._memo)

    # -- entry points ------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], *, once: bool = False) -> Outcome:
        """Full reconcile of a SmallModel or ModelPipeline body.

        `once`: do nothing if this very generation of this very object was
        already reconciled by this process. kopf can deliver a creation twice
        when the status write's watch event overtakes its own bookkeeping.
        """
        kind = str(body["kind"])
        meta = body["metadata"]
        key = (kind, str(meta["namespace"]), str(meta["name"]))
        memo = self._memo.get(key)
        if (
            once
            and memo is not None
            and memo.uid == meta.get("uid")
            and memo.generation == meta.get("generation")
        ):
            return Outcome("skipped")
        with self.lock(key), telemetry.reconcile_timer(*key) as rec:
            try:
                outcome = self._reconcile(key, body)
            except BaseException:
                # Half done: the retry must not be mistaken for a repeat of a finished one.
                self._memo.pop(key, None)
                raise
            rec.result = outcome.result
            return outcome

    def refresh(self, kind: str, namespace: str | None, name: str) -> Outcome | None:
        """Status from the children alone; a full reconcile when something is missing or stale.

        Called on child events and timers. None when the owner is gone.
        """
        namespace = namespace or ""
        key = (kind, namespace, name)
        with self.lock(key):
            body = self.kube.get(API_VERSION, kind, namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                return None
            memo = self._memo.get(key)
            meta = body["metadata"]
            fresh = (
                memo is not None
                and memo.uid == meta.get("uid")
                and memo.generation == meta.get("generation")
            )
            if fresh and memo is not None:
                stalled = c.get_condition(memo.status.get("conditions") or [], c.STALLED) or {}
                if (
                    stalled.get("status") == "True"
                    and stalled.get("reason") == c.REASON_INVALID_SPEC
                ):
                    return Outcome("stalled")  # only a change of the spec can help
                deployments = owned(
                    self.kube.list_objects(
                        "apps/v1", "Deployment", namespace, labels=owner_selector(kind, name)
                    ),
                    meta.get("uid"),
                )
                names = {d["metadata"]["name"] for d in deployments}
                memo.states = {d["metadata"]["name"]: st.deployment_state(d) for d in deployments}
                # Nothing applied yet (a missing model, a refused object): only a full
                # reconcile can tell whether that has changed.
                if names == memo.deployments and memo.deployments:
                    pods = self.kube.pods(namespace, owner_selector(kind, name))
                    derived = st.derive(
                        deployments=deployments,
                        pods=pods,
                        expected=memo.deployments,
                        digest=memo.digest,
                        floor=memo.floor,
                    )
                    with telemetry.reconcile_timer(*key) as rec:
                        outcome = self._write_status(key, body, derived)
                        rec.result = outcome.result
                        return outcome
        return self.reconcile(body)

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

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes, listed at most once per NODES_TTL seconds (they rarely change)."""
        now = time.monotonic()
        if self._nodes is None or now - self._nodes[0] > NODES_TTL:
            self._nodes = (now, self.kube.nodes())
        return self._nodes[1]

    # -- the work ----------------------------------------------------------

    def _reconcile(self, key: Key, body: Mapping[str, Any]) -> Outcome:
        kind, namespace, name = key
        meta = body["metadata"]
        try:
            plan = self._plan(kind, body)
        except specs.SpecError as exc:
            reason = getattr(exc, "reason", c.REASON_INVALID_SPEC)
            telemetry.ERRORS.labels(kind=kind, error_class="invalid_spec").inc()
            return self._stall(key, body, reason, _message(exc))

        observed: list[dict[str, Any]] = []
        # A resource never reconciled has nothing stale to prune, and applying is
        # idempotent, so children left by an interrupted first attempt are simply
        # applied again: skip the lists, the costliest part of a burst of creations.
        if (body.get("status") or {}).get("observedGeneration"):  # the CRD defaults it to 0
            for api_version, child_kind in CHILD_KINDS:
                observed += self.kube.list_objects(
                    api_version, child_kind, namespace, labels=owner_selector(kind, name)
                )
        observed = owned(observed, meta.get("uid"))
        observed_deployments = [o for o in observed if o["kind"] == "Deployment"]
        regions = self.choose_regions(
            RegionRequest(plan, body, observed_deployments, self.nodes, self.all_pods)
        )
        owner = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
        regions = dict(regions)
        for region in list(regions):
            decided = self.decided_replicas(plan, namespace, deployment_name(plan, region))
            if decided is not None:
                regions[region] = decided
        desired = render_children(plan, owner=owner, regions=regions)
        wanted = frozenset(d["metadata"]["name"] for d in desired if d["kind"] == "Deployment")

        applied: dict[str, dict[str, Any]] = {}
        stale: list[dict[str, Any]] = []
        for change in plan_changes(desired, observed):
            obj = change.obj
            if change.action in ("create", "update"):
                log.info(
                    "%s %s/%s: %s",
                    change.action,
                    obj["kind"],
                    obj["metadata"]["name"],
                    change.reason,
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
                    return self._stall(
                        key,
                        body,
                        c.REASON_APPLY_FAILED,
                        f"{obj['kind']} {obj['metadata']['name']}: {exc.message}",
                    )
                if obj["kind"] == "Deployment":
                    applied[obj["metadata"]["name"]] = result
            elif change.action == "delete":
                stale.append(obj)

        current = {d["metadata"]["name"]: d for d in observed_deployments}
        current.update(applied)
        wanted_now = [current[n] for n in sorted(wanted) if n in current]
        # Make-before-break: an old region's Deployment goes only once the new ones serve.
        new_ready = len(wanted_now) == len(wanted) and all(
            (s := st.deployment_state(d)).rollout_done and s.ready >= s.desired for d in wanted_now
        )
        for obj in stale:
            if obj["kind"] == "Deployment" and not new_ready:
                continue
            log.info("delete %s/%s: no longer desired", obj["kind"], obj["metadata"]["name"])
            self.kube.delete(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
            current.pop(obj["metadata"]["name"], None)

        # Deployments created just now have no pods yet: nothing to list.
        pods = self.kube.pods(namespace, owner_selector(kind, name)) if observed_deployments else []
        digest = _digest(plan)
        floor = _floor(plan)
        derived = st.derive(
            deployments=list(current.values()),
            pods=pods,
            expected=wanted,
            digest=digest,
            floor=floor,
        )
        extra: dict[str, Any] = {"endpoint": f"{plan.name}.{namespace}.svc"}
        if kind == MODEL_PIPELINE:
            extra["models"] = sorted({m.name for m in plan.models if not m.is_ensemble})
        derived = st.Derived(derived.conditions, {**derived.fields, **extra})
        more = self.status_extra(key, body, list(current.values()))
        if more is not None:
            types = {x.type for x in more.conditions}
            derived = st.Derived(
                tuple(x for x in derived.conditions if x.type not in types) + more.conditions,
                {**derived.fields, **more.fields},
            )
        self._memo[key] = _Memo(
            uid=str(meta.get("uid")),
            generation=int(meta.get("generation") or 0),
            deployments=frozenset(current),
            digest=digest,
            states={n: st.deployment_state(d) for n, d in current.items()},
            floor=floor,
        )
        return self._write_status(key, body, derived)

    def all_pods(self) -> list[dict[str, Any]]:
        """Every live pod of the cluster, for the GPU room they take."""
        return self.kube.list_objects(
            "v1", "Pod", None, fields="status.phase!=Succeeded,status.phase!=Failed"
        )

    def plan(self, kind: str, body: Mapping[str, Any]) -> ServerPlan:
        """The server plan of a SmallModel or ModelPipeline body (SpecError when it has none)."""
        return self._plan(kind, body)

    def _plan(self, kind: str, body: Mapping[str, Any]) -> ServerPlan:
        if kind == SMALL_MODEL:
            return plan_for_model(specs.parse_small_model(body), self.settings)
        pipeline = specs.parse_model_pipeline(body)
        models: dict[str, specs.SmallModelSpec] = {}
        missing: list[str] = []
        broken: list[str] = []
        for name in sorted({step.model for step in pipeline.steps}):
            found = self.kube.get(API_VERSION, SMALL_MODEL, pipeline.namespace, name)
            if found is None or found.get("metadata", {}).get("deletionTimestamp"):
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

        The name is read first: server-side apply alone would merge our fields
        and our ownerReference into a namesake whose fields do not clash with
        ours, and the garbage collector would then delete it with the owner.
        Without force, apply still refuses fields another manager owns (409)
        or a second controller reference (422), which covers a namesake
        created between the read and the apply.
        """
        meta = obj["metadata"]
        found = self.kube.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if found is not None:
            return self._adopt_own(obj, kind, owner, found)
        try:
            return self.kube.apply(obj, force=False, manager=_manager(kind))
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

    def _stall(self, key: Key, body: Mapping[str, Any], reason: str, message: str) -> Outcome:
        meta = body["metadata"]
        self._memo[key] = _Memo(
            uid=str(meta.get("uid")),
            generation=int(meta.get("generation") or 0),
            deployments=frozenset(),
            digest=None,
        )
        return self._write_status(key, body, st.stalled(reason, message))

    def _write_status(self, key: Key, body: Mapping[str, Any], derived: st.Derived) -> Outcome:
        self.observed(key, derived)
        kind, namespace, name = key
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        memo = self._memo.get(key)
        # The body's status, not a remembered one: other parts (placement, autoscaling) write there too.
        current = body.get("status") or {}
        new, flips = st.merge(current, derived, now=self.now(), generation=generation)
        patch = st.status_patch(current, new)
        if patch:
            self.kube.patch_status(API_VERSION, kind, namespace, name, patch)
        if memo is not None:
            memo.status = new
        owner = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
        for flip in flips:
            if flip.type not in (c.READY, c.STALLED) or (flip.old is None and flip.new == "False"):
                continue
            bad = (flip.type == c.STALLED) == (flip.new == "True")
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

    def reconcile_named(self, kind: str, namespace: str, name: str) -> Outcome | None:
        """Full reconcile of a resource known by name (None when it is gone)."""
        body = self.kube.get(API_VERSION, kind, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        return self.reconcile(body)
