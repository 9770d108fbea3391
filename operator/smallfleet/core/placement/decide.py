"""The placement decision: which region(s) a model runs in, and whether to move now.

Feasible regions are those that pass every hard policy (allowed, residency,
GPU room, intensity ceiling). Among them the cleanest wins, scored as the
grid's intensity plus the spec's latency penalty, ties broken by name so the
same inputs always give the same answer. Moving costs a cold start and a
second copy of the workload for a while, so an existing placement moves only
for a real improvement (`min_improvement_percent`) after a minimum dwell
time, and never on a stale or fallback signal: then the current placement is
held and `CarbonSignalStale` says why.

How the runtime calls it, per model on each carbon refresh and spec change:

    table = with_zone_overrides(default_region_table(), configmap_data)   # once per refresh
    signals = readings_by_region(provider.fetch(table.regions()))         # smallfleet.providers
    capacity = node_capacity(nodes, pods)
    model = PlacementInput("ns/name", spec.placement, spec.resources, replicas)
    current = CurrentPlacement(regions_now, last_move_time, held_replicas) or None
    decision = decide(model, signals, capacity, current, now, settings, regions=table)
    step = plan_move(ready_by_region, decision.regions, required_ready=min_replicas)
    apply step.keep + step.create; delete step.delete; record
    decision.placed_condition(), decision.signal_condition(),
    status.placement = decision.placement_status(replicas_by_region, last_move_time),
    status.carbon = decision.carbon_status(now, resources, replicas_by_region, pue=settings.pue).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from smallfleet.core import conditions as c
from smallfleet.core.placement.energy import estimate
from smallfleet.core.placement.policies import (
    REASON_NOT_ALLOWED,
    REASON_RESIDENCY,
    CurrentPlacement,
    NodeCapacity,
    PlacementInput,
    PolicyContext,
    evaluate,
    latency_penalty,
)
from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading, EmissionsScope, SignalKind
from smallfleet.core.spec import Resources
from smallfleet.settings import Settings

_MAX_REGIONS: Final = 32  # CRD maxItems of status.placement.regions
_MAX_EXCLUDED: Final = 64
_MAX_MESSAGE: Final = 1024
# Preference among signal groups when two cover equally many regions.
_KIND_ORDER: Final[dict[str, int]] = {"average": 0, "marginal": 1, "index": 2}
_SCOPE_ORDER: Final[dict[str, int]] = {"lifecycle": 0, "operational": 1}


@dataclass(frozen=True)
class Exclusion:
    region: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.region}: {self.reason} ({self.message})"


@dataclass(frozen=True)
class PlacementDecision:
    regions: tuple[
        str, ...
    ]  # where the model should run; on NoFeasibleRegion, what may keep serving
    feasible: bool
    move: bool  # regions differ from the current placement: a make-before-break move is due
    reason: str  # conditions.REASON_PLACED | REASON_MOVING | REASON_NO_FEASIBLE_REGION
    message: str
    excluded: tuple[Exclusion, ...] = ()
    readings: tuple[tuple[str, CarbonReading], ...] = ()  # region -> reading used, chosen regions
    scores: tuple[tuple[str, float], ...] = ()  # ranked feasible regions, cleanest first
    stale: bool = False
    stale_message: str = ""
    held: bool = (
        False  # a cleaner region exists but hysteresis, dwell or staleness held the current one
    )
    improvement_percent: float | None = None  # of the best placement over the current one

    def reading(self, region: str) -> CarbonReading | None:
        return dict(self.readings).get(region)

    def placed_condition(self) -> c.Condition:
        status: c.Status = "True" if self.feasible else "False"
        return c.Condition(c.PLACED, status, self.reason, self.message[:_MAX_MESSAGE])

    def signal_condition(self) -> c.Condition:
        if self.stale:
            return c.Condition(
                c.CARBON_SIGNAL_STALE, "True", c.REASON_SIGNAL_STALE, self.stale_message
            )
        return c.Condition(
            c.CARBON_SIGNAL_STALE, "False", c.REASON_SIGNAL_FRESH, "carbon signals are fresh"
        )

    def placement_status(
        self, replicas: Mapping[str, int], last_move_time: str | None = None
    ) -> dict[str, Any]:
        """`status.placement` as the CRD defines it: chosen regions, exclusions, last move."""
        regions: list[dict[str, Any]] = []
        for region in self.regions:
            entry: dict[str, Any] = {"region": region, "replicas": int(replicas.get(region, 0))}
            r = self.reading(region)
            if r is not None and r.intensity is not None:
                entry["intensity"] = round(r.intensity, 1)
            regions.append(entry)
        out: dict[str, Any] = {
            "regions": regions[:_MAX_REGIONS],
            "excluded": [
                {"region": e.region, "reason": e.reason, "message": e.message[:_MAX_MESSAGE]}
                for e in self.excluded[:_MAX_EXCLUDED]
            ],
        }
        if last_move_time:
            out["lastMoveTime"] = last_move_time
        return out

    def carbon_status(
        self,
        now: datetime,
        resources: Resources,
        replicas: Mapping[str, int],
        *,
        pue: float,
        utilisation: float | None = None,
    ) -> dict[str, Any]:
        """`status.carbon`: the serving regions' signal and the estimated power and emissions.

        Intensity is replica-weighted across regions; age, stale and
        observedAt describe the oldest signal used.
        """
        watts = 0.0
        grams = 0.0
        known = True
        weighted = 0.0
        weight = 0
        used: list[CarbonReading] = []
        for region in self.regions:
            n = int(replicas.get(region, 0))
            r = self.reading(region)
            intensity = r.intensity if r is not None and r.usable else None
            e = estimate(resources, n, intensity, pue=pue, utilisation=utilisation)
            watts += e.watts
            if e.grams_per_hour is None:
                known = known and n == 0
            else:
                grams += e.grams_per_hour
            if r is not None and intensity is not None:
                used.append(r)
                weighted += intensity * n
                weight += n
        out: dict[str, Any] = {"energyWatts": round(watts, 1), "stale": self.stale}
        if used:
            oldest = max(used, key=lambda r: r.age(now))
            out.update(
                provider=",".join(sorted({r.provider for r in used})),
                signalKind=oldest.kind,
                observedAt=oldest.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                intensity=round(weighted / weight if weight else used[0].intensity or 0.0, 1),
            )
            if known:
                out["gramsCO2ePerHour"] = round(grams, 2)
        return out


def _group(
    readings: Mapping[str, CarbonReading],
) -> tuple[SignalKind, EmissionsScope] | None:
    counts = Counter(r.comparable_key for r in readings.values() if r.usable)
    if not counts:
        return None
    return min(
        counts,
        key=lambda k: (-counts[k], _KIND_ORDER[k[0]], _SCOPE_ORDER[k[1]]),
    )


def _degraded(reading: CarbonReading, now: datetime, settings: Settings) -> bool:
    if reading.is_stale(now, settings.carbon_max_age_seconds):
        return True
    # A static annual average standing in for a live provider is a fallback.
    return reading.provider == "static" and settings.carbon_provider != "static"


def decide(
    model: PlacementInput,
    signals: Mapping[str, CarbonReading],
    capacity: Sequence[NodeCapacity],
    current: CurrentPlacement | None,
    now: datetime,
    settings: Settings,
    *,
    regions: RegionTable,
    target: Sequence[str] | None = None,
) -> PlacementDecision:
    """Decide where `model` runs. Pure; `regions` is the region table (zones, jurisdictions).

    `target` is the fleet's joint choice for this model (`joint.assign`,
    hysteresis and dwell already applied there). It wins when every hard
    policy accepts it; while its room is still held by models that have not
    moved out yet, the current placement is kept; otherwise the model
    decides alone, as without a target.
    """
    p = model.placement
    spread = max(1, p.spread)
    ctx = PolicyContext(regions, capacity, signals, current, now)
    universe = sorted(
        set(p.regions) | {n.region for n in capacity} | set(current.regions if current else ())
    )

    excluded: list[Exclusion] = []
    feasible: list[str] = []
    for region in universe:
        result = evaluate(model, region, ctx)
        if result.ok:
            feasible.append(region)
        else:
            excluded.append(Exclusion(region, result.reason, result.message))

    if not feasible:
        hard = {e.region for e in excluded if e.reason in (REASON_NOT_ALLOWED, REASON_RESIDENCY)}
        serving = tuple(r for r in (current.regions if current else ()) if r not in hard)
        where = "; ".join(str(e) for e in excluded) or "the cluster has no nodes"
        return PlacementDecision(
            regions=serving,
            feasible=False,
            move=False,
            reason=c.REASON_NO_FEASIBLE_REGION,
            message=f"no feasible region for {model.name}: {where}",
            excluded=tuple(excluded),
        )

    usable = {r: signals[r] for r in feasible if r in signals and signals[r].usable}
    group = _group(usable)
    notes: list[str] = []
    scores: dict[str, float] = {}
    for region, reading in usable.items():
        if reading.comparable_key != group:
            notes.append(
                f"{region}: {reading.kind}/{reading.scope} signal not ranked against {group[0] if group else ''} signals"
            )
            continue
        assert reading.intensity is not None
        scores[region] = reading.intensity + latency_penalty(model, region)

    def rank_key(region: str) -> tuple[int, float, str]:
        s = scores.get(region)
        return (0, s, region) if s is not None else (1, 0.0, region)

    pinned_order = {r: i for i, r in enumerate(p.regions)}

    def pinned_key(region: str) -> tuple[int, float, str]:
        return (pinned_order.get(region, len(pinned_order)), 0.0, region)

    order_key = pinned_key if p.policy == "pinned" else rank_key
    ranked = sorted(feasible, key=order_key)
    best = ranked[:spread]
    if len(feasible) < spread:
        notes.append(f"only {len(feasible)} of {spread} requested regions are feasible")

    stale_regions = sorted(
        r
        for r in set(best) | set(current.regions if current else ())
        if r in signals and r in feasible and _degraded(signals[r], now, settings)
    )
    missing = [r for r in best if r not in scores]
    stale = bool(stale_regions)
    stale_message = (
        "stale or fallback carbon signal for "
        + ", ".join(
            f"{r} ({signals[r].provider}, {int(signals[r].age(now).total_seconds())}s old)"
            for r in stale_regions
        )
        if stale
        else ""
    )

    chosen = best
    held = False
    improvement: float | None = None
    why = ""
    cur_all = [r for r in (current.regions if current else ()) if r in feasible]
    current_whole = (
        current is not None
        and bool(current.regions)
        and len(cur_all) == len(current.regions) == min(spread, len(feasible))
    )
    joint = tuple(dict.fromkeys(target or ()))
    follow = bool(joint) and p.policy != "pinned" and not stale
    if follow and all(r in feasible for r in joint) and len(joint) == min(spread, len(feasible)):
        chosen = list(joint)
        if current is not None and set(joint) != set(current.regions):
            cur_scores = [scores.get(r) for r in current.regions]
            new_scores = [scores.get(r) for r in joint]
            if all(x is not None for x in cur_scores + new_scores):
                cur_total = sum(x for x in cur_scores if x is not None)
                new_total = sum(x for x in new_scores if x is not None)
                if cur_total > 0:
                    improvement = (cur_total - new_total) / cur_total * 100.0
            why = "the fleet's joint placement"
    elif follow and current_whole:
        assert current is not None
        chosen, held = cur_all, set(joint) != set(cur_all)
        if held:
            waiting = ", ".join(r for r in joint if r not in feasible)
            why = (
                f"the fleet's joint placement is {', '.join(joint)}; waiting for room in {waiting}"
            )
    elif current is not None and current.regions:
        cur_ok = [r for r in current.regions if r in feasible]
        if set(cur_ok) == set(best):
            chosen = cur_ok
        elif len(cur_ok) == min(spread, len(feasible)) and len(cur_ok) == len(current.regions):
            # Every current region is still feasible: any change is optional.
            min_impr = (
                p.min_improvement_percent
                if p.min_improvement_percent is not None
                else settings.min_improvement_percent
            )
            min_dwell = (
                p.min_dwell_seconds
                if p.min_dwell_seconds is not None
                else settings.min_dwell_seconds
            )
            dwelt = (now - current.since).total_seconds()
            cur_scores = [scores.get(r) for r in cur_ok]
            best_scores = [scores.get(r) for r in best]
            if p.policy == "pinned":
                chosen, held, why = cur_ok, False, "pinned"
            elif stale:
                chosen, held, why = cur_ok, True, "holding the current placement: " + stale_message
            elif any(s is None for s in cur_scores) or any(s is None for s in best_scores):
                chosen, held, why = cur_ok, True, "holding: no comparable signal for every region"
            else:
                cur_total = sum(s for s in cur_scores if s is not None)
                best_total = sum(s for s in best_scores if s is not None)
                improvement = (cur_total - best_total) / cur_total * 100.0 if cur_total > 0 else 0.0
                if improvement < min_impr:
                    chosen, held = cur_ok, True
                    why = f"{', '.join(best)} is {improvement:.1f}% cleaner, below the {min_impr:g}% threshold"
                elif dwelt < min_dwell:
                    chosen, held = cur_ok, True
                    why = (
                        f"{', '.join(best)} is {improvement:.1f}% cleaner, but the model has been in "
                        f"{', '.join(cur_ok)} for {int(dwelt)}s of the {min_dwell}s minimum dwell"
                    )
        else:
            # A current region became infeasible or the spread changed: repair now,
            # keeping the feasible current regions that still rank within the spread.
            keep = sorted(cur_ok, key=order_key)[:spread]
            fill = [r for r in ranked if r not in keep][: max(0, spread - len(keep))]
            chosen = keep + fill
            why = "repairing placement: " + (
                ", ".join(str(e) for e in excluded if e.region in current.regions)
                or "spread changed"
            )

    chosen_t = tuple(chosen)
    move = current is not None and set(chosen_t) != set(current.regions)
    parts = [f"placed in {', '.join(chosen_t)}"]
    for r in chosen_t:
        used = signals.get(r)
        if used is not None and used.usable and used.intensity is not None:
            parts.append(f"{r} {used.intensity:.0f} g/kWh {used.kind} from {used.provider}")
    if move and current is not None:
        parts[0] = f"moving from {', '.join(current.regions)} to {', '.join(chosen_t)}"
        if improvement is not None:
            parts.append(f"{improvement:.1f}% cleaner")
    if why:
        parts.append(why)
    if missing and p.policy != "pinned":
        parts.append(f"no comparable signal for {', '.join(missing)}")
    parts.extend(notes)
    return PlacementDecision(
        regions=chosen_t,
        feasible=True,
        move=move,
        reason=c.REASON_MOVING if move else c.REASON_PLACED,
        message="; ".join(parts),
        excluded=tuple(excluded),
        readings=tuple((r, signals[r]) for r in chosen_t if r in signals),
        scores=tuple((r, scores[r]) for r in ranked if r in scores),
        stale=stale,
        stale_message=stale_message,
        held=held,
        improvement_percent=improvement,
    )
