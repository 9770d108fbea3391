"""The fleet's inputs to the joint assignment and capacity advice, built from what `decide` sees.

`joint.assign` and `optimum.fleet_optimum` take plain numbers (regions a
model may use, its power, where it runs, whether it may move). This module
derives them from the same values and the same hard policies as `decide`,
so the joint plan never proposes a region that `decide` would refuse for a
rule (only room is left to the optimisation), and the advice is computed
from the same programme the placer uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from smallfleet.core.placement.decide import _degraded, _group
from smallfleet.core.placement.energy import cpu_cores, power_watts
from smallfleet.core.placement.joint import FleetModel, overflow
from smallfleet.core.placement.optimum import Demand, fleet_optimum
from smallfleet.core.placement.policies import (
    CurrentPlacement,
    NodeCapacity,
    PlacementInput,
    PolicyContext,
    allowed_region,
    gpu_capacity,
    intensity_ceiling,
    residency,
)
from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.settings import Settings

HOURS_PER_WEEK: Final = 7 * 24


def comparable_intensity(signals: Mapping[str, CarbonReading]) -> dict[str, float]:
    """Region -> g/kWh of the usable readings of the one kind `decide` ranks by."""
    usable = {r: x for r, x in signals.items() if x.usable and x.intensity is not None}
    group = _group(usable)
    return {
        r: float(x.intensity)
        for r, x in usable.items()
        if x.comparable_key == group and x.intensity is not None and x.kind != "index"
    }


def fleet_member(
    model: PlacementInput,
    signals: Mapping[str, CarbonReading],
    capacity: Sequence[NodeCapacity],
    current: CurrentPlacement | None,
    now: datetime,
    settings: Settings,
    *,
    regions: RegionTable,
    watts: float,
) -> FleetModel:
    """One model as the joint assignment sees it: the regions every rule but room allows.

    A model within its dwell time, on a stale signal, or pinned by policy
    may not move: the plan keeps it where it runs.
    """
    p = model.placement
    ctx = PolicyContext(regions, capacity, signals, current, now)
    universe = sorted(set(p.regions) | {n.region for n in capacity})
    rules = (allowed_region, residency, intensity_ceiling) + (
        (gpu_capacity,) if model.resources.gpus == 0 else ()
    )
    allowed = tuple(r for r in universe if all(rule(model, r, ctx).ok for rule in rules))
    movable = True
    if current is not None and current.regions:
        dwell = (
            p.min_dwell_seconds if p.min_dwell_seconds is not None else settings.min_dwell_seconds
        )
        movable = (now - current.since).total_seconds() >= dwell and not any(
            _degraded(signals[r], now, settings)
            for r in (*current.regions, *allowed)
            if r in signals
        )
    if p.policy == "pinned":
        movable = False
        if current is None or not current.regions:
            allowed = tuple(r for r in p.regions if r in allowed)[: max(1, p.spread)]
    return FleetModel(
        name=model.name,
        gpus_per_replica=model.resources.gpus,
        replicas=model.replicas,
        product=model.resources.gpu_product if model.resources.gpus else None,
        spread=max(1, p.spread),
        allowed=allowed,
        watts=watts,
        current=tuple(current.regions) if current else (),
        movable=movable,
        penalty=p.latency_penalty,
    )


def model_watts(model: PlacementInput, pue: float, utilisation: float | None = None) -> float:
    """Power of the model in one region (all its replicas), PUE included."""
    r = model.resources
    return power_watts(
        gpus_per_replica=r.gpus,
        replicas=model.replicas,
        gpu_product=r.gpu_product,
        utilisation=utilisation,
        cpu_cores=cpu_cores(r.cpu),
        pue=pue,
    )


@dataclass(frozen=True)
class Advice:
    """Grams CO2e per week one more GPU of `gpu_product` in `region` would save."""

    region: str
    gpu_product: str
    grams_per_week: float


def capacity_advice(
    models: Sequence[FleetModel],
    capacity: Sequence[NodeCapacity],
    intensity: Mapping[str, float],
) -> tuple[Advice, ...]:
    """Shadow prices of GPU capacity for the fleet's optimum at these intensities, per week.

    `capacity` is the room as if none of `models` ran (as for `joint.assign`);
    `intensity` is what the signal says now, or a forecast's mean. One figure
    per (region, product) the cluster has nodes of; 0 where room is spare or
    the grid is no cleaner than the models' alternatives. Highest first.
    """
    names: dict[str, str] = {}
    room: dict[tuple[str, str], int] = {}
    for n in capacity:
        if n.cpu_only or not n.gpu_product or n.region not in intensity:
            continue
        key = (n.region, n.gpu_product.lower())
        names.setdefault(n.gpu_product.lower(), n.gpu_product)
        room[key] = room.get(key, 0) + n.free_gpus
    # A model that fits nowhere is valued as if it ran in the dirtiest region
    # known: the advice stays in grams of carbon, not in a penalty's units.
    worst = max(intensity.values(), default=0.0)
    demands: list[Demand] = []
    for m in models:
        product = (m.product or "").lower() or None
        if not m.gpus or product is None:
            continue
        allowed = tuple(r for r in m.allowed if (r, product) in room)
        demands.append(
            Demand(
                m.name, m.gpus, product, max(1, m.spread), (*allowed, *overflow(m.spread)), m.watts
            )
        )
        for r in overflow(m.spread):
            room[(r, product)] = room.get((r, product), 0) + m.gpus
    if not room:
        return ()
    spread = max((m.spread for m in models), default=1)
    optimum = fleet_optimum(demands, room, {**intensity, **dict.fromkeys(overflow(spread), worst)})
    out = [
        Advice(region, names.get(product, product), grams * HOURS_PER_WEEK)
        for (region, product), grams in optimum.shadow.items()
        if region not in overflow(spread)
    ]
    return tuple(sorted(out, key=lambda a: (-a.grams_per_week, a.region, a.gpu_product)))
