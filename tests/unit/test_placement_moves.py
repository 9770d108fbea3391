"""Make-before-break move plans and energy estimates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core.placement import (
    cpu_cores,
    estimate,
    gpu_power,
    grams_per_hour,
    plan_move,
    power_watts,
)
from smallfleet.core.placement.energy import DEFAULT_GPU, DEFAULT_UTILISATION
from smallfleet.core.spec import Resources

MOVES = [
    # existing ready, target, required, keep, create, delete, waiting
    ("first placement", {}, ["a"], 1, (), ("a",), (), ()),
    ("steady", {"a": 2}, ["a"], 1, ("a",), (), (), ()),
    ("move starts", {"a": 2}, ["b"], 1, (), ("b",), (), ("a",)),
    ("new region not ready", {"a": 2, "b": 0}, ["b"], 1, ("b",), (), (), ("a",)),
    ("new region ready", {"a": 2, "b": 1}, ["b"], 1, ("b",), (), ("a",), ()),
    ("needs two ready", {"a": 2, "b": 1}, ["b"], 2, ("b",), (), (), ("a",)),
    ("spread shrink", {"a": 1, "b": 1}, ["a"], 1, ("a",), (), ("b",), ()),
    ("no feasible region", {"a": 1}, [], 1, (), (), (), ("a",)),
    ("one of two targets pending", {"a": 1, "b": 1}, ["b", "c"], 1, ("b",), ("c",), (), ("a",)),
]


@pytest.mark.parametrize(
    ("name", "existing", "target", "required", "keep", "create", "delete", "waiting"),
    MOVES,
    ids=[m[0] for m in MOVES],
)
def test_plan_move(
    name: str,
    existing: dict[str, int],
    target: list[str],
    required: int,
    keep: tuple[str, ...],
    create: tuple[str, ...],
    delete: tuple[str, ...],
    waiting: tuple[str, ...],
) -> None:
    p = plan_move(existing, target, required)
    assert (p.keep, p.create, p.delete, p.waiting) == (keep, create, delete, waiting)


def test_plan_complete_only_when_settled() -> None:
    assert plan_move({"a": 1}, ["a"]).complete
    assert not plan_move({"a": 1, "b": 1}, ["b"]).complete
    assert not plan_move({"a": 0}, ["a"]).complete


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcde"), st.integers(0, 3)),
    st.lists(st.sampled_from("abcde"), unique=True, max_size=3),
    st.integers(0, 3),
)
def test_property_ready_replicas_never_drop_to_zero(
    existing: dict[str, int], target: list[str], required: int
) -> None:
    p = plan_move(existing, target, required)
    remaining = {r: n for r, n in existing.items() if r not in p.delete}
    if sum(existing.values()) > 0:
        assert sum(remaining.values()) > 0
    assert not set(p.delete) & set(target)
    assert set(p.keep) | set(p.create) == set(target)


GPUS = [
    ("NVIDIA-H100-80GB-HBM3", 114.0, 690.0),
    ("NVIDIA-H100-PCIe", 60.0, 350.0),
    ("NVIDIA-A100-SXM4-80GB", 55.0, 400.0),
    ("Tesla-T4", 10.0, 70.0),
    ("NVIDIA-L4", 16.0, 72.0),
    ("NVIDIA-L40S", 35.0, 350.0),
    ("NVIDIA-A10G", 25.0, 150.0),
]


@pytest.mark.parametrize(("label", "idle", "peak"), GPUS)
def test_gpu_table_matches_node_labels(label: str, idle: float, peak: float) -> None:
    g = gpu_power(label)
    assert (g.idle_watts, g.max_watts) == (idle, peak)
    assert g.source


def test_unknown_gpu_uses_documented_default() -> None:
    assert gpu_power("Weird-9000") is DEFAULT_GPU
    assert gpu_power(None) is DEFAULT_GPU


def test_power_and_emissions() -> None:
    w = power_watts(
        gpus_per_replica=1,
        replicas=2,
        gpu_product="NVIDIA-H100-80GB-HBM3",
        utilisation=1.0,
        pue=1.0,
    )
    assert w == pytest.approx(1380.0)
    w0 = power_watts(
        gpus_per_replica=1,
        replicas=1,
        gpu_product="NVIDIA-H100-80GB-HBM3",
        utilisation=0.0,
        pue=1.5,
    )
    assert w0 == pytest.approx(171.0)
    default = power_watts(gpus_per_replica=1, replicas=1, gpu_product="Tesla-T4", pue=1.0)
    assert default == pytest.approx(10 + 60 * DEFAULT_UTILISATION)
    assert grams_per_hour(1000.0, 50.0) == pytest.approx(50.0)
    assert grams_per_hour(1000.0, None) is None
    assert grams_per_hour(1000.0, 0.0) is None
    cpu = power_watts(
        gpus_per_replica=0, replicas=2, cpu_cores=cpu_cores("500m"), utilisation=1.0, pue=1.0
    )
    assert cpu == pytest.approx(10.0)


@given(st.floats(-1, 2), st.integers(0, 8), st.integers(1, 4))
def test_property_power_is_bounded_by_idle_and_peak(u: float, replicas: int, gpus: int) -> None:
    g = gpu_power("NVIDIA-H100-80GB-HBM3")
    w = power_watts(
        gpus_per_replica=gpus, replicas=replicas, gpu_product="H100", utilisation=u, pue=1.0
    )
    assert g.idle_watts * gpus * replicas - 1e-9 <= w <= g.max_watts * gpus * replicas + 1e-9


def test_estimate_for_status() -> None:
    e = estimate(
        Resources(gpus=1, gpu_product="NVIDIA-H100-80GB-HBM3"), 2, 100.0, pue=1.0, utilisation=1.0
    )
    assert e.watts == pytest.approx(1380.0)
    assert e.grams_per_hour == pytest.approx(138.0)
    cpu = estimate(Resources(gpus=0, cpu="2"), 1, None, pue=1.2, utilisation=0.5)
    assert cpu.watts == pytest.approx(12.0) and cpu.grams_per_hour is None
