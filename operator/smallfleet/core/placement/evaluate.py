"""One model's placement decided from values: regions, replicas, status.

The runtime (`control.placement`) gathers the owner, its Deployments, the
nodes, the GPU pods and the latest carbon readings from its watches and
calls `evaluate`; everything here is a function of those values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smallfleet.core import conditions as c
from smallfleet.core import status as st
from smallfleet.core.placement.capacity import Claim, node_capacity, with_claims
from smallfleet.core.placement.decide import PlacementDecision, decide
from smallfleet.core.placement.fleet import (
    Advice,
    capacity_advice,
    comparable_intensity,
    fleet_member,
    model_watts,
)
from smallfleet.core.placement.joint import FleetModel, assign
from smallfleet.core.placement.policies import REASON_NO_CAPACITY, CurrentPlacement, PlacementInput
from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.core.render.children import (
    GPU_PRODUCT_LABEL,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_REGION,
)
from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.core.replicas import replicas_to_run
from smallfleet.settings import Settings


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Signals:
    """The latest readings by region, the region table they were fetched with, and when."""

    readings: Mapping[str, CarbonReading]
    table: RegionTable
    fetched_at: dt.datetime | None = None


@dataclass(frozen=True)
class Evaluation:
    """One model's placement as decided now, with what it was decided from."""

    decision: PlacementDecision
    current: CurrentPlacement | None
    last_move_time: str | None  # what status.placement.lastMoveTime should say
    replicas: int


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
    since = parse_time(placement.get("lastMoveTime"))
    if since is None:
        created = [
            t
            for d in deployments
            if (t := parse_time(d.get("metadata", {}).get("creationTimestamp"))) is not None
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
    target: Sequence[str] | None = None,
) -> Evaluation:
    """Decide one model's regions from values alone (no I/O).

    `claims` are other models' GPUs promised by decisions whose pods have not
    bound yet; they count as taken. `target` is the fleet's joint choice for
    the model (`joint_plan`), which `decide` follows when every rule allows.
    """
    meta = owner.get("metadata") or {}
    replicas = replicas_to_run(plan.scaling, deployments)
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
        model, signals.readings, capacity, current, now, settings, regions=signals.table,
        target=target,
    )  # fmt: skip
    if replicas == 0 and not decision.feasible:
        # Nowhere has room for one: at zero replicas it still fits anywhere it may run.
        decision = decide(
            dataclasses.replace(model, replicas=0), signals.readings, capacity, current, now,
            settings, regions=signals.table,
        )  # fmt: skip
    previous = ((owner.get("status") or {}).get("placement") or {}).get("lastMoveTime")
    if decision.regions and (current is None or decision.move):
        last_move: str | None = rfc3339(now)
    else:
        last_move = str(previous) if previous else (rfc3339(current.since) if current else None)
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


@dataclass(frozen=True)
class FleetEntry:
    """One placed model of the fleet: what the joint plan reads of it, not its objects.

    Small on purpose: the joint plan holds one per model at once, and a
    whole owner with its Deployments is tens of KiB as Python objects (at
    5,000 models a carbon refresh held about 250 MiB of them). Make one with
    `fleet_entry`.
    """

    key: tuple[str, str, str]  # (kind, namespace, name)
    plan: ServerPlan
    replicas: int  # replicas it runs or is to run, at least 1
    current: CurrentPlacement | None  # where it is placed now


def fleet_entry(
    key: tuple[str, str, str],
    plan: ServerPlan,
    owner: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> FleetEntry:
    """The entry of one model from its owner and its Deployments, as `joint_plan` at `now` reads it."""
    return FleetEntry(
        key,
        plan,
        max(1, replicas_to_run(plan.scaling, deployments)),
        current_placement(owner, deployments, now),
    )


@dataclass(frozen=True)
class FleetPlan:
    """The joint plan by model key, and the capacity advice of the same optimisation."""

    targets: Mapping[tuple[str, str, str], tuple[str, ...]]
    advice: tuple[Advice, ...]
    moves: int


def _fleet_pod(pod: Mapping[str, Any], keys: set[tuple[str, str, str]]) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    owner = (
        str(labels.get(LABEL_OWNER_KIND, "")),
        str(meta.get("namespace", "")),
        str(labels.get(LABEL_OWNER_NAME, "")),
    )
    return owner in keys


def joint_plan(
    entries: Sequence[FleetEntry],
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    signals: Signals,
    settings: Settings,
    now: dt.datetime,
) -> FleetPlan:
    """Where the whole fleet should run now, and where one more GPU would save the most.

    `entries` are made at the same `now` (`fleet_entry`).

    The room is the cluster's as if none of the fleet's servers ran (their
    pods left out), so the plan may give one model's GPUs to another; each
    model's reconcile then follows its target through `decide`, which still
    checks every rule and moves make-before-break.
    """
    keys = {e.key for e in entries}
    others = [p for p in pods if not _fleet_pod(p, keys)]
    gpu_room = node_capacity(nodes, others)
    intensity = comparable_intensity(signals.readings)
    members: list[FleetModel] = []
    names: dict[str, tuple[str, str, str]] = {}
    for e in entries:
        model = PlacementInput(
            f"{e.key[1]}/{e.key[2]}", e.plan.placement, e.plan.resources, e.replicas
        )
        room = (
            gpu_room
            if e.plan.resources.gpus > 0
            else node_capacity(capacity_nodes(e.plan, nodes), others)
        )
        members.append(
            fleet_member(
                model,
                signals.readings,
                room,
                e.current,
                now,
                settings,
                regions=signals.table,
                watts=model_watts(model, settings.pue),
            )
        )
        names[model.name] = e.key
    if not intensity:
        return FleetPlan({}, (), 0)
    plan = assign(
        members, gpu_room, intensity,
        min_improvement_percent=settings.min_improvement_percent,
        min_gain_grams_per_hour=settings.min_move_gain_grams_per_hour,
        min_gain_percent_of_median=settings.min_move_gain_percent_of_median,
    )  # fmt: skip
    advice = capacity_advice(members, gpu_room, intensity)
    targets = {names[n]: t for n, t in plan.targets.items() if t and n in names}
    return FleetPlan(targets, advice, plan.moves)
