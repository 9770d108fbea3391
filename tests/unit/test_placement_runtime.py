"""The operator's placement glue from values alone: current placement, evaluation, status."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core.placement import CarbonReading
from smallfleet.core.placement.evaluate import (
    Signals,
    current_placement,
    evaluate,
    only_full,
    placement_status,
    ready_by_region,
)
from smallfleet.core.render import ServerPlan, plan_for_model
from smallfleet.core.spec import Placement, parse_small_model
from smallfleet.providers import default_region_table
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)
SETTINGS = Settings(carbon_provider="electricitymaps", min_dwell_seconds=600)
REGIONS = ("eu-north-1", "eu-west-1", "us-east-1")


def plan(example: str = "minilm-embedder.yaml", **placement: Any) -> ServerPlan:
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / example).read_text()) if d]
    p = plan_for_model(parse_small_model(doc), Settings())
    return dataclasses.replace(p, placement=Placement(**placement))


def node(name: str, region: str, product: str | None, gpus: int) -> dict[str, Any]:
    labels = {"topology.kubernetes.io/region": region}
    if product:
        labels["nvidia.com/gpu.product"] = product
    alloc = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": alloc}}


NODES = [
    node("a10g-north", "eu-north-1", "NVIDIA-A10G", 4),
    node("a10g-west", "eu-west-1", "NVIDIA-A10G", 4),
    node("cpu-west", "eu-west-1", None, 0),
    node("a10g-us", "us-east-1", "NVIDIA-A10G", 4),
]


def reading(region: str, value: float, *, at: dt.datetime = NOW) -> CarbonReading:
    return CarbonReading(
        zone=default_region_table().zone(region) or region,
        region=region,
        start=at.replace(minute=0),
        duration=dt.timedelta(hours=1),
        intensity=value,
        kind="average",
        scope="lifecycle",
        forecast=False,
        provider="electricitymaps",
        fetched_at=at,
    )


def signals(**by_region: float) -> Signals:
    readings = {r.replace("_", "-"): reading(r.replace("_", "-"), v) for r, v in by_region.items()}
    return Signals(readings, default_region_table(), NOW)


def deployment(region: str, ready: int, replicas: int = 1, created: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"m-{region}",
        "labels": {"serving.smallfleet.io/region": region},
    }
    if created:
        meta["creationTimestamp"] = created
    return {"metadata": meta, "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def owner(regions: list[str] | None = None, last_move: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if regions is not None:
        status["placement"] = {"regions": [{"region": r} for r in regions]}
        if last_move:
            status["placement"]["lastMoveTime"] = last_move
    return {"kind": "SmallModel", "metadata": {"namespace": "ns", "name": "m"}, "status": status}


@pytest.mark.parametrize(
    ("status_regions", "deployments", "want_regions", "want_since"),
    [
        (None, [], None, None),
        (["eu-west-1"], [], ("eu-west-1",), NOW),
        # Deployments made before placement ran (or by the default chooser): where it runs.
        (None, [deployment("eu-north-1", 1, created="2026-11-26T06:00:00Z")], ("eu-north-1",),
         dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.UTC)),
        # The last decision wins over a move in progress.
        (["eu-west-1"], [deployment("eu-north-1", 1), deployment("eu-west-1", 0)],
         ("eu-west-1",), NOW),
    ],
)  # fmt: skip
def test_current_placement(
    status_regions: list[str] | None,
    deployments: list[dict[str, Any]],
    want_regions: tuple[str, ...] | None,
    want_since: dt.datetime | None,
) -> None:
    got = current_placement(owner(status_regions), deployments, NOW)
    if want_regions is None:
        assert got is None
        return
    assert got is not None
    assert (got.regions, got.since) == (want_regions, want_since)
    assert dict(got.held_replicas) == {r: n for r, n in ready_by_region(deployments).items() if n}


def test_last_move_time_from_status_keeps_the_dwell() -> None:
    got = current_placement(owner(["eu-west-1"], "2026-11-26T06:55:00Z"), [], NOW)
    assert got is not None and got.since == dt.datetime(2026, 11, 26, 6, 55, tzinfo=dt.UTC)


def test_first_placement_is_the_cleanest_and_starts_the_clock() -> None:
    ev = evaluate(
        plan(), owner(), [], NODES, [], signals(eu_north_1=40, eu_west_1=300, us_east_1=400),
        SETTINGS, NOW,
    )  # fmt: skip
    assert ev.decision.regions == ("eu-north-1",)
    assert ev.last_move_time == "2026-11-26T07:00:00Z"
    assert ev.replicas == 1


def test_a_cpu_model_only_counts_nodes_without_gpus() -> None:
    ev = evaluate(
        plan("cpu-classifier.yaml"), owner(), [], NODES, [],
        signals(eu_north_1=40, eu_west_1=300, us_east_1=400), SETTINGS, NOW,
    )  # fmt: skip
    assert ev.decision.regions == ("eu-west-1",)


@pytest.mark.parametrize(
    ("last_move", "north", "moves"),
    [
        ("2026-11-26T06:00:00Z", 500.0, True),  # dwelt an hour, 88% cleaner elsewhere
        ("2026-11-26T06:59:00Z", 500.0, False),  # within the 600-s dwell
        ("2026-11-26T06:00:00Z", 65.0, False),  # under the 15% threshold
    ],
)
def test_moves_only_past_dwell_and_threshold(last_move: str, north: float, moves: bool) -> None:
    ev = evaluate(
        plan(), owner(["eu-north-1"], last_move), [deployment("eu-north-1", 1)], NODES, [],
        signals(eu_north_1=north, eu_west_1=60, us_east_1=400), SETTINGS, NOW,
    )  # fmt: skip
    assert ev.decision.move is moves
    assert ev.decision.regions == (("eu-west-1",) if moves else ("eu-north-1",))
    assert ev.last_move_time == ("2026-11-26T07:00:00Z" if moves else last_move)


def test_status_of_a_placed_model_shows_a_number_of_grams() -> None:
    p = plan()
    deps = [deployment("eu-north-1", 1)]
    ev = evaluate(p, owner(), deps, NODES, [], signals(eu_north_1=40, eu_west_1=300), SETTINGS, NOW)
    derived = placement_status(ev, p, deps, SETTINGS, NOW, has_deployments=True)
    carbon = derived.fields["carbon"]
    assert carbon["intensity"] == 40.0 and carbon["gramsCO2ePerHour"] > 0
    assert derived.fields["placement"]["regions"] == [
        {"region": "eu-north-1", "replicas": 1, "intensity": 40.0}
    ]
    assert {c.type: c.status for c in derived.conditions} == {
        "Placed": "True",
        "CarbonSignalStale": "False",
    }


def full_node(node: str) -> dict[str, Any]:
    """A running pod that takes all four GPUs of `node`."""
    return {
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}],
        },
        "status": {"phase": "Running"},
    }


def keda_at_zero() -> ServerPlan:
    return dataclasses.replace(
        plan(), scaling=dataclasses.replace(plan().scaling, mode="keda", min_replicas=0)
    )


def test_no_feasible_region_with_nothing_running_stalls() -> None:
    p = plan(regions=("eu-north-1",), residency="eu")
    full = [full_node("a10g-north")]
    ev = evaluate(p, owner(), [], NODES, full, signals(eu_north_1=40), SETTINGS, NOW)
    assert not ev.decision.feasible and ev.decision.regions == ()
    derived = placement_status(ev, p, [], SETTINGS, NOW, has_deployments=False)
    by_type = {c.type: c for c in derived.conditions}
    assert by_type["Stalled"].status == "True"
    assert by_type["Stalled"].reason == "NoFeasibleRegion"
    assert "eu-north-1: NoCapacity" in by_type["Placed"].message


@settings(max_examples=60, deadline=None)
@given(
    values=st.tuples(*[st.floats(1, 1000) for _ in REGIONS]),
    residency=st.sampled_from([None, "eu", "us"]),
    current=st.sampled_from([None, *REGIONS]),
)
def test_property_never_outside_residency(
    values: tuple[float, ...], residency: str | None, current: str | None
) -> None:
    by_region = dict(zip(REGIONS, values, strict=True))
    sig = Signals({r: reading(r, v) for r, v in by_region.items()}, default_region_table(), NOW)
    deps = [deployment(current, 1)] if current else []
    o = owner([current] if current else None, "2026-11-26T06:00:00Z")
    ev = evaluate(plan(residency=residency), o, deps, NODES, [], sig, SETTINGS, NOW)
    table = default_region_table()
    for region in ev.decision.regions:
        assert residency is None or residency in table.jurisdictions(region)
    assert len(ev.decision.regions) <= 1


@pytest.mark.parametrize(
    ("placement", "product", "only_room_missing"),
    [
        ({}, "NVIDIA-B200", True),  # allowed everywhere, fits nowhere: the scheduler may say why
        ({"residency": "eu"}, "NVIDIA-B200", False),  # us-east-1 is excluded by a rule
        ({"regions": ("eu-north-1",)}, "NVIDIA-B200", False),
    ],
)
def test_only_full(placement: dict[str, Any], product: str, only_room_missing: bool) -> None:
    p = plan(**placement)
    p = dataclasses.replace(p, resources=dataclasses.replace(p.resources, gpu_product=product))
    ev = evaluate(p, owner(), [], NODES, [], signals(eu_north_1=40), SETTINGS, NOW)
    assert not ev.decision.feasible
    assert only_full(ev.decision) is only_room_missing


def test_a_model_scaled_to_zero_still_needs_room_for_one_replica() -> None:
    full_north = [full_node("a10g-north")]
    keda = keda_at_zero()
    ev = evaluate(
        keda, owner(), [], NODES, full_north, signals(eu_north_1=40, eu_west_1=300, us_east_1=400),
        SETTINGS, NOW,
    )  # fmt: skip
    assert ev.decision.regions == ("eu-west-1",)


def test_a_model_at_zero_is_placed_even_when_no_region_has_room_for_one() -> None:
    full = [full_node(n) for n in ("a10g-north", "a10g-west", "a10g-us")]
    keda = keda_at_zero()
    ev = evaluate(
        keda, owner(), [], NODES, full, signals(eu_north_1=40, eu_west_1=300, us_east_1=400),
        SETTINGS, NOW,
    )  # fmt: skip
    assert ev.decision.regions == ("eu-north-1",)
