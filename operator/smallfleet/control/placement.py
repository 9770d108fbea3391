"""Carbon-aware placement inside the running operator: signals in, regions out, status beside.

`smallfleet.core.placement` decides (`evaluate` turns one model's facts into
a decision and its status) and `smallfleet.providers` fetches; this module
is the shell around them. It keeps the latest carbon readings in memory
(refreshed on a period, for the regions the cluster's nodes carry), plugs a
region chooser into `Reconciler` that asks the core where each model should
run, and reports the decision through the reconciler's one status writer
(`carbon`, `placement`, conditions `Placed` and `CarbonSignalStale`), in an
Event per move and in Prometheus gauges.

Every read comes from the watches (`control.facts`): nodes, the pods that
hold GPUs, each model's Deployments. Signals change while specs do not, so a
periodic pass re-evaluates every watched model and reconciles those whose
decision would change; a faster check finishes moves in progress with the
same make-before-break rule the reconcile applies
(`core.reconcile.removable`). The time of the last move lives in the
resource's `status.placement.lastMoveTime`, so a restarted operator keeps the
dwell time honest; the regions last decided live in `status.placement`, so
a move in progress is recognised after a restart too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from smallfleet import telemetry
from smallfleet.control.facts import Facts, Key
from smallfleet.control.reconcile import API_VERSION, Reconciler, RegionRequest, owned, pooled
from smallfleet.control.runtime import Runtime
from smallfleet.core import conditions as c
from smallfleet.core import status as st
from smallfleet.core.placement import (
    CarbonReading,
    Claim,
    RegionTable,
    with_zone_overrides,
)
from smallfleet.core.placement.evaluate import (
    Evaluation,
    FleetEntry,
    Signals,
    evaluate,
    fleet_entry,
    joint_plan,
    only_full,
    placement_status,
    ready_by_region,
)
from smallfleet.core.reconcile import removable
from smallfleet.core.render.children import (
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    NODE_REGION_LABEL,
    UNPLACED,
    deployment_name,
)
from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.kube import Kube, KubeError
from smallfleet.providers import (
    CarbonProvider,
    ProviderError,
    StaticProvider,
    build_provider,
    default_region_table,
)
from smallfleet.settings import Settings

log = logging.getLogger("smallfleet.core.placement")

# How often moves in progress are checked for completion (from the watches: no request).
MOVE_CHECK_SECONDS: Final = 2.0
# How often models whose servers the scheduler cannot place are placed again.
UNSCHEDULABLE_CHECK_SECONDS: Final = 5.0
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
CAPACITY_ADVICE: Final = telemetry.gauge(
    "capacity_advice_grams_per_week",
    "gCO2e per week one more GPU of this product in this region would save the fleet "
    "(shadow price of the joint placement's capacity, at the current signal).",
    ["region", "gpu_product"],
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- signals


class CarbonSignals:
    """Carbon readings for the cluster's regions, kept in memory between refreshes."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        nodes: Callable[[], Sequence[Mapping[str, Any]]],
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
    """The region chooser and status contributor that `Reconciler` calls, plus the periodic passes.

    Reads come from `Facts` (the watches); the state kept between calls
    (choices awaiting their status write, moves in progress, claims, the
    emissions per model) spans resources and is guarded by one lock, held
    only while that state is read or changed, never across I/O.
    """

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        signals: CarbonSignals,
        facts: Facts,
        *,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.signals = signals
        self.facts = facts
        self.now = now
        self.reconciler: Reconciler | None = None
        self._lock = threading.Lock()
        self._choices: dict[Key, _Choice] = {}
        self._moving: dict[Key, tuple[str, ...]] = {}
        self._announced: dict[Key, tuple[str, ...]] = {}  # the last move announced by an Event
        self._emissions: dict[Key, float] = {}
        self._unschedulable: set[Key] = set()  # servers the scheduler could not place
        self._claims: dict[Key, _Claimed] = {}
        self._targets: dict[Key, tuple[str, ...]] = {}  # the fleet's joint plan, per refresh

    # -- called by Reconciler ------------------------------------------------

    def regions(self, req: RegionRequest) -> dict[str, int]:
        """`{region: replicas}` for the plan: the decided regions (empty when none is feasible)."""
        key = _owner_key(req.owner)
        nodes = req.facts.nodes()
        pods = req.facts.gpu_pods() if req.plan.resources.gpus > 0 else []
        signals = self.signals.latest()
        now = self.now()
        decision_moves = False
        with self._lock:  # one decision at a time sees the others' claims
            ev = evaluate(
                req.plan, req.owner, req.deployments, nodes, pods, signals,
                self.settings, now, self._outstanding(key, nodes, pods),
                target=self._targets.get(key),
            )  # fmt: skip
            self._claim(key, req.plan, ev)
            self._choices[key] = _Choice(ev, req.plan)
            decision = ev.decision
            if (
                decision.move
                and ev.current is not None
                and self._announced.get(key) != decision.regions
            ):
                # A reconcile of a body read before the last status write decides it again.
                self._announced[key] = decision.regions
                decision_moves = True
            if decision.regions and set(ready_by_region(req.deployments, unplaced=True)) - set(
                decision.regions
            ):
                self._moving[key] = decision.regions
        if decision_moves:
            self._moved(req.owner, ev)
        if not decision.regions and only_full(decision):
            # Every region is allowed and merely full: an unpinned server lets the
            # scheduler say what is missing, and run it wherever room appears first.
            return {UNPLACED: ev.replicas}
        return dict.fromkeys(decision.regions, ev.replicas)

    def status_extra(
        self, key: Key, body: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]]
    ) -> st.Derived | None:
        with self._lock:
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
        with self._lock:
            self._emissions[key] = grams
            FLEET_GRAMS.set(sum(self._emissions.values()))
        return derived

    def observed(self, key: Key, derived: st.Derived) -> None:
        """Remember models whose servers the scheduler cannot place, for `replace_unschedulable`."""
        stalled = next((x for x in derived.conditions if x.type == c.STALLED), None)
        stuck = stalled is not None and (stalled.status, stalled.reason) == (
            "True",
            c.REASON_UNSCHEDULABLE,
        )
        with self._lock:
            if stuck:
                self._unschedulable.add(key)
            else:
                self._unschedulable.discard(key)

    # -- periodic ----------------------------------------------------------

    def refresh(self) -> None:
        """Fetch fresh signals, then reconcile every model whose decision they change."""
        self.signals.refresh()
        try:
            self.plan_fleet()
        except Exception:  # the joint plan steers; without it each model decides alone
            log.exception("joint fleet placement failed; each model decides alone")
            with self._lock:
                self._targets = {}
        self.reevaluate()

    def plan_fleet(self) -> None:
        """Decide the whole fleet's regions jointly, and publish where capacity would pay.

        Each model's reconcile then follows its target through `decide`, which
        still applies every rule; pooled models are their pool's to place.
        """
        reconciler = self._reconciler()
        now = self.now()
        entries: list[FleetEntry] = []
        for key in reconciler.known():
            body = reconciler.body(key)
            if body is None or body.get("metadata", {}).get("deletionTimestamp") or pooled(body):
                continue
            try:
                plan = reconciler.plan(key[0], body)
            except Exception:  # an invalid spec is the reconcile's to report
                continue
            mine = owned(self.facts.deployments(key), body["metadata"].get("uid"))
            entries.append(fleet_entry(key, plan, body, mine, now))
        fleet = joint_plan(
            entries, self.facts.nodes(), self.facts.gpu_pods(), self.signals.latest(),
            self.settings, now,
        )  # fmt: skip
        with self._lock:
            self._targets = dict(fleet.targets)
        CAPACITY_ADVICE.clear()
        for advice in fleet.advice:
            CAPACITY_ADVICE.labels(region=advice.region, gpu_product=advice.gpu_product).set(
                round(advice.grams_per_week, 1)
            )

    def reevaluate(self, only: set[Key] | None = None) -> None:
        """Reconcile every watched model (or those in `only`) whose decision would change now."""
        reconciler = self._reconciler()
        known = reconciler.known()
        with self._lock:
            gone = set(self._emissions) - set(known)
        for key in gone:
            self._forget(key)
        if only is not None:
            known = [k for k in known if k in only]
        if not known:
            return
        signals = self.signals.latest()
        nodes = self.facts.nodes()
        pods = self.facts.gpu_pods()
        for key in known:
            kind, namespace, name = key
            body = reconciler.body(key)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                continue
            if pooled(body) is not None:
                continue  # its pool's servers, not placement, decide where it runs
            try:
                plan = reconciler.plan(kind, body)
            except Exception:  # an invalid spec is the reconcile's to report
                continue
            mine = owned(self.facts.deployments(key), body["metadata"].get("uid"))
            gpu_pods = pods if plan.resources.gpus > 0 else []
            with self._lock:
                claims = self._outstanding(key, nodes, gpu_pods)
            ev = evaluate(
                plan, body, mine, nodes, gpu_pods, signals, self.settings, self.now(), claims,
                target=self._targets.get(key),
            )  # fmt: skip
            if self._differs(body, ev, mine):
                log.info(
                    "%s %s/%s: placement changed: %s", kind, namespace, name, ev.decision.message
                )
                reconciler.reconcile_named(kind, namespace, name)

    def replace_unschedulable(self) -> None:
        """Place again, now, the models whose servers cannot be scheduled where they were put.

        Models placed at the same moment all see the same free GPUs; the ones
        that lose the race find their region full once the winners' pods bind.
        Their region is then infeasible, which placement repairs without dwell.
        """
        known = set(self._reconciler().known())
        with self._lock:
            self._unschedulable &= known
            stuck = set(self._unschedulable)
        if stuck:
            self.reevaluate(only=stuck)

    def finish_moves(self) -> None:
        """Reconcile models whose move can complete: every target region serves (make-before-break)."""
        reconciler = self._reconciler()
        with self._lock:
            moving = list(self._moving.items())
        for key, target in moving:
            kind, namespace, name = key
            body = reconciler.body(key)
            if body is None:
                with self._lock:
                    self._moving.pop(key, None)
                continue
            found = owned(self.facts.deployments(key), body["metadata"].get("uid"))
            regions = {str(st.region_of(d) or UNPLACED): str(d["metadata"]["name"]) for d in found}
            if not set(regions) - set(target):
                with self._lock:
                    self._moving.pop(key, None)
                continue
            try:
                plan = reconciler.plan(kind, body)
            except Exception:  # an invalid spec is the reconcile's to report
                continue
            wanted = frozenset(deployment_name(plan, r) for r in target)
            if removable(found, wanted):
                try:
                    reconciler.reconcile_named(kind, namespace, name)
                except KubeError as exc:
                    log.warning("move of %s %s/%s not finished: %s", kind, namespace, name, exc)

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

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._claims.pop(key, None)
            self._emissions.pop(key, None)
            self._moving.pop(key, None)
            self._announced.pop(key, None)
            self._unschedulable.discard(key)
            FLEET_GRAMS.set(sum(self._emissions.values()))
        for gauge in (MODEL_WATTS, MODEL_GRAMS):
            with contextlib.suppress(KeyError):
                gauge.remove(*key)

    def _reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise RuntimeError("Placer is not installed on a Reconciler")
        return self.reconciler


def install(
    runtime: Runtime, settings: Settings, *, env: Mapping[str, str] | None = None
) -> Placer:
    """Plug carbon-aware placement into a `handlers.operator.Runtime`'s reconciler and timers."""
    reconciler = runtime.reconciler
    signals = CarbonSignals(reconciler.kube, settings, reconciler.facts.nodes, env=env)
    placer = Placer(reconciler.kube, settings, signals, reconciler.facts)
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
    "evaluate",
    "install",
    "placement_status",
]
