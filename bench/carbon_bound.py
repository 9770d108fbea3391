"""The hindsight bound of carbon placement: a per-hour transportation LP, in pure Python.

A placement policy can only be judged against what was physically possible:
greedy placement is not a bound once models differ in size (a big model can
block the clean room that two small ones would have used better). For one
hour, the bound places every model in the regions it is allowed in, within
each region's GPU capacity per product, minimising emissions, with moves free
and models divisible (the LP relaxation, so it is never above any real
placement).

With `y = gpus * x` (GPUs of the model held in a region, `x` the share of the
model there) the LP is exactly a capacitated transportation problem per GPU
product, i.e. a min-cost flow: source -> model (supply `spread * gpus`) ->
region (arc capacity `gpus`, so no region holds more than the whole model,
and a spread model needs `spread` regions) -> sink (the region's free GPUs).
Successive shortest paths solve it exactly; no solver dependency is needed
(scipy is not in the project's environment).

The same flow gives capacity advice: the emissions one more GPU of a product
in a region would save is minus the cost of the cheapest residual path from
the sink back to that region (the cycle the extra GPU opens). It is the
LP's shadow price of that capacity constraint, taken on the side of adding
capacity, and it is exact for a whole GPU because residual capacities are
integral.

This module is pure (values in, values out) so the unit tests can check it on
hand-solved cases; `bench/carbon_placement.py` feeds it the fleet and trace.
It has no `main()`, so `bench/run.py` does not run it as a benchmark.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

INF: Final = float("inf")
EPS: Final = 1e-9  # reduced costs this close to zero are zero (float noise, not a real gain)


@dataclass(frozen=True)
class Demand:
    """One model as the bound sees it: what it needs in each region it runs in."""

    name: str
    gpus: int  # GPUs the model holds in one region (per replica x replicas); 0 for CPU-only
    product: str | None  # GPU product those GPUs must be; None for CPU-only
    regions: int  # distinct regions it runs in (its spread)
    allowed: tuple[str, ...]  # regions it may run in (residency, allowed list)
    watts: float  # power drawn in one region, PUE included


@dataclass(frozen=True)
class HourBound:
    """The optimum of one hour."""

    grams: float  # emissions of the optimal (fractional) placement over the hour
    # (region, product) -> grams this hour that one more GPU there would save.
    shadow: dict[tuple[str, str], float]
    # (model name, region) -> share of the model placed there (0 < share <= 1).
    placement: dict[tuple[str, str], float]


class _Flow:
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
        """Send `need` units s->t at least cost (successive shortest paths, Dijkstra
        on reduced costs: every cost starts non-negative, so zero potentials are valid)."""
        n = len(self.adj)
        pot = [0.0] * n
        sent = 0
        total = 0.0
        while sent < need:
            dist = [INF] * n
            via = [-1] * n
            dist[s] = 0.0
            heap = [(0.0, s)]
            while heap:
                d, u = heapq.heappop(heap)
                if d > dist[u]:
                    continue
                for e in self.adj[u]:
                    if self.cap[e] <= 0:
                        continue
                    v = self.to[e]
                    nd = d + max(0.0, self.cost[e] + pot[u] - pot[v])
                    if nd < dist[v] - EPS:
                        dist[v] = nd
                        via[v] = e
                        heapq.heappush(heap, (nd, v))
            if dist[t] == INF:
                raise ValueError(f"infeasible: only {sent} of {need} GPUs fit")
            for v in range(n):
                if dist[v] < INF:
                    pot[v] += dist[v]
            push = need - sent
            v = t
            while v != s:
                e = via[v]
                push = min(push, self.cap[e])
                v = self.to[e ^ 1]
            v = t
            while v != s:
                e = via[v]
                self.cap[e] -= push
                self.cap[e ^ 1] += push
                total += push * self.cost[e]
                v = self.to[e ^ 1]
            sent += push
        return total

    def distances_from(self, s: int) -> list[float]:
        """Cheapest residual path costs from s (Bellman-Ford queue; at an optimum the
        residual graph has no negative cycle)."""
        n = len(self.adj)
        dist = [INF] * n
        dist[s] = 0.0
        queue = [s]
        queued = [False] * n
        queued[s] = True
        rounds = 0
        while queue:
            rounds += 1
            if rounds > n * len(self.to) + 1:
                raise RuntimeError("negative residual cycle: the flow is not optimal")
            u = queue.pop(0)
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


def hour_bound(
    demands: Iterable[Demand],
    capacity: Mapping[tuple[str, str], int],
    intensity: Mapping[str, float],
) -> HourBound:
    """Least emissions (grams over one hour) of placing every demand within capacity.

    `capacity` maps (region, product) to GPUs; `intensity` maps region to g/kWh
    and names the regions that exist. Raises ValueError when the fleet cannot
    fit (a bound of an infeasible fleet would compare with nothing).
    """
    demands = list(demands)
    grams = 0.0
    placement: dict[tuple[str, str], float] = {}
    shadow: dict[tuple[str, str], float] = {key: 0.0 for key in capacity}
    # CPU-only models take no GPU capacity: their cleanest allowed regions.
    for d in demands:
        if d.gpus > 0:
            continue
        options = sorted((intensity[r], r) for r in d.allowed if r in intensity)
        if len(options) < d.regions:
            raise ValueError(f"infeasible: {d.name} needs {d.regions} regions")
        for g, r in options[: d.regions]:
            grams += d.watts / 1000.0 * g
            placement[(d.name, r)] = 1.0
    products = sorted({d.product for d in demands if d.gpus > 0 and d.product})
    for product in products:
        models = [d for d in demands if d.gpus > 0 and d.product == product]
        regions = sorted(r for (r, p), c in capacity.items() if p == product and r in intensity)
        index = {r: 1 + len(models) + k for k, r in enumerate(regions)}
        s, t = 0, 1 + len(models) + len(regions)
        net = _Flow(t + 1)
        arcs: list[tuple[int, Demand, str]] = []
        need = 0
        for k, d in enumerate(models):
            net.edge(s, 1 + k, d.regions * d.gpus, 0.0)
            need += d.regions * d.gpus
            per_gpu = d.watts / 1000.0 / d.gpus  # kW per GPU of the model
            for r in d.allowed:
                if r in index:
                    e = net.edge(1 + k, index[r], d.gpus, per_gpu * intensity[r])
                    arcs.append((e, d, r))
        for r in regions:
            net.edge(index[r], t, capacity[(r, product)], 0.0)
        try:
            grams += net.run(s, t, need)
        except ValueError as err:
            raise ValueError(f"{product}: {err}") from None
        for e, d, r in arcs:
            held = net.cap[e ^ 1]
            if held:
                placement[(d.name, r)] = held / d.gpus
        back = net.distances_from(t)
        for r in regions:
            # One more GPU at r opens the arc r->t again: the cycle t ~> r -> t.
            # Where r still has free GPUs the cycle costs >= 0 and saves nothing.
            shadow[(r, product)] = max(0.0, -back[index[r]])
    return HourBound(grams, shadow, placement)
