"""Where the whole fleet should run: one assignment of every model to regions, within GPU capacity.

Deciding one model at a time leaves carbon on the table once capacity in
clean regions binds: a model that holds clean GPUs keeps them against one
that would save more per GPU there, and nobody moves to make room. This
module decides for the fleet jointly: the same min-cost flow as the bound
(`optimum.fleet_optimum`), with two differences that make it a policy
rather than a bound:

- moving costs something. A region a model does not run in now carries the
  model's current emissions times the hysteresis share
  (`min_improvement_percent`), so a model moves only when the fleet gains
  at least that much from it, and models still within their dwell time
  (`movable=False`) keep their regions;
- models are whole. The flow's optimum splits at most a few models per GPU
  product (a transportation LP's vertex); those, and any model whose
  replicas do not fit node by node, are placed afterwards, most power per
  GPU first, in their cheapest region with room.

The result is a target per model. `decide` still checks it against every
hard policy (allowed, residency, room, ceiling) and falls back to its own
per-model choice when the target fails one, so the joint plan can steer
placement but never break a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from smallfleet.core.placement.optimum import Demand, Optimum, fleet_optimum
from smallfleet.core.placement.policies import NodeCapacity

# Where a model goes when the cluster cannot hold it; costly enough that the
# flow uses it only when nothing else fits.
_NOWHERE: Final = "\x00nowhere"  # one per copy of a spread model: "\x00nowhere0", ...
_NOWHERE_G_PER_KWH: Final = 1e7
# Rounds of single-copy improving moves after rounding; each round that
# improves nothing ends them, so this only bounds pathological inputs.
_IMPROVE_ROUNDS: Final = 8
_GAIN_EPS: Final = 1e-6  # grams per hour: smaller gains are float noise
# Rounds of solve-and-fix that turn the relaxed optimum into whole models;
# each leaves fewer split models (usually none after two).
_DIVES: Final = 3


@dataclass(frozen=True)
class FleetModel:
    """One model as the joint assignment sees it."""

    name: str
    gpus_per_replica: int  # 0 for CPU-only
    replicas: int
    product: str | None  # nvidia.com/gpu.product the replicas need (None: CPU-only)
    spread: int  # regions it runs in
    allowed: tuple[str, ...]  # regions every hard rule but room allows
    watts: float  # power in one region, PUE included
    current: tuple[str, ...] = ()  # regions it runs in now
    movable: bool = True  # False: dwell time or a stale signal holds the current regions
    penalty: tuple[tuple[str, float], ...] = ()  # latency penalty per region, g/kWh-equivalent

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    def penalty_for(self, region: str) -> float:
        return sum(p for r, p in self.penalty if r == region)


@dataclass(frozen=True)
class JointPlan:
    """Target regions per model (empty: no room anywhere, the model decides alone)."""

    targets: dict[str, tuple[str, ...]]
    moves: int  # models whose target differs from where they run
    grams_per_hour: float  # the targets' emissions at the intensities given
    shadow: dict[tuple[str, str], float] = field(default_factory=dict)  # of the relaxed optimum

    def target(self, name: str) -> tuple[str, ...] | None:
        return self.targets.get(name)


@dataclass
class _Room:
    """Free GPUs per node while the plan allocates whole replicas."""

    free: dict[str, int]
    where: dict[str, tuple[str, str | None]]  # node -> (region, product)

    @classmethod
    def of(cls, capacity: Sequence[NodeCapacity]) -> _Room:
        gpu = [n for n in capacity if not n.cpu_only]
        return cls(
            {n.name: n.free_gpus for n in gpu},
            {n.name: (n.region, (n.gpu_product or "").lower() or None) for n in gpu},
        )

    def take(self, m: FleetModel, region: str) -> list[str] | None:
        """Allocate the model's replicas in one region, node by node in name order; all or none.

        Returns the node of each replica (empty for a CPU model), None when they do not fit.
        """
        if m.gpus_per_replica == 0:
            return []
        want = (m.product or "").lower() or None
        nodes = sorted(
            n
            for n, (r, p) in self.where.items()
            if r == region and (want is None or p == want) and self.free[n] >= m.gpus_per_replica
        )
        got: list[str] = []
        for n in nodes:
            while len(got) < m.replicas and self.free[n] >= m.gpus_per_replica:
                self.free[n] -= m.gpus_per_replica
                got.append(n)
        if len(got) < m.replicas:
            self.release(m, got)
            return None
        return got

    def release(self, m: FleetModel, nodes: Sequence[str]) -> None:
        for n in nodes:
            self.free[n] += m.gpus_per_replica

    def total(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for n, (r, p) in self.where.items():
            if p is not None:
                out[(r, p)] = out.get((r, p), 0) + self.free[n]
        return out


@dataclass(frozen=True)
class Hurdle:
    """What a move must save, per hour, before the plan makes it."""

    share: float  # of the model's current emissions (min_improvement_percent / 100)
    grams_per_hour: float  # and at least this much, whatever the model's size


def _cost(m: FleetModel, region: str, intensity: Mapping[str, float], hurdle: Hurdle) -> float:
    """Grams per hour of the model in `region`, plus the move's hurdle if it does not run there."""
    kw = m.watts / 1000.0
    cost = kw * (intensity[region] + m.penalty_for(region))
    if m.current and region not in m.current:
        now = [intensity[r] for r in m.current if r in intensity]
        if now:
            cost += kw * hurdle.share * sum(now) / len(now) + hurdle.grams_per_hour
    return cost


def typical_grams_per_hour(models: Sequence[FleetModel], intensity: Mapping[str, float]) -> float:
    """The median of the placed models' emissions where they run now (0 when none is placed).

    The median, not the mean: one large model must not raise every small
    model's hurdle out of reach.
    """
    now = sorted(
        m.watts / 1000.0 * sum(intensity[r] for r in m.current)
        for m in models
        if m.current and all(r in intensity for r in m.current)
    )
    if not now:
        return 0.0
    mid = len(now) // 2
    return now[mid] if len(now) % 2 else (now[mid - 1] + now[mid]) / 2.0


def assign(
    models: Sequence[FleetModel],
    capacity: Sequence[NodeCapacity],
    intensity: Mapping[str, float],
    *,
    min_improvement_percent: float,
    min_gain_grams_per_hour: float = 0.0,
    min_gain_percent_of_median: float = 0.0,
) -> JointPlan:
    """One target per model for the whole fleet. Pure and deterministic.

    A move must save `min_improvement_percent` of the model's own emissions
    and at least the larger of `min_gain_grams_per_hour` and
    `min_gain_percent_of_median` of the fleet's median model's emissions now
    (`typical_grams_per_hour`). The second is what keeps small models from
    being shuffled into every hole a bigger move leaves, and it scales with
    the fleet: a fleet of 30 W models gets the same plan, move for move, as
    the same fleet at 300 W, where a fixed number of grams would pin the
    small fleet and free the large one.

    `capacity` is the cluster's GPU room as if none of `models` ran (their
    own pods left out), so the plan may hand any model's GPUs to another.
    `intensity` holds the signal per region (g/kWh, one comparable kind);
    a model is only placed in regions that have one.
    """
    floor = max(
        0.0,
        min_gain_grams_per_hour,
        min_gain_percent_of_median / 100.0 * typical_grams_per_hour(models, intensity),
    )
    hurdle = Hurdle(max(0.0, min_improvement_percent) / 100.0, floor)
    room = _Room.of(capacity)
    known = {r for r, _ in room.where.values() if r in intensity}
    targets: dict[str, tuple[str, ...]] = {}
    ordered = sorted(models, key=lambda m: m.name)

    def usable(m: FleetModel) -> tuple[str, ...]:
        # CPU models take no GPU room: the caller's `allowed` already says where they fit.
        if m.gpus_per_replica == 0:
            return tuple(r for r in m.allowed if r in intensity)
        return tuple(r for r in m.allowed if r in known)

    # Models that may not move keep their regions, if those still take them.
    alloc: dict[tuple[str, str], list[str]] = {}  # (model, region) -> node of each replica
    free: list[FleetModel] = []
    for m in ordered:
        regions = usable(m)
        if not m.movable and m.current and set(m.current) <= set(regions):
            held = [(r, got) for r in m.current if (got := room.take(m, r)) is not None]
            if len(held) == len(m.current):
                targets[m.name] = tuple(m.current)
                alloc.update(((m.name, r), got) for r, got in held)
                continue
            for _, got in held:
                room.release(m, got)
        free.append(m)

    def per_gpu(m: FleetModel) -> float:
        return m.watts / max(1, m.gpus)

    movable_now = [m for m in ordered if m.name not in targets]

    # Round the relaxed optimum to whole models in a few dives: solve, keep the
    # models the flow placed whole, put each split model (most power per GPU
    # first) whole in its largest share, and solve again for the rest.
    relaxed: Optimum | None = None
    for dive in range(_DIVES):
        if not free:
            break
        solved = _relax(free, usable, room.total(), intensity, hurdle, shadow=dive == 0)
        relaxed = relaxed or solved
        shares: dict[str, list[tuple[float, str]]] = {}
        for (name, r), share in solved.placement.items():
            if not r.startswith(_NOWHERE):
                shares.setdefault(name, []).append((share, r))
        # Split models first: whole in their largest shares, they displace a
        # few whole ones, which the next dive places in the room left.
        rest: list[FleetModel] = []
        whole_first: list[tuple[FleetModel, list[str]]] = []
        for m in sorted(free, key=lambda m: (-per_gpu(m), m.name)):
            want = min(m.spread, len(usable(m)))
            ranked = sorted(
                shares.get(m.name, []),
                key=lambda x: (-x[0], _cost(m, x[1], intensity, hurdle), x[1]),
            )
            whole = [r for share, r in ranked if share >= 1.0 - 1e-9]
            if not want or not ranked:
                rest.append(m)
            elif len(whole) == want:
                whole_first.append((m, whole))
            elif not _place(room, alloc, targets, m, [r for _, r in ranked[:want]]):
                rest.append(m)
        for m, whole in whole_first:
            if not _place(room, alloc, targets, m, whole):
                rest.append(m)
        if len(rest) == len(free):
            break
        free = sorted(rest, key=lambda m: m.name)
    # Whatever is left, each in its cheapest regions with room.
    for m in sorted(free, key=lambda m: (-per_gpu(m), m.name)):
        options = sorted(usable(m), key=lambda r: (_cost(m, r, intensity, hurdle), r))
        chosen: list[str] = []
        for r in options:
            if len(chosen) == m.spread:
                break
            got = room.take(m, r)
            if got is not None:
                chosen.append(r)
                alloc[(m.name, r)] = got
        targets[m.name] = tuple(chosen)
        if len(chosen) < min(m.spread, len(options)):
            _make_room(room, alloc, targets, m, options, movable_now, usable, intensity, hurdle)
    movers = [m for m in ordered if m.movable or not m.current or m.name not in targets]
    # Rounding leaves holes in clean regions (a split model did not fit the
    # rest of its room): move single copies into cheaper room while any
    # move pays, so each hole is filled and the room it frees is filled in turn.
    for _ in range(_IMPROVE_ROUNDS):
        better = False
        for m in sorted(movers, key=lambda m: (-per_gpu(m), m.name)):
            for r in targets.get(m.name, ()):
                now_cost = _cost(m, r, intensity, hurdle)
                for r2 in sorted(usable(m), key=lambda x: (_cost(m, x, intensity, hurdle), x)):
                    if r2 in targets[m.name]:
                        continue
                    if _cost(m, r2, intensity, hurdle) >= now_cost - _GAIN_EPS:
                        break
                    got = room.take(m, r2)
                    if got is None:
                        continue
                    room.release(m, alloc.pop((m.name, r)))
                    alloc[(m.name, r2)] = got
                    targets[m.name] = tuple(r2 if x == r else x for x in targets[m.name])
                    better = True
                    break
        if not better:
            break

    grams = 0.0
    moves = 0
    for m in ordered:
        t = targets.get(m.name, ())
        grams += sum(m.watts / 1000.0 * intensity[r] for r in t)
        if m.current and t and set(t) != set(m.current):
            moves += 1
    shadow = {
        k: v
        for k, v in (relaxed.shadow if relaxed else {}).items()
        if not k[0].startswith(_NOWHERE)
    }
    return JointPlan(targets, moves, grams, shadow)


def _place(
    room: _Room,
    alloc: dict[tuple[str, str], list[str]],
    targets: dict[str, tuple[str, ...]],
    m: FleetModel,
    regions: Sequence[str],
) -> bool:
    """Take room for the model in every one of `regions`, or in none."""
    taken = [(r, got) for r in regions if (got := room.take(m, r)) is not None]
    if len(taken) < len(regions):
        for _, got in taken:
            room.release(m, got)
        return False
    targets[m.name] = tuple(regions)
    alloc.update(((m.name, r), got) for r, got in taken)
    return True


def _relax(
    models: Sequence[FleetModel],
    usable: Callable[[FleetModel], tuple[str, ...]],
    cap: dict[tuple[str, str], int],
    intensity: Mapping[str, float],
    hurdle: Hurdle,
    *,
    shadow: bool,
) -> Optimum:
    """The fleet optimum of `models` in the room left, moves costed, models divisible."""
    demands: list[Demand] = []
    max_spread = max((m.spread for m in models), default=1)
    for m in models:
        regions = usable(m)
        extra = tuple(
            (r, _cost(m, r, intensity, hurdle) - m.watts / 1000.0 * intensity[r]) for r in regions
        )
        demands.append(
            Demand(
                name=m.name,
                gpus=m.gpus,
                product=((m.product or "").lower() or None) if m.gpus else None,
                regions=min(m.spread, max(1, len(regions))),
                allowed=regions + (overflow(m.spread) if m.gpus else ()),
                watts=m.watts,
                extra=extra,
            )
        )
    cap = dict(cap)
    for d in demands:
        if d.product:
            for r in overflow(d.regions):
                cap[(r, d.product)] = cap.get((r, d.product), 0) + d.gpus
    scored = {**intensity, **dict.fromkeys(overflow(max_spread), _NOWHERE_G_PER_KWH)}
    return fleet_optimum(
        [d for d in demands if d.gpus > 0 or len(d.allowed) >= d.regions],
        cap,
        scored,
        shadow=shadow,
    )


def _make_room(
    room: _Room,
    alloc: dict[tuple[str, str], list[str]],
    targets: dict[str, tuple[str, ...]],
    m: FleetModel,
    options: Sequence[str],
    others: Sequence[FleetModel],
    usable: Callable[[FleetModel], tuple[str, ...]],
    intensity: Mapping[str, float],
    hurdle: Hurdle,
) -> None:
    """Place a model that found no room by moving one other model out of its way.

    Rounding can fill the only region a residency-bound model may use with
    models that could have gone elsewhere; one eviction (the other model to
    its cheapest other region with room) undoes that.
    """
    for r in options:
        if r in targets.get(m.name, ()):
            continue
        for o in sorted(others, key=lambda o: (o.watts / max(1, o.gpus), o.name)):
            if o.name == m.name or r not in targets.get(o.name, ()) or o.product != m.product:
                continue
            room.release(o, alloc.pop((o.name, r)))
            mine = room.take(m, r)
            if mine is not None:
                for r2 in sorted(usable(o), key=lambda x: (_cost(o, x, intensity, hurdle), x)):
                    if r2 in targets[o.name]:
                        continue
                    theirs = room.take(o, r2)
                    if theirs is not None:
                        alloc[(o.name, r2)] = theirs
                        targets[o.name] = tuple(r2 if x == r else x for x in targets[o.name])
                        alloc[(m.name, r)] = mine
                        targets[m.name] = (*targets.get(m.name, ()), r)
                        if len(targets[m.name]) >= m.spread:
                            return
                        break
                else:
                    room.release(m, mine)
                    alloc[(o.name, r)] = room.take(o, r) or []
                    continue
                break
            alloc[(o.name, r)] = room.take(o, r) or []


def overflow(spread: int) -> tuple[str, ...]:
    """Stand-in regions for copies of a model the cluster cannot hold (one per copy)."""
    return tuple(f"{_NOWHERE}{k}" for k in range(max(1, spread)))
