"""The carbon bench's hindsight bound: hand-solved LPs, and never above a real placement.

The bound is the reference every placement policy is reported against, so a
wrong bound would misstate every policy's share of it.
"""

from __future__ import annotations

import itertools
import random

import pytest
from bench.carbon_bound import Demand, hour_bound

P = "GPU-P"
CLEAN, DIRTY = "clean", "dirty"
INTENSITY = {CLEAN: 100.0, DIRTY: 500.0}


def _gpu(name: str, gpus: int, watts: float, allowed: tuple[str, ...] = (CLEAN, DIRTY)) -> Demand:
    return Demand(name, gpus, P, 1, allowed, watts)


def test_sizes_differ_so_the_bound_splits_what_greedy_cannot() -> None:
    # Clean has 2 GPUs. Per GPU, b (1000 W) gains most, then a (500 W per GPU),
    # then c (200 W): the LP puts b and half of a in clean.
    # b 1 kW x 100 = 100; a 0.5 x 1 kW x 100 + 0.5 x 1 kW x 500 = 300; c 0.2 kW x 500 = 100.
    # Whole models only: b + c in clean gives 620, a in clean 700.
    demands = [_gpu("a", 2, 1000.0), _gpu("b", 1, 1000.0), _gpu("c", 1, 200.0)]
    out = hour_bound(demands, {(CLEAN, P): 2, (DIRTY, P): 4}, INTENSITY)
    assert out.grams == pytest.approx(500.0)
    assert out.placement[("b", CLEAN)] == pytest.approx(1.0)
    assert out.placement[("a", CLEAN)] == pytest.approx(0.5)
    assert out.placement[("a", DIRTY)] == pytest.approx(0.5)
    assert out.placement[("c", DIRTY)] == pytest.approx(1.0)
    # One more clean GPU moves a's other half: 0.5 kW x (500 - 100) g/kWh.
    assert out.shadow[(CLEAN, P)] == pytest.approx(200.0)
    # Dirty has room to spare: more of it saves nothing.
    assert out.shadow[(DIRTY, P)] == 0.0


def test_residency_and_spread_are_respected() -> None:
    # "home" may only run dirty; "both" must run in two regions, so one copy is
    # dirty whatever the capacity; "cpu" takes no GPU and runs clean.
    demands = [
        _gpu("home", 1, 1000.0, allowed=(DIRTY,)),
        Demand("both", 1, P, 2, (CLEAN, DIRTY), 1000.0),
        Demand("cpu", 0, None, 1, (CLEAN, DIRTY), 20.0),
    ]
    out = hour_bound(demands, {(CLEAN, P): 8, (DIRTY, P): 8}, INTENSITY)
    assert out.grams == pytest.approx(500.0 + 100.0 + 500.0 + 2.0)
    assert out.placement[("home", DIRTY)] == 1.0
    assert out.placement[("both", CLEAN)] == 1.0
    assert out.placement[("both", DIRTY)] == 1.0
    assert out.placement[("cpu", CLEAN)] == 1.0
    assert out.shadow == {(CLEAN, P): 0.0, (DIRTY, P): 0.0}


def test_shadow_price_chains_through_a_displaced_model() -> None:
    # x may only run clean, so it takes clean's one GPU; y then fills middle and
    # z goes dirty. One more clean GPU takes y out of middle, and the GPU it frees
    # there takes z out of dirty: the saving chains through a displaced model.
    intensity = {CLEAN: 100.0, "middle": 300.0, DIRTY: 500.0}
    demands = [
        _gpu("x", 1, 1000.0, allowed=(CLEAN,)),
        _gpu("y", 1, 1000.0, allowed=(CLEAN, "middle")),
        _gpu("z", 1, 1000.0, allowed=("middle", DIRTY)),
    ]
    cap = {(CLEAN, P): 1, ("middle", P): 1, (DIRTY, P): 1}
    out = hour_bound(demands, cap, intensity)
    assert out.grams == pytest.approx(100.0 + 300.0 + 500.0)
    assert out.shadow[(CLEAN, P)] == pytest.approx(200.0 + 200.0)
    assert out.shadow[("middle", P)] == pytest.approx(200.0)
    assert out.shadow[(DIRTY, P)] == 0.0


def test_infeasible_fleet_is_an_error_not_a_bound() -> None:
    with pytest.raises(ValueError, match="infeasible"):
        hour_bound([_gpu("a", 3, 100.0, allowed=(CLEAN,))], {(CLEAN, P): 2}, INTENSITY)


def _best_whole_placement(
    demands: list[Demand], cap: dict[tuple[str, str], int], intensity: dict[str, float]
) -> float:
    best = float("inf")
    for choice in itertools.product(*(d.allowed for d in demands)):
        used: dict[str, int] = {}
        for d, r in zip(demands, choice, strict=True):
            used[r] = used.get(r, 0) + d.gpus
        if all(used[r] <= cap[(r, P)] for r in used):
            best = min(
                best,
                sum(d.watts / 1000 * intensity[r] for d, r in zip(demands, choice, strict=True)),
            )
    return best


@pytest.mark.parametrize("seed", range(40))
def test_never_above_the_best_whole_model_placement(seed: int) -> None:
    rng = random.Random(seed)
    regions = ["r0", "r1", "r2"]
    intensity = {r: rng.uniform(20, 800) for r in regions}
    cap = {(r, P): rng.randint(1, 5) for r in regions}
    demands = [
        _gpu(f"m{i}", rng.randint(1, 3), rng.uniform(50, 2000), tuple(rng.sample(regions, 2)))
        for i in range(rng.randint(1, 5))
    ]
    best = _best_whole_placement(demands, cap, intensity)
    if best == float("inf"):
        return  # no whole placement to compare with (a split one may still fit)
    out = hour_bound(demands, cap, intensity)
    assert out.grams <= best + 1e-6
    # Each model is placed whole (shares sum to one) and within capacity.
    for d in demands:
        assert sum(v for (n, _), v in out.placement.items() if n == d.name) == pytest.approx(1.0)
    for r in regions:
        held = sum(d.gpus * out.placement.get((d.name, r), 0.0) for d in demands)
        assert held <= cap[(r, P)] + 1e-9
