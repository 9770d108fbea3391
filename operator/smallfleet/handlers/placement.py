"""Carbon-aware placement inside the running operator: signals in, regions out, status beside.

`smallfleet.placement` decides and `smallfleet.providers` fetches; this
module is the shell around them. It keeps the latest carbon readings in
memory (refreshed on a period, for the regions the cluster's nodes carry),
plugs a region chooser into `Reconciler` that asks `placement.decide` where
each model should run, and reports the decision in status (`carbon`,
`placement`, conditions `Placed` and `CarbonSignalStale`), in an Event per
move and in Prometheus gauges.

Signals change while specs do not, so a periodic pass re-evaluates every
known resource and reconciles those whose decision would change; a faster
check finishes moves in progress, so an old region's Deployment goes soon
after the new one is Ready. The time of the last move lives in the
resource's `status.placement.lastMoveTime`, so a restarted operator keeps the
dwell time honest; the regions last decided live in `status.placement`, so
a move in progress is recognised after a restart too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from smallfleet import conditions as c
from smallfleet import status as st
from smallfleet import telemetry
from smallfleet.handlers.operator import Runtime
from smallfleet.handlers.reconcile import (
    API_VERSION,
    Key,
    Reconciler,
    RegionRequest,
    owned,
    owner_selector,
)
from smallfleet.kube import Kube, KubeError, Rejected
from smallfleet.placement import (
    CarbonReading,
    Claim,
    CurrentPlacement,
    PlacementDecision,
    PlacementInput,
    RegionTable,
    decide,
    node_capacity,
    plan_move,
    with_claims,
    with_zone_overrides,
)
from smallfleet.placement.policies import REASON_NO_CAPACITY
from smallfleet.providers import (
    CarbonProvider,
    ProviderError,
    StaticProvider,
    build_provider,
    default_region_table,
)
from smallfleet.render.children import (
    GPU_PRODUCT_LABEL,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_REGION,
    MANAGED_BY,
    NODE_REGION_LABEL,
    UNPLACED,
)
from smallfleet.render.serverplan import ServerPlan
from smallfleet.settings import Settings

log = logging.getLogger("smallfleet.placement")

# How often moves in progress are checked for completion (cheap: one list per moving model).
MOVE_CHECK_SECONDS: Final = 2.0
# How often models whose servers the scheduler cannot place are placed again.
UNSCHEDULABLE_CHECK_SECONDS: Final = 5.0
# All-pod lists are the costliest read of a reconcile; a burst of reconciles shares one.
PODS_TTL_SECONDS: Final = 2.0
# How long a decision's GPUs stay promised to a model whose pods have not bound yet.
CLAIM_TTL_SECONDS: Final = 30.0
REASON_MOVED: Final = "Moved"

INTENSITY: Final = telemetry.gauge(
    "carbon_intensity_grams_per_kwh",
    "Latest grid carbon intensity per region (gCO2eq/kWh; a 0-100 index for kind=index).",
    ["region", "zone", "provider", "kind"],
)
SIGNAL_AGE: Final = telemetry.gauge(
    "carbon_signal_age_seconds", "Age of the carbon signal used per region.", ["region"]
)
SIGNAL_STALE: Final = telemetry.gauge(
    "carbon_signal_stale", "1 when a region's signal is stale or a fallback, else 0.", ["region"]
)
MODEL_WATTS: Final = telemetry.gauge(
    "model_power_watts",
    "Estimated facility power of one model's servers (watts, PUE included).",
    ["kind", "namespace", "name"],
)
MODEL_GRAMS: Final = telemetry.gauge(
    "model_emissions_grams_per_hour",
    "Estimated emissions of one model's servers (gCO2e per hour).",
    ["kind", "namespace", "name"],
)
FLEET_GRAMS: Final = telemetry.gauge(
    "fleet_emissions_grams_per_hour", "Estimated emissions of every placed model (gCO2e per hour)."
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Signals:
    """The latest readings by region, the region table they were fetched with, and when."""

    readings: Mapping[str, CarbonReading]
    table: RegionTable
    fetched_at: dt.datetime | None = None


class CarbonSignals:
    """Carbon readings for the cluster's regions, kept in memory between refreshes."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        nodes: Callable[[], list[dict[str, Any]]],
        *,
        env: Mapping[str, str] | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.nodes = nodes
        self.env = env
        self.now = now
        self._lock = threading.Lock()
        self._provider: CarbonProvider | None = None
        self._provider_table: RegionTable | None = None
        self._latest: Signals | None = None

    def latest(self) -> Signals:
        """The last readings; fetched now if none were yet (a reconcile at start-up)."""
        latest = self._latest
        if latest is not None:
            return latest
        with self._lock:  # reconciles at start-up wait for one fetch, not one each
            return self._latest if self._latest is not None else self._refresh()

    def refresh(self) -> Signals:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> Signals:
        table = self._table()
        provider = self._provider_for(table)
        regions = sorted(
            {
                str(r)
                for n in self.nodes()
                if (r := (n.get("metadata", {}).get("labels") or {}).get(NODE_REGION_LABEL))
            }
        )
        readings = {r.region: r for r in provider.fetch(regions)} if regions else {}
        self._latest = Signals(readings, table, self.now())
        self._publish(self._latest)
        return self._latest

    def _table(self) -> RegionTable:
        base = default_region_table()
        ref = self.settings.region_zone_configmap
        if not ref:
            return base
        namespace, _, name = ref.rpartition("/")
        try:
            found = self.kube.get("v1", "ConfigMap", namespace or "default", name)
        except KubeError as exc:
            log.warning("region-zone ConfigMap %s unreadable, using the default map: %s", ref, exc)
            return self._provider_table or base
        data = (found or {}).get("data") or {}
        return with_zone_overrides(base, {str(k): str(v) for k, v in data.items()})

    def _provider_for(self, table: RegionTable) -> CarbonProvider:
        if self._provider is not None and table == self._provider_table:
            return self._provider
        try:
            provider: CarbonProvider = build_provider(self.settings, self.env, table)
        except ProviderError as exc:
            # Placement still works on the annual averages, and reports them as a fallback.
            log.error("carbon provider unavailable, using the static table: %s", exc)
            provider = StaticProvider(regions_table=table)
        self._provider, self._provider_table = provider, table
        return provider

    def _publish(self, signals: Signals) -> None:
        now = signals.fetched_at or self.now()
        for region, r in signals.readings.items():
            if r.intensity is not None:
                INTENSITY.labels(region=region, zone=r.zone, provider=r.provider, kind=r.kind).set(
                    r.intensity
                )
            SIGNAL_AGE.labels(region=region).set(r.age(now).total_seconds())
            degraded = r.is_stale(now, self.settings.carbon_max_age_seconds) or (
                r.provider == "static" and self.settings.carbon_provider != "static"
            )
            SIGNAL_STALE.labels(region=region).set(1 if degraded else 0)


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Evaluation:
    """One model's placement as decided now, with what it was decided from."""

    decision: PlacementDecision
    current: CurrentPlacement | None
    last_move_time: str | None  # what status.placement.lastMoveTime should say
    replicas: int


def _replicas(plan: ServerPlan, deployments: Sequence[Mapping[str, Any]]) -> int:
    observed = [
        int(d.get("spec", {}).get("replicas") or 0)
        for d in deployments
        if d.get("spec", {}).get("replicas") is not None
    ]
    current = max(observed) if observed else plan.scaling.min_replicas
    return max(plan.scaling.min_replicas, min(plan.scaling.max_replicas, current))


def _region(deployment: Mapping[str, Any]) -> str:
    return str((deployment.get("metadata", {}).get("labels") or {}).get(LABEL_REGION) or "")


def ready_by_region(
    deployments: Sequence[Mapping[str, Any]], *, unplaced: bool = False
) -> dict[str, int]:
    """Region -> ready replicas of the model's placed Deployments (and UNPLACED's, if asked)."""
    out: dict[str, int] = {}
    for d in deployments:
        region = _region(d)
        if region or unplaced:
            out[region] = out.get(region, 0) + int(d.get("status", {}).get("readyReplicas") or 0)
    return out


def replicas_by_region(deployments: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Region -> replicas the model's Deployments run (spec), for estimates and status."""
    out: dict[str, int] = {}
    for d in deployments:
        region = _region(d)
        if region:
            out[region] = out.get(region, 0) + int(d.get("spec", {}).get("replicas") or 0)
    return out


def current_placement(
    owner: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]], now: dt.datetime
) -> CurrentPlacement | None:
    """Where the model is placed: the regions last decided (status), else where it runs."""
    placement = (owner.get("status") or {}).get("placement") or {}
    decided = [
        str(r["region"])
        for r in placement.get("regions") or []
        if isinstance(r, Mapping) and r.get("region")
    ]
    running = ready_by_region(deployments)
    regions = decided or sorted(running)
    if not regions:
        return None
    since = _parse_time(placement.get("lastMoveTime"))
    if since is None:
        created = [
            t
            for d in deployments
            if (t := _parse_time(d.get("metadata", {}).get("creationTimestamp"))) is not None
        ]
        since = min(created) if created else now
    held = tuple(sorted((r, n) for r, n in running.items() if n > 0))
    return CurrentPlacement(tuple(regions), since, held)


def capacity_nodes(plan: ServerPlan, nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The nodes a server may land on: CPU servers stay off GPU nodes, as rendered."""
    if plan.resources.gpus > 0:
        return list(nodes)
    return [
        n for n in nodes if GPU_PRODUCT_LABEL not in (n.get("metadata", {}).get("labels") or {})
    ]


def evaluate(
    plan: ServerPlan,
    owner: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    signals: Signals,
    settings: Settings,
    now: dt.datetime,
    claims: Sequence[Claim] = (),
) -> Evaluation:
    """Decide one model's regions from values alone (no I/O).

    `claims` are other models' GPUs promised by decisions whose pods have not
    bound yet; they count as taken.
    """
    meta = owner.get("metadata") or {}
    replicas = _replicas(plan, deployments)
    current = current_placement(owner, deployments, now)
    model = PlacementInput(
        f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        plan.placement,
        plan.resources,
        # Room for at least one replica: a KEDA model at zero must have somewhere to come back.
        max(1, replicas),
    )
    capacity = with_claims(node_capacity(capacity_nodes(plan, nodes), pods), claims)
    decision = decide(
        model, signals.readings, capacity, current, now, settings, regions=signals.table
    )
    if replicas == 0 and not decision.feasible:
        # Nowhere has room for one: at zero replicas it still fits anywhere it may run.
        decision = decide(
            dataclasses.replace(model, replicas=0), signals.readings, capacity, current, now,
            settings, regions=signals.table,
        )  # fmt: skip
    previous = ((owner.get("status") or {}).get("placement") or {}).get("lastMoveTime")
    if decision.regions and (current is None or decision.move):
        last_move: str | None = _rfc3339(now)
    else:
        last_move = str(previous) if previous else (_rfc3339(current.since) if current else None)
    return Evaluation(decision, current, last_move, replicas)


def placement_status(
    evaluation: Evaluation,
    plan: ServerPlan,
    deployments: Sequence[Mapping[str, Any]],
    settings: Settings,
    now: dt.datetime,
    *,
    has_deployments: bool,
) -> st.Derived:
    """Conditions and fields (`placement`, `carbon`) for one evaluated model."""
    decision = evaluation.decision
    running = replicas_by_region(deployments)
    replicas = {r: running.get(r, evaluation.replicas) for r in decision.regions}
    fields: dict[str, Any] = {
        "placement": decision.placement_status(replicas, evaluation.last_move_time),
        "carbon": decision.carbon_status(now, plan.resources, replicas, pue=settings.pue),
    }
    conds: list[c.Condition] = [decision.placed_condition(), decision.signal_condition()]
    if not decision.feasible and not has_deployments:
        message = decision.message[: st.MAX_MESSAGE]
        conds += [
            c.Condition(c.READY, "False", c.REASON_NO_FEASIBLE_REGION, message),
            c.Condition(
                c.RECONCILING, "False", c.REASON_NO_FEASIBLE_REGION, "no region can take it"
            ),
            c.Condition(c.STALLED, "True", c.REASON_NO_FEASIBLE_REGION, message),
        ]
    return st.Derived(tuple(conds), fields)


def only_full(decision: PlacementDecision) -> bool:
    """No region is feasible, and only for want of room: no rule of the spec excludes any."""
    return (
        not decision.feasible
        and bool(decision.excluded)
        and all(e.reason == REASON_NO_CAPACITY for e in decision.excluded)
    )


def _owner_key(owner: Mapping[str, Any]) -> Key:
    meta = owner.get("metadata") or {}
    return (str(owner.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name")))


# --------------------------------------------------------------------------- the runtime part


@dataclass
class _Choice:
    evaluation: Evaluation
    plan: ServerPlan


@dataclass(frozen=True)
class _Claimed:
    """A decision's promise: `replicas` x `gpus` of `gpu_product` in each of `regions`."""

    at: float  # time.monotonic() of the decision
    regions: tuple[str, ...]
    replicas: int
    gpus: int
    gpu_product: str | None


class Placer:
    """The region chooser and status contributor that `Reconciler` calls, plus the periodic passes."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        signals: CarbonSignals,
        *,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.signals = signals
        self.now = now
        self.reconciler: Reconciler | None = None
        self._choices: dict[Key, _Choice] = {}
        self._moving: dict[Key, tuple[str, ...]] = {}
        self._announced: dict[Key, tuple[str, ...]] = {}  # the last move announced by an Event
        self._pods: tuple[float, list[dict[str, Any]]] | None = None
        self._emissions: dict[Key, float] = {}
        self._unschedulable: set[Key] = set()  # servers the scheduler could not place
        self._claims: dict[Key, _Claimed] = {}
        self._deciding = threading.Lock()  # one decision at a time sees the others' claims

    # -- called by Reconciler ------------------------------------------------

    def regions(self, req: RegionRequest) -> dict[str, int]:
        """`{region: replicas}` for the plan: the decided regions (empty when none is feasible)."""
        key = _owner_key(req.owner)
        nodes = req.nodes()
        pods = self._gpu_pods(req.pods) if req.plan.resources.gpus > 0 else []
        now = self.now()
        with self._deciding:
            ev = evaluate(
                req.plan, req.owner, req.deployments, nodes, pods, self.signals.latest(),
                self.settings, now, self._outstanding(key, nodes, pods),
            )  # fmt: skip
            self._claim(key, req.plan, ev)
        self._choices[key] = _Choice(ev, req.plan)
        decision = ev.decision
        if (
            decision.move
            and ev.current is not None
            and self._announced.get(key) != decision.regions
        ):
            # A reconcile of a body read before the last status write decides the same move again.
            self._announced[key] = decision.regions
            self._moved(req.owner, ev)
        if decision.regions and set(ready_by_region(req.deployments, unplaced=True)) - set(
            decision.regions
        ):
            self._moving[key] = decision.regions
        if not decision.regions and only_full(decision):
            # Every region is allowed and merely full: an unpinned server lets the
            # scheduler say what is missing, and run it wherever room appears first.
            return {UNPLACED: ev.replicas}
        return dict.fromkeys(decision.regions, ev.replicas)

    def status_extra(
        self, key: Key, body: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]]
    ) -> st.Derived | None:
        choice = self._choices.pop(key, None)
        if choice is None:
            return None
        derived = placement_status(
            choice.evaluation, choice.plan, deployments, self.settings, self.now(),
            has_deployments=bool(deployments),
        )  # fmt: skip
        carbon = derived.fields.get("carbon") or {}
        MODEL_WATTS.labels(*key).set(float(carbon.get("energyWatts") or 0.0))
        grams = float(carbon.get("gramsCO2ePerHour") or 0.0)
        MODEL_GRAMS.labels(*key).set(grams)
        self._emissions[key] = grams
        FLEET_GRAMS.set(sum(self._emissions.values()))
        return derived

    def observed(self, key: Key, derived: st.Derived) -> None:
        """Remember models whose servers the scheduler cannot place, for `replace_unschedulable`."""
        stalled = next((x for x in derived.conditions if x.type == c.STALLED), None)
        if stalled is not None and (stalled.status, stalled.reason) == (
            "True",
            c.REASON_UNSCHEDULABLE,
        ):
            self._unschedulable.add(key)
        else:
            self._unschedulable.discard(key)

    # -- periodic ----------------------------------------------------------

    def refresh(self) -> None:
        """Fetch fresh signals, then reconcile every model whose decision they change."""
        self.signals.refresh()
        self.reevaluate()

    def reevaluate(self, only: set[Key] | None = None) -> None:
        """Reconcile every known model (or those in `only`) whose decision would change now."""
        reconciler = self._reconciler()
        known = reconciler.known()
        for gone in set(self._emissions) - set(known):
            self._forget(gone)
        if only is not None:
            known = [k for k in known if k in only]
        if not known:
            return
        signals = self.signals.latest()
        nodes = reconciler.nodes()
        pods: list[dict[str, Any]] | None = None
        deployments = self._deployments({ns for _, ns, _ in known})
        for key in known:
            kind, namespace, name = key
            body = self.kube.get(API_VERSION, kind, namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                continue
            try:
                plan = reconciler.plan(kind, body)
            except Exception:  # an invalid spec is the reconcile's to report
                continue
            mine = owned(deployments.get((kind, namespace, name), []), body["metadata"].get("uid"))
            if pods is None and plan.resources.gpus > 0:
                pods = self._gpu_pods(reconciler.all_pods, max_age=0.0)
            with self._deciding:
                claims = self._outstanding(key, nodes, pods or [])
            ev = evaluate(
                plan, body, mine, nodes, pods or [], signals, self.settings, self.now(), claims
            )
            if self._differs(body, ev, mine):
                log.info(
                    "%s %s/%s: placement changed: %s", kind, namespace, name, ev.decision.message
                )
                reconciler.reconcile_named(kind, namespace, name)  # the freshest body

    def replace_unschedulable(self) -> None:
        """Place again, now, the models whose servers cannot be scheduled where they were put.

        Models placed at the same moment all see the same free GPUs; the ones
        that lose the race find their region full once the winners' pods bind.
        Their region is then infeasible, which placement repairs without dwell.
        """
        self._unschedulable &= set(self._reconciler().known())
        stuck = set(self._unschedulable)
        if stuck:
            self.reevaluate(only=stuck)

    def finish_moves(self) -> None:
        """Reconcile models whose move can complete: every target region is Ready."""
        reconciler = self._reconciler()
        for key, target in list(self._moving.items()):
            kind, namespace, name = key
            try:
                found = self.kube.list_objects(
                    "apps/v1",
                    "Deployment",
                    namespace,
                    labels=owner_selector(kind, name),
                )
            except KubeError as exc:
                log.warning("move of %s %s/%s not checked: %s", kind, namespace, name, exc)
                continue
            ready = ready_by_region(found, unplaced=True)
            wanted = replicas_by_region(found)
            need = max([wanted.get(r, 1) for r in target] or [1])
            step = plan_move(ready, target, required_ready=need)
            if not (set(ready) - set(target)):
                self._moving.pop(key, None)
            elif step.delete:
                reconciler.reconcile_named(kind, namespace, name)

    # -- helpers -----------------------------------------------------------

    def _differs(
        self, body: Mapping[str, Any], ev: Evaluation, deployments: Sequence[Mapping[str, Any]]
    ) -> bool:
        status = body.get("status") or {}
        placement = status.get("placement") or {}
        decided = [
            r.get("region") for r in placement.get("regions") or [] if isinstance(r, Mapping)
        ]
        if list(ev.decision.regions) != decided:
            return True
        conds = status.get("conditions") or []
        for want in (ev.decision.placed_condition(), ev.decision.signal_condition()):
            have = c.get_condition(conds, want.type) or {}
            if (have.get("status"), have.get("reason")) != (want.status, want.reason):
                return True
        running = set(ready_by_region(deployments, unplaced=True))
        return bool(ev.decision.regions) and bool(running - set(ev.decision.regions))

    def _moved(self, owner: Mapping[str, Any], ev: Evaluation) -> None:
        assert ev.current is not None
        d = ev.decision

        def where(regions: Sequence[str], readings: Mapping[str, CarbonReading]) -> str:
            parts = []
            for r in regions:
                reading = readings.get(r)
                if reading is not None and reading.intensity is not None:
                    parts.append(f"{r} ({reading.intensity:.0f} g/kWh)")
                else:
                    parts.append(r)
            return ", ".join(parts)

        readings = self.signals.latest().readings
        message = (
            f"moving from {where(ev.current.regions, readings)} to {where(d.regions, readings)}"
        )
        if d.improvement_percent is not None:
            message += f": {d.improvement_percent:.1f}% cleaner"
        key = _owner_key(owner)
        log.info("%s %s/%s: %s", *key, message)
        try:
            self.kube.event(
                {"apiVersion": API_VERSION, **owner},
                type_="Normal",
                reason=REASON_MOVED,
                message=message,
                action="Place",
            )
        except Exception as exc:  # an Event is a courtesy; never fail a reconcile on it
            log.warning("could not record the move of %s %s/%s: %s", *key, exc)

    def _claim(self, key: Key, plan: ServerPlan, ev: Evaluation) -> None:
        """Promise the decided regions' GPUs to this model until its pods bind (or the claim ages)."""
        if plan.resources.gpus > 0 and ev.decision.regions:
            self._claims[key] = _Claimed(
                time.monotonic(), ev.decision.regions, ev.replicas,
                plan.resources.gpus, plan.resources.gpu_product,
            )  # fmt: skip
        else:
            self._claims.pop(key, None)

    def _outstanding(
        self, key: Key, nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
    ) -> list[Claim]:
        """Other models' claimed replicas that are not bound to a node of their region yet."""
        now = time.monotonic()
        for other in [k for k, v in self._claims.items() if now - v.at > CLAIM_TTL_SECONDS]:
            del self._claims[other]
        if not any(k != key for k in self._claims):
            return []
        region_of = {
            str(n.get("metadata", {}).get("name")): str(
                (n.get("metadata", {}).get("labels") or {}).get(NODE_REGION_LABEL) or ""
            )
            for n in nodes
        }
        bound: dict[tuple[Key, str], int] = {}
        for pod in pods:
            meta = pod.get("metadata") or {}
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or meta.get("deletionTimestamp"):
                continue
            labels = meta.get("labels") or {}
            owner = (
                str(labels.get(LABEL_OWNER_KIND, "")),
                str(meta.get("namespace", "")),
                str(labels.get(LABEL_OWNER_NAME, "")),
            )
            where = (owner, region_of.get(str(node), ""))
            bound[where] = bound.get(where, 0) + 1
        out: list[Claim] = []
        for other, claimed in self._claims.items():
            if other == key:
                continue
            for region in claimed.regions:
                left = claimed.replicas - bound.get((other, region), 0)
                if left > 0:
                    out.append(Claim(region, claimed.gpu_product, claimed.gpus, left))
        return out

    def _gpu_pods(
        self, fetch: Callable[[], list[dict[str, Any]]], *, max_age: float = PODS_TTL_SECONDS
    ) -> list[dict[str, Any]]:
        """The cluster's live pods, shared by decisions less than `max_age` seconds apart."""
        now = time.monotonic()
        if self._pods is not None and now - self._pods[0] < max_age:
            return self._pods[1]
        try:
            pods = fetch()
        except Rejected:
            pods = []  # a namespaced install may not list every pod: judge by capacity alone
        self._pods = (now, pods)
        return pods

    def _deployments(self, namespaces: set[str]) -> dict[Key, list[dict[str, Any]]]:
        out: dict[Key, list[dict[str, Any]]] = {}
        for namespace in sorted(namespaces):
            for d in self.kube.list_objects(
                "apps/v1", "Deployment", namespace, labels={LABEL_MANAGED_BY: MANAGED_BY}
            ):
                labels = d.get("metadata", {}).get("labels") or {}
                key = (
                    str(labels.get(LABEL_OWNER_KIND, "")),
                    namespace,
                    str(labels.get(LABEL_OWNER_NAME, "")),
                )
                out.setdefault(key, []).append(d)
        return out

    def _forget(self, key: Key) -> None:
        with self._deciding:
            self._claims.pop(key, None)
        self._emissions.pop(key, None)
        self._moving.pop(key, None)
        self._announced.pop(key, None)
        self._unschedulable.discard(key)
        for gauge in (MODEL_WATTS, MODEL_GRAMS):
            with contextlib.suppress(KeyError):
                gauge.remove(*key)
        FLEET_GRAMS.set(sum(self._emissions.values()))

    def _reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise RuntimeError("Placer is not installed on a Reconciler")
        return self.reconciler


def install(
    runtime: Runtime, settings: Settings, *, env: Mapping[str, str] | None = None
) -> Placer:
    """Plug carbon-aware placement into a `handlers.operator.Runtime`'s reconciler and timers."""
    reconciler = runtime.reconciler
    signals = CarbonSignals(reconciler.kube, settings, reconciler.nodes, env=env)
    placer = Placer(reconciler.kube, settings, signals)
    placer.reconciler = reconciler
    reconciler.choose_regions = placer.regions
    reconciler.status_extra = placer.status_extra
    reconciler.observed = placer.observed
    runtime.every(float(settings.carbon_refresh_seconds), placer.refresh, "carbon-refresh")
    runtime.every(MOVE_CHECK_SECONDS, placer.finish_moves, "placement-moves")
    runtime.every(UNSCHEDULABLE_CHECK_SECONDS, placer.replace_unschedulable, "placement-stuck")
    return placer


__all__ = [
    "CarbonSignals",
    "Evaluation",
    "Placer",
    "Signals",
    "current_placement",
    "evaluate",
    "install",
    "placement_status",
    "ready_by_region",
    "replicas_by_region",
]
