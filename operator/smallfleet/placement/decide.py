"""The placement decision: which region(s) a model runs in, and whether to move now.

Feasible regions are those that pass every hard policy (allowed, residency,
GPU room, intensity ceiling). Among them the cleanest wins, scored as the
grid's intensity plus the spec's latency penalty, ties broken by name so the
same inputs always give the same answer. Moving costs a cold start and a
second copy of the workload for a while, so an existing placement moves only
for a real improvement (`min_improvement_percent`) after a minimum dwell
time, and never on a stale or fallback signal: then the current placement is
held and `CarbonSignalStale` says why.

How the runtime calls it, once per model per carbon refresh and on spec change:

    decision = decide(model, signals, capacity, current, now, settings, regions=table)
    status["placement"] = decision.to_status(now)
    conditions: decision.placed_condition(), decision.signal_condition()
    then `plan_move(ready_by_region, decision.regions)` says which Deployments to
    apply and which old ones may go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from smallfleet import conditions as c
from smallfleet.placement.policies import (
    CurrentPlacement,
    NodeCapacity,
    PlacementInput,
    PolicyContext,
    evaluate,
    latency_penalty,
)
from smallfleet.placement.regions import RegionTable
from smallfleet.placement.signals import CarbonReading, EmissionsScope, SignalKind
from smallfleet.settings import Settings

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
        return c.Condition(c.PLACED, status, self.reason, self.message)

    def signal_condition(self) -> c.Condition:
        if self.stale:
            return c.Condition(
                c.CARBON_SIGNAL_STALE, "True", c.REASON_SIGNAL_STALE, self.stale_message
            )
        return c.Condition(
            c.CARBON_SIGNAL_STALE, "False", c.REASON_SIGNAL_FRESH, "carbon signals are fresh"
        )

    def to_status(self, now: datetime) -> dict[str, Any]:
        """The `status.placement` block: regions with intensity, source and age."""
        out: list[dict[str, Any]] = []
        for region in self.regions:
            r = self.reading(region)
            entry: dict[str, Any] = {"region": region}
            if r is not None and r.intensity is not None:
                entry.update(
                    zone=r.zone,
                    intensity=round(r.intensity, 1),
                    signal=r.kind,
                    source=r.provider,
                    ageSeconds=int(r.age(now).total_seconds()),
                )
            out.append(entry)
        return {"regions": out, "moving": self.move, "stale": self.stale}


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
) -> PlacementDecision:
    """Decide where `model` runs. Pure; `regions` is the region table (zones, jurisdictions)."""
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
        hard = {e.region for e in excluded if e.reason in ("NotAllowed", "ResidencyMismatch")}
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
    if current is not None and current.regions:
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
