"""The operator's own autoscaler at run time: scrape, decide, scale, report.

`scaling.mode: operator` leaves replicas to the operator. Every
`Settings.scrape_interval_seconds` the periodic thread calls `Autoscaler.run`,
which, for each SmallModel and ModelPipeline the reconciler knows, takes each
region's Deployment and its ready pods, asks `metricsource.ScalingLoop` for a
decision, and writes a changed count through the Deployment's `/scale`
subresource — the same write an HPA makes, so `kubectl scale` habits and
RBAC carry over.

Two writers of one field must not fight. The reconciler renders `replicas`
in operator mode (server-side apply owns the field), so a resync would put
back the count from the spec. It therefore asks `Autoscaler.replicas` what
the autoscaler last decided for a Deployment, and the autoscaler scales and
records under the resource's reconcile lock, so a reconcile sees either the
count before a decision or the one after it, never an apply racing a scale.

Status goes under `status.scaling` and the `ScalingActive` condition; an
Event marks each change of count; `smallfleet_scaling_*` metrics and a span
per decision show the same from outside. Pods the scheduler cannot place (no
GPU free in the region) are counted as `pendingReplicas` and named in the
condition's message: the count the metrics ask for is kept, so they start
as soon as a GPU frees up.

The carbon cap needs the current grid intensity of each region:
`Autoscaler.intensity` is that hook (region -> gCO2eq/kWh or None); the
placement wiring sets it to its latest readings.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from smallfleet import telemetry
from smallfleet.control.reconcile import (
    API_VERSION,
    MODEL_PIPELINE,
    SMALL_MODEL,
    Reconciler,
    owned,
    utcnow,
)
from smallfleet.core import conditions as c
from smallfleet.core import spec as specs
from smallfleet.core import status as st
from smallfleet.core.autoscaling import ScalingDecision
from smallfleet.core.autoscaling.decision import METRICS_MISSING, SCALED_DOWN, SCALED_UP
from smallfleet.core.placement.evaluate import Signals
from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.core.replicas import clamp
from smallfleet.kube import KubeError
from smallfleet.metricsource import ScalingLoop

log = logging.getLogger("smallfleet.scaling")

# Status is rewritten when the decision changes, else at most this often (value, time).
STATUS_REFRESH_SECONDS: Final = 30.0
DESIRED: Final = telemetry.gauge(
    "scaling_desired_replicas",
    "Replicas the operator's autoscaler wants, per Deployment.",
    ("kind", "namespace", "name", "deployment"),
)
DECISIONS: Final = telemetry.counter(
    "scaling_decisions",
    "Autoscaling decisions, by direction (up, down, hold).",
    ("kind", "namespace", "name", "direction"),
)

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class RegionStep:
    """One Deployment's share of a step: what it runs and what was decided."""

    deployment: str
    region: str
    current: int
    total: int
    ready: int
    pending: int
    pending_message: str
    decision: ScalingDecision | None  # None: no ready pod to ask yet


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    if (pod.get("status") or {}).get("phase") != "Pending":
        return None
    refusal = st.scheduler_refusal(pod)
    return None if refusal is None else refusal or "unschedulable"


def _selected(pod: Mapping[str, Any], match: Mapping[str, str]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def _direction(decision: ScalingDecision) -> str:
    if decision.desired > decision.current:
        return "up"
    if decision.desired < decision.current:
        return "down"
    return "hold"


def _round(value: float) -> float:
    return float(f"{value:.4g}")


class LatestSignals(Protocol):
    """What the carbon cap needs of the placement's `CarbonSignals`."""

    def latest(self) -> Signals: ...


def intensity_from(signals: LatestSignals) -> Callable[[str], float | None]:
    """The carbon cap's input: a region's latest grid intensity from the placement's readings.

    Only readings in gCO2eq/kWh count: `carbonCap.aboveIntensity` is in those
    units, and a 0-100 index is not. No usable reading: None, so no cap.
    """

    def intensity(region: str) -> float | None:
        try:
            reading = signals.latest().readings.get(region)
        except Exception as exc:  # no reading must never stop scaling: decide uncapped
            log.warning("no carbon reading for %s: %s", region, exc)
            return None
        if reading is None or not reading.usable or reading.kind == "index":
            return None
        return reading.intensity

    return intensity


class Autoscaler:
    """Runs the operator-mode scaling loop over every resource the reconciler knows."""

    def __init__(
        self,
        reconciler: Reconciler,
        loop: ScalingLoop | None = None,
        *,
        intensity: Callable[[str], float | None] | None = None,
        now: Callable[[], str] = utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reconciler = reconciler
        self.kube = reconciler.kube
        self.loop = loop or ScalingLoop(reconciler.settings)
        self.intensity: Callable[[str], float | None] = intensity or (lambda _region: None)
        self.now = now
        self.clock = clock
        # (namespace, deployment) -> replicas last decided; read by the reconciler's render,
        # written under the resource's lock.
        self._decided: dict[tuple[str, str], int] = {}
        # Only the periodic thread touches these: the loop's keys and each resource's report.
        self._keys: dict[Key, set[str]] = {}  # resource -> its ScalingLoop keys
        self._reports: dict[Key, _Report] = {}
        # resource -> (uid, resourceVersion) of the body last seen asking for no operator
        # scaling: the same object version needs no parse again on the next pass.
        self._unscaled: dict[Key, tuple[str, str]] = {}

    # -- the reconciler's side -------------------------------------------------

    def replicas(self, plan: ServerPlan, namespace: str, deployment: str) -> int | None:
        """The count the autoscaler last set on this Deployment, within min..max; None if none."""
        if plan.scaling.mode != "operator":
            return None
        found = self._decided.get((namespace, deployment))
        return None if found is None else clamp(plan.scaling, found)

    def status(self, key: Key, current: Mapping[str, Any]) -> st.Derived | None:
        """This resource's part of status (`scaling`, ScalingActive) for the one status writer.

        The time of the last decision is a stamp: kept from `current` while
        the decision it dates is the same, so rewriting status moves nothing.
        """
        report = self._reports.get(key)
        if report is None:
            return None
        scaling = dict(report.scaling)
        last = scaling.get("lastDecision")
        if isinstance(last, Mapping):
            before = (current.get("scaling") or {}).get("lastDecision") or {}
            same = {k: v for k, v in before.items() if k != "time"} == dict(last)
            scaling["lastDecision"] = {**last, "time": before.get("time") if same else report.at}
        return st.Derived((report.condition,), {"scaling": scaling})

    # -- the periodic pass -----------------------------------------------------

    def run(self) -> None:
        """One pass: every known SmallModel and ModelPipeline (called by `Runtime.every`)."""
        known = [k for k in self.reconciler.known() if k[0] in (SMALL_MODEL, MODEL_PIPELINE)]
        for key in (set(self._keys) | set(self._unscaled)) - set(known):
            self.forget(*key)
        for key in known:
            try:
                self.step(*key)
            except KubeError as exc:
                log.warning("scaling %s %s/%s skipped this round: %s", *key, exc)
            except specs.SpecError:
                continue  # the reconciler reports it as Stalled

    def forget(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        self._unscaled.pop(key, None)
        for loop_key in self._keys.pop(key, set()):
            self.loop.forget(loop_key)
            deployment = loop_key.split("/", 1)[1]
            self._decided.pop((namespace, deployment), None)
            with contextlib.suppress(KeyError):  # never decided: no series to drop
                DESIRED.remove(kind, namespace, name, deployment)
        self._reports.pop(key, None)

    def step(self, kind: str, namespace: str, name: str) -> list[RegionStep]:
        """Decide (and scale) every region of one resource; write its scaling status."""
        key = (kind, namespace, name)
        body = self.reconciler.body(key)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self.forget(*key)
            return []
        if ((body.get("spec") or {}).get("serving") or {}).get("pool"):
            self.forget(*key)  # a pooled model's servers belong to its pool
            return []
        meta = body.get("metadata") or {}
        version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        if kind == SMALL_MODEL and self._unscaled.get(key) == version:
            return []  # a pipeline's plan also follows its models: it is parsed each pass
        plan = self.reconciler.plan(kind, body)
        mode = plan.scaling.mode
        if mode != "operator":
            self.forget(*key)
            self._report_fixed(key, mode)
            self._unscaled[key] = version
            return []
        self._unscaled.pop(key, None)
        deployments = owned(self.reconciler.facts.deployments(key), body["metadata"].get("uid"))
        pods = self.reconciler.facts.pods(key) if deployments else []
        models = [m.name for m in plan.models if not m.is_ensemble]
        batch = max((m.max_batch_size for m in plan.models if not m.is_ensemble), default=0)
        steps: list[RegionStep] = []
        loop_keys: set[str] = set()
        for dep in sorted(deployments, key=lambda d: str(d["metadata"]["name"])):
            dep_name = str(dep["metadata"]["name"])
            region = st.region_of(dep)
            match = (dep.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
            mine = [p for p in pods if _selected(p, match)]
            ips = [
                str(p["status"]["podIP"])
                for p in mine
                if st.pod_ready(p) and (p.get("status") or {}).get("podIP")
            ]
            unplaced = [m for m in (_unschedulable(p) for p in mine) if m is not None]
            current = int(dep.get("spec", {}).get("replicas") or 0)
            state = st.deployment_state(dep)
            loop_key = f"{namespace}/{dep_name}"
            loop_keys.add(loop_key)
            decision = None
            if models and current > 0:
                decision = self._decide(
                    key, plan, loop_key, dep_name, region, models, ips, batch, current
                )
                decision = self._apply(key, body, dep_name, decision)
            steps.append(
                RegionStep(
                    deployment=dep_name,
                    region=region,
                    current=current,
                    total=state.total,
                    ready=state.ready,
                    pending=len(unplaced),
                    pending_message=unplaced[0] if unplaced else "",
                    decision=decision,
                )
            )
        for gone in self._keys.get(key, set()) - loop_keys:
            self.loop.forget(gone)
            self._decided.pop((namespace, gone.split("/", 1)[1]), None)
        self._keys[key] = loop_keys
        self._report(key, plan, steps)
        return steps

    # -- pieces ------------------------------------------------------------------

    def _decide(
        self,
        key: Key,
        plan: ServerPlan,
        loop_key: str,
        deployment: str,
        region: str,
        models: Sequence[str],
        ips: Sequence[str],
        batch: int,
        current: int,
    ) -> ScalingDecision:
        kind, namespace, name = key
        with telemetry.span(
            "autoscale decide",
            **{"smallfleet.kind": kind, "smallfleet.name": f"{namespace}/{name}"},
            deployment=deployment,
            region=region,
            ready=len(ips),
        ):
            return self.loop.step(
                loop_key,
                plan.scaling,
                models=models,
                pod_ips=ips,
                current_replicas=current,
                namespace=namespace,
                deployment=deployment,
                carbon_intensity=self.intensity(region),
                max_batch_size=batch,
            )

    def _apply(
        self,
        key: Key,
        body: Mapping[str, Any],
        deployment: str,
        decision: ScalingDecision,
    ) -> ScalingDecision:
        kind, namespace, name = key
        direction = _direction(decision)
        DECISIONS.labels(kind=kind, namespace=namespace, name=name, direction=direction).inc()
        DESIRED.labels(kind=kind, namespace=namespace, name=name, deployment=deployment).set(
            decision.desired
        )
        with self.reconciler.lock(key):
            if decision.changed:
                with telemetry.span(
                    "autoscale scale",
                    deployment=deployment,
                    replicas=decision.desired,
                    direction=direction,
                ):
                    self.kube.scale(namespace, deployment, decision.desired)
                log.info(
                    "%s %s/%s: %s %d -> %d (%s)",
                    kind,
                    namespace,
                    name,
                    deployment,
                    decision.current,
                    decision.desired,
                    decision.message,
                )
            self._decided[namespace, deployment] = decision.desired
        if decision.changed:
            self._event(body, deployment, decision)
        return decision

    def _event(self, body: Mapping[str, Any], deployment: str, d: ScalingDecision) -> None:
        reason = SCALED_UP if d.desired > d.current else SCALED_DOWN
        value = "no value" if d.value is None else f"{_round(d.value)}"
        message = (
            f"{deployment}: {d.current} -> {d.desired} replicas: "
            f"{d.metric} {value} vs target {_round(d.target)}; {d.message}"
        )
        owner = {"apiVersion": API_VERSION, "kind": body["kind"], "metadata": body["metadata"]}
        try:
            self.kube.event(owner, type_="Normal", reason=reason, message=message, action="Scale")
        except Exception as exc:  # an Event is a courtesy; never fail a decision on it
            log.warning("could not record scaling event: %s", exc)

    def _report(self, key: Key, plan: ServerPlan, steps: Sequence[RegionStep]) -> None:
        decisions = [s.decision for s in steps if s.decision is not None]
        pending = sum(s.pending for s in steps)
        scaling: dict[str, Any] = {
            "mode": "operator",
            "desiredReplicas": sum(
                s.decision.desired if s.decision is not None else s.current for s in steps
            ),
            "currentReplicas": sum(s.total for s in steps),
            "readyReplicas": sum(s.ready for s in steps),
            "effectiveMaxReplicas": max(
                (d.effective_max for d in decisions), default=plan.scaling.max_replicas
            ),
            "pendingReplicas": pending,
        }
        last = max(decisions, key=lambda d: (d.changed, d.desired), default=None)
        if last is not None:
            decision: dict[str, Any] = {
                "metric": last.metric,
                "target": last.target,
                "reason": f"{last.reason}: {last.message}"[:1024],
            }
            if last.value is not None:
                decision["value"] = _round(last.value)
            scaling["lastDecision"] = decision
        if not steps:
            cond = c.Condition(c.SCALING_ACTIVE, "False", c.REASON_PENDING, "no Deployment yet")
        elif last is None or last.reason == METRICS_MISSING:
            cond = c.Condition(
                c.SCALING_ACTIVE,
                "False",
                METRICS_MISSING,
                "no Triton metrics from the ready pods yet" if last is None else last.message,
            )
        else:
            message = (
                f"{scaling['desiredReplicas']} replicas wanted, {scaling['readyReplicas']} ready"
            )
            if pending:
                first = next(s for s in steps if s.pending)
                message += (
                    f"; {pending} Pending in {first.region or 'the cluster'} "
                    f"(no room on a fitting node): {first.pending_message}"
                )
            cond = c.Condition(c.SCALING_ACTIVE, "True", c.REASON_OPERATOR_SCALING, message)
        self._write(key, scaling, cond, changed=any(d.changed for d in decisions))

    def _report_fixed(self, key: Key, mode: str) -> None:
        # The reconcile writes this part with the rest of status (`fixed_scaling`): only
        # a report left from operator mode must go, so that it does not override it.
        self._reports.pop(key, None)

    def _write(
        self,
        key: Key,
        scaling: Mapping[str, Any],
        cond: c.Condition,
        *,
        changed: bool,
    ) -> None:
        """Keep this resource's report; have the status writer send it when it says something new.

        A new value of the metric alone is reported at most every
        STATUS_REFRESH_SECONDS, so steady load costs no status writes.
        """
        old = self._reports.get(key)
        now = self.clock()
        if old is not None and not changed:
            same = old.condition == cond and _without_volatile(old.scaling) == _without_volatile(
                scaling
            )
            value_moved = (old.scaling.get("lastDecision") or {}).get("value") != (
                scaling.get("lastDecision") or {}
            ).get("value")
            if same and (not value_moved or now - old.written < STATUS_REFRESH_SECONDS):
                return
        self._reports[key] = _Report(dict(scaling), cond, self.now(), now)
        self.reconciler.write_status(key)


@dataclass(frozen=True)
class _Report:
    """The autoscaler's last word on one resource, as the status writer will merge it."""

    scaling: Mapping[str, Any]
    condition: c.Condition
    at: str  # when it was decided (the stamp of lastDecision.time)
    written: float  # clock() of the report


def _without_volatile(scaling: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(scaling)
    last = dict(out.get("lastDecision") or {})
    last.pop("time", None)
    last.pop("value", None)
    out["lastDecision"] = last
    return out
