"""The fleet's carbon optimum within GPU capacity: a transportation LP solved as a min-cost flow.

Placing models one at a time is not optimal once models differ in size and
power: a model that holds clean GPUs keeps them against one that would save
more per GPU there. The fleet's optimum answers three questions with one
solver, all in pure code:

- the hindsight bound the carbon bench judges every policy against
  (`fleet_optimum`, models divisible, moves free: never above any real
  placement);
- where the operator's placer should put the whole fleet now
  (`smallfleet.core.placement.joint`, which adds move costs and rounds to
  whole models);
- where one more GPU would save the most (`shadow`: the LP's shadow price
  of each region's GPU capacity per product), the capacity advice.

With `y = gpus * x` (GPUs of a model held in a region, `x` the share of the
model there) the LP is exactly a capacitated transportation problem per GPU
product, i.e. a min-cost flow: source -> model (supply `spread * gpus`) ->
region (arc capacity `gpus`, so no region holds more than the whole model,
and a spread model needs `spread` regions) -> sink (the region's GPUs).
Successive shortest paths solve it exactly; no solver dependency is needed.

The shadow price of a region's capacity is minus the cost of the cheapest
residual path from the sink back to that region (the cycle one more GPU
there opens). It is exact for one whole GPU because residual capacities are
integral.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

INF: Final = float("inf")
EPS: Final = 1e-9  # reduced costs this close to zero are zero (float noise, not a real gain)


@dataclass(frozen=True)
class Demand:
    """One model as the optimisation sees it: what it needs in each region it runs in."""

    name: str
    gpus: int  # GPUs the model holds in one region (per replica x replicas); 0 for CPU-only
    product: str | None  # GPU product those GPUs must be; None for CPU-only
    regions: int  # distinct regions it runs in (its spread)
    allowed: tuple[str, ...]  # regions it may run in (residency, allowed list, ceiling)
    watts: float  # power drawn in one region, PUE included
    # Extra cost per region in grams over the period (a move's cost, a latency
    # penalty); the optimum's `grams` leaves it out.
    extra: tuple[tuple[str, float], ...] = ()

    def extra_for(self, region: str) -> float:
        return sum(g for r, g in self.extra if r == region)


@dataclass(frozen=True)
class Optimum:
    """The optimum of one period (an hour, or a forecast window as mean intensities)."""

    grams: float  # emissions of the optimal (fractional) placement over one hour
    # (region, product) -> grams per hour that one more GPU there would save.
    shadow: dict[tuple[str, str], float]
    # (model name, region) -> share of the model placed there (0 < share <= 1).
    placement: dict[tuple[str, str], float]


class Flow:
    """A min-cost flow network with integral capacities and float costs."""

    def __init__(self, n: int) -> None:
        self.to: list[int] = []
        self.cap: list[int] = []
        self.cost: list[float] = []
        self.adj: list[list[int]] = [[] for _ in range(n)]

    def edge(self, u: int, v: int, cap: int, cost: float) -> int:
        """Add u->v and its residual twin; the twin of edge e is e ^ 1."""
        e = len(self.to)
        self.to += [v, u]
        self.cap += [cap, 0]
        self.cost += [cost, -cost]
        self.adj[u].append(e)
        self.adj[v].append(e + 1)
        return e

    def run(self, s: int, t: int, need: int) -> float:
        """Send `need` units s->t at least cost.

        Successive shortest paths with Dijkstra on reduced costs: every cost
        starts non-negative, so zero potentials are valid. Each search stops
        when it reaches t; nodes it did not settle get t's distance, which
        keeps every residual reduced cost non-negative (the usual truncation).
        """
        n = len(self.adj)
        pot = [0.0] * n
        sent = 0
        total = 0.0
        to, cap, cost, adj = self.to, self.cap, self.cost, self.adj
        while sent < need:
            dist = [INF] * n
            via = [-1] * n
            done = [False] * n
            dist[s] = 0.0
            heap = [(0.0, s)]
            while heap:
                d, u = heapq.heappop(heap)
                if done[u]:
                    continue
                done[u] = True
                if u == t:
                    break
                pu = pot[u]
                for e in adj[u]:
                    if cap[e] <= 0:
                        continue
                    v = to[e]
                    if done[v]:
                        continue
                    rc = cost[e] + pu - pot[v]
                    nd = d + (rc if rc > 0.0 else 0.0)
                    if nd < dist[v] - EPS:
                        dist[v] = nd
                        via[v] = e
                        heapq.heappush(heap, (nd, v))
            if not done[t]:
                raise ValueError(f"infeasible: only {sent} of {need} GPUs fit")
            dt = dist[t]
            for v in range(n):
                pot[v] += dist[v] if done[v] else dt
            push = need - sent
            v = t
            while v != s:
                e = via[v]
                push = min(push, cap[e])
                v = to[e ^ 1]
            v = t
            while v != s:
                e = via[v]
                cap[e] -= push
                cap[e ^ 1] += push
                total += push * cost[e]
                v = to[e ^ 1]
            sent += push
        return total

    def distances_from(self, s: int) -> list[float]:
        """Cheapest residual path costs from s (Bellman-Ford queue; at an optimum the
        residual graph has no negative cycle)."""
        n = len(self.adj)
        dist = [INF] * n
        dist[s] = 0.0
        queue = deque([s])
        queued = [False] * n
        queued[s] = True
        pops = 0
        limit = n * len(self.to) + 1
        while queue:
            pops += 1
            if pops > limit:
                raise RuntimeError("negative residual cycle: the flow is not optimal")
            u = queue.popleft()
            queued[u] = False
            for e in self.adj[u]:
                if self.cap[e] <= 0:
                    continue
                v = self.to[e]
                nd = dist[u] + self.cost[e]
                if nd < dist[v] - EPS:
                    dist[v] = nd
                    if not queued[v]:
                        queued[v] = True
                        queue.append(v)
        return dist


def fleet_optimum(
    demands: Iterable[Demand],
    capacity: Mapping[tuple[str, str], int],
    intensity: Mapping[str, float],
    *,
    shadow: bool = True,
) -> Optimum:
    """Least emissions (grams over one hour) of placing every demand within capacity.

    `capacity` maps (region, product) to GPUs the fleet may use; `intensity`
    maps region to g/kWh and names the regions that exist. A demand's
    `extra` costs steer the placement but are not counted in `grams`.
    Raises ValueError when the fleet cannot fit (an optimum of an infeasible
    fleet would compare with nothing). `shadow=False` skips the prices.
    """
    demands = list(demands)
    grams = 0.0
    placement: dict[tuple[str, str], float] = {}
    prices: dict[tuple[str, str], float] = dict.fromkeys(capacity, 0.0)
    # CPU-only models take no GPU capacity: their cheapest allowed regions.
    for d in demands:
        if d.gpus > 0:
            continue
        options = sorted(
            (d.watts / 1000.0 * intensity[r] + d.extra_for(r), r)
            for r in d.allowed
            if r in intensity
        )
        if len(options) < d.regions:
            raise ValueError(f"infeasible: {d.name} needs {d.regions} regions")
        for _, r in options[: d.regions]:
            grams += d.watts / 1000.0 * intensity[r]
            placement[(d.name, r)] = 1.0
    products = sorted({d.product for d in demands if d.gpus > 0 and d.product})
    for product in products:
        models = [d for d in demands if d.gpus > 0 and d.product == product]
        regions = sorted(r for (r, p) in capacity if p == product and r in intensity)
        index = {r: 1 + len(models) + k for k, r in enumerate(regions)}
        s, t = 0, 1 + len(models) + len(regions)
        net = Flow(t + 1)
        arcs: list[tuple[int, Demand, str]] = []
        need = 0
        for k, d in enumerate(models):
            net.edge(s, 1 + k, d.regions * d.gpus, 0.0)
            need += d.regions * d.gpus
            per_gpu = d.watts / 1000.0 / d.gpus  # kW per GPU of the model
            for r in d.allowed:
                if r in index:
                    cost = per_gpu * intensity[r] + d.extra_for(r) / d.gpus
                    e = net.edge(1 + k, index[r], d.gpus, cost)
                    arcs.append((e, d, r))
        for r in regions:
            net.edge(index[r], t, max(0, capacity[(r, product)]), 0.0)
        try:
            net.run(s, t, need)
        except ValueError as err:
            raise ValueError(f"{product}: {err}") from None
        for e, d, r in arcs:
            held = net.cap[e ^ 1]
            if held:
                placement[(d.name, r)] = held / d.gpus
                grams += held * d.watts / 1000.0 / d.gpus * intensity[r]
        if shadow:
            back = net.distances_from(t)
            for r in regions:
                # One more GPU at r opens the arc r->t again: the cycle t ~> r -> t.
                # Where r still has free GPUs the cycle costs >= 0 and saves nothing.
                prices[(r, product)] = max(0.0, -back[index[r]])
    return Optimum(grams, prices, placement)


def unlimited_optimum(demands: Iterable[Demand], intensity: Mapping[str, float]) -> float:
    """Grams per hour with room for everyone everywhere: each model in its cleanest allowed regions.

    The distance between this and `fleet_optimum` is what clean capacity, not
    the policy, costs.
    """
    grams = 0.0
    for d in demands:
        options = sorted(intensity[r] for r in d.allowed if r in intensity)
        grams += sum(d.watts / 1000.0 * g for g in options[: d.regions])
    return grams
