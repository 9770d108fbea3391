"""Placement policies and the decision: table-driven cases and hypothesis properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core import conditions as c
from smallfleet.core.placement import (
    CarbonReading,
    CurrentPlacement,
    NodeCapacity,
    PlacementInput,
    RegionInfo,
    RegionTable,
    decide,
    merge_zone_map,
    node_capacity,
    with_zone_overrides,
)
from smallfleet.core.placement.policies import replicas_that_fit
from smallfleet.core.spec import Placement, Resources
from smallfleet.providers.data import default_region_table
from smallfleet.settings import Settings

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
EU = ("eu", "eea")
TABLE = RegionTable(
    (
        RegionInfo("eu-north-1", "SE-SE3", EU),
        RegionInfo("eu-west-1", "IE", EU),
        RegionInfo("eu-west-2", "GB", ("uk",)),
        RegionInfo("us-east-1", "US-MIDA-PJM", ("us",)),
    )
)
SETTINGS = Settings(carbon_provider="electricitymaps")
H100 = "NVIDIA-H100-80GB-HBM3"


def reading(region: str, g: float | None, **kw: object) -> CarbonReading:
    base = CarbonReading(
        zone=TABLE.zone(region) or region,
        region=region,
        start=NOW - timedelta(minutes=30),
        duration=timedelta(hours=1),
        intensity=g,
        kind="average",
        scope="lifecycle",
        forecast=False,
        provider="electricitymaps",
        fetched_at=NOW - timedelta(minutes=1),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def nodes(free: dict[str, int], product: str = H100) -> list[NodeCapacity]:
    return [NodeCapacity(f"n-{r}", r, product, 8, 8 - n) for r, n in free.items()]


def model(**placement: object) -> PlacementInput:
    return PlacementInput("ns/m", Placement(**placement), Resources(gpus=1, gpu_product=H100))  # type: ignore[arg-type]


ALL_FREE = nodes({"eu-north-1": 4, "eu-west-1": 4, "eu-west-2": 4, "us-east-1": 4})
SIGNALS = {
    "eu-north-1": reading("eu-north-1", 40),
    "eu-west-1": reading("eu-west-1", 300),
    "eu-west-2": reading("eu-west-2", 200),
    "us-east-1": reading("us-east-1", 20),
}


CASES = [
    ("cleanest wins", model(), ALL_FREE, SIGNALS, ("us-east-1",)),
    ("residency eu", model(residency="eu"), ALL_FREE, SIGNALS, ("eu-north-1",)),
    ("residency uk", model(residency="uk"), ALL_FREE, SIGNALS, ("eu-west-2",)),
    ("allowed list", model(regions=("eu-west-1", "eu-west-2")), ALL_FREE, SIGNALS, ("eu-west-2",)),
    (
        "no capacity in cleanest",
        model(residency="eu"),
        nodes({"eu-north-1": 0, "eu-west-1": 4}),
        SIGNALS,
        ("eu-west-1",),
    ),
    ("spread two", model(spread=2), ALL_FREE, SIGNALS, ("us-east-1", "eu-north-1")),
    (
        "latency penalty",
        model(latency_penalty=(("us-east-1", 100.0),)),
        ALL_FREE,
        SIGNALS,
        ("eu-north-1",),
    ),
    ("ceiling", model(max_intensity=250.0, residency="eu"), ALL_FREE, SIGNALS, ("eu-north-1",)),
    (
        "pinned keeps spec order",
        model(policy="pinned", regions=("eu-west-1", "eu-north-1")),
        ALL_FREE,
        SIGNALS,
        ("eu-west-1",),
    ),
    (
        "marginal not ranked against average",
        model(),
        ALL_FREE,
        {**SIGNALS, "us-east-1": reading("us-east-1", 5, kind="marginal", scope="operational")},
        ("eu-north-1",),
    ),
    (
        "zero reading is missing",
        model(),
        ALL_FREE,
        {**SIGNALS, "us-east-1": reading("us-east-1", 0)},
        ("eu-north-1",),
    ),
]


@pytest.mark.parametrize(("name", "m", "cap", "sig", "want"), CASES, ids=[c[0] for c in CASES])
def test_decide_table(
    name: str,
    m: PlacementInput,
    cap: list[NodeCapacity],
    sig: dict[str, CarbonReading],
    want: tuple[str, ...],
) -> None:
    d = decide(m, sig, cap, None, NOW, SETTINGS, regions=TABLE)
    assert d.feasible, d.message
    assert d.regions == want, d.message
    assert not d.move
    assert d.placed_condition() == c.Condition(c.PLACED, "True", c.REASON_PLACED, d.message)


def test_exclusions_carry_reason_and_message() -> None:
    cap = [
        *nodes({"eu-north-1": 0, "eu-west-1": 4, "us-east-1": 4}),
        NodeCapacity("t4", "eu-west-2", "Tesla-T4", 4, 0),
    ]
    d = decide(
        model(residency="eu", max_intensity=250.0), SIGNALS, cap, None, NOW, SETTINGS, regions=TABLE
    )
    reasons = {e.region: e.reason for e in d.excluded}
    assert reasons == {
        "eu-north-1": "NoCapacity",
        "eu-west-1": "AboveMaxIntensity",
        "eu-west-2": "Residency",
        "us-east-1": "Residency",
    }
    assert not d.feasible
    assert d.reason == c.REASON_NO_FEASIBLE_REGION
    for region in reasons:
        assert region in d.message
    assert "0 of 1 replicas fit" in d.message
    assert d.placed_condition().status == "False"


def test_gpu_product_must_match() -> None:
    cap = [NodeCapacity("t4", "eu-north-1", "Tesla-T4", 4, 0)]
    d = decide(model(), SIGNALS, cap, None, NOW, SETTINGS, regions=TABLE)
    assert not d.feasible
    assert "NVIDIA-H100-80GB-HBM3" in d.message


def test_cpu_model_needs_only_nodes() -> None:
    m = PlacementInput("ns/cpu", Placement(), Resources(gpus=0))
    cap = [NodeCapacity("c", "eu-west-1", None, 0, 0, cpu_only=True)]
    assert decide(m, SIGNALS, cap, None, NOW, SETTINGS, regions=TABLE).regions == ("eu-west-1",)


def test_replicas_fit_per_node_not_pooled() -> None:
    # Two nodes with one free GPU each cannot hold a 2-GPU replica.
    cap = [NodeCapacity("a", "r", H100, 8, 7), NodeCapacity("b", "r", H100, 8, 7)]
    assert replicas_that_fit(Resources(gpus=2), "r", cap) == 0
    assert replicas_that_fit(Resources(gpus=1), "r", cap) == 2
    assert replicas_that_fit(Resources(gpus=2), "r", cap, held=1) == 1


def current(*regions: str, dwelt: float = 7200) -> CurrentPlacement:
    return CurrentPlacement(
        tuple(regions), NOW - timedelta(seconds=dwelt), tuple((r, 1) for r in regions)
    )


HYSTERESIS = [
    # (current intensity, best intensity, dwelt seconds, spec overrides, expect move)
    ("big gain, long dwell", 300, 40, 7200, {}, True),
    ("small gain", 100, 90, 7200, {}, False),
    ("big gain, short dwell", 300, 40, 60, {}, False),
    ("spec lowers dwell", 300, 40, 60, {"min_dwell_seconds": 30}, True),
    ("spec raises threshold", 300, 40, 7200, {"min_improvement_percent": 95.0}, False),
    ("spec lowers threshold", 100, 90, 7200, {"min_improvement_percent": 5.0}, True),
]


@pytest.mark.parametrize(
    ("name", "cur_g", "best_g", "dwelt", "over", "move"), HYSTERESIS, ids=[h[0] for h in HYSTERESIS]
)
def test_hysteresis_and_dwell(
    name: str, cur_g: float, best_g: float, dwelt: float, over: dict[str, object], move: bool
) -> None:
    sig = {"eu-west-1": reading("eu-west-1", cur_g), "eu-north-1": reading("eu-north-1", best_g)}
    m = model(residency="eu", **over)
    d = decide(m, sig, ALL_FREE, current("eu-west-1", dwelt=dwelt), NOW, SETTINGS, regions=TABLE)
    assert d.move is move, d.message
    assert d.regions == (("eu-north-1",) if move else ("eu-west-1",))
    assert d.held is not move
    assert d.reason == (c.REASON_MOVING if move else c.REASON_PLACED)
    assert d.improvement_percent == pytest.approx((cur_g - best_g) / cur_g * 100)


def test_stale_signal_holds_current_placement() -> None:
    old = reading(
        "eu-north-1", 40, fetched_at=NOW - timedelta(hours=3), start=NOW - timedelta(hours=4)
    )
    sig = {"eu-west-1": reading("eu-west-1", 300), "eu-north-1": old}
    d = decide(
        model(residency="eu"), sig, ALL_FREE, current("eu-west-1"), NOW, SETTINGS, regions=TABLE
    )
    assert d.regions == ("eu-west-1",) and not d.move and d.held
    assert d.stale
    cond = d.signal_condition()
    assert (cond.type, cond.status, cond.reason) == (
        c.CARBON_SIGNAL_STALE,
        "True",
        c.REASON_SIGNAL_STALE,
    )
    assert "eu-north-1" in cond.message


def test_static_fallback_counts_as_degraded_for_live_provider() -> None:
    sig = {
        "eu-west-1": reading("eu-west-1", 300),
        "eu-north-1": reading("eu-north-1", 40, provider="static"),
    }
    d = decide(
        model(residency="eu"), sig, ALL_FREE, current("eu-west-1"), NOW, SETTINGS, regions=TABLE
    )
    assert d.stale and not d.move
    static_settings = Settings(carbon_provider="static")
    d2 = decide(
        model(residency="eu"),
        sig,
        ALL_FREE,
        current("eu-west-1"),
        NOW,
        static_settings,
        regions=TABLE,
    )
    assert not d2.stale and d2.move


def test_new_model_is_placed_even_on_stale_signal() -> None:
    sig = {r: replace(s, stale=True) for r, s in SIGNALS.items()}
    d = decide(model(residency="eu"), sig, ALL_FREE, None, NOW, SETTINGS, regions=TABLE)
    assert d.regions == ("eu-north-1",) and d.stale and d.feasible


def test_infeasible_current_region_is_repaired_at_once() -> None:
    cap = nodes({"eu-north-1": 4, "eu-west-1": 4})
    m = model(regions=("eu-north-1",))  # eu-west-1 no longer allowed
    d = decide(m, SIGNALS, cap, current("eu-west-1", dwelt=1), NOW, SETTINGS, regions=TABLE)
    assert d.regions == ("eu-north-1",) and d.move
    assert "NotAllowed" in d.message


def test_no_feasible_region_keeps_serving_where_rules_allow() -> None:
    cap = nodes({"eu-west-1": 0})
    scaled = replace(model(residency="eu"), replicas=2)  # one runs, no room for the second
    d = decide(scaled, SIGNALS, cap, current("eu-west-1"), NOW, SETTINGS, regions=TABLE)
    assert not d.feasible and d.regions == ("eu-west-1",)
    assert "1 of 2 replicas fit" in d.message
    d2 = decide(
        model(residency="us"), SIGNALS, cap, current("eu-west-1"), NOW, SETTINGS, regions=TABLE
    )
    assert not d2.feasible and d2.regions == ()


def test_held_replicas_count_as_capacity_of_current_region() -> None:
    cap = nodes({"eu-west-1": 0, "eu-north-1": 0})
    d = decide(
        model(residency="eu"), SIGNALS, cap, current("eu-west-1"), NOW, SETTINGS, regions=TABLE
    )
    assert d.feasible and d.regions == ("eu-west-1",)


def test_status_blocks_follow_the_crd() -> None:
    cap = [*ALL_FREE, NodeCapacity("t4", "eu-west-2", "Tesla-T4", 4, 0)]
    d = decide(model(residency="eu", spread=2), SIGNALS, cap, None, NOW, SETTINGS, regions=TABLE)
    replicas = {"eu-north-1": 2, "eu-west-1": 1}
    assert d.placement_status(replicas, "2026-11-26T05:00:00Z") == {
        "regions": [
            {"region": "eu-north-1", "replicas": 2, "intensity": 40.0},
            {"region": "eu-west-1", "replicas": 1, "intensity": 300.0},
        ],
        "excluded": [
            {
                "region": "eu-west-2",
                "reason": "Residency",
                "message": "residency eu required, region is in uk",
            },
            {
                "region": "us-east-1",
                "reason": "Residency",
                "message": "residency eu required, region is in us",
            },
        ],
        "lastMoveTime": "2026-11-26T05:00:00Z",
    }
    res = Resources(gpus=1, gpu_product=H100)
    carbon = d.carbon_status(NOW, res, replicas, pue=1.0, utilisation=1.0)
    assert carbon == {
        "energyWatts": 2070.0,
        "stale": False,
        "provider": "electricitymaps",
        "signalKind": "average",
        "observedAt": "2026-11-26T05:30:00Z",
        "intensity": pytest.approx((40 * 2 + 300) / 3, abs=0.05),
        "gramsCO2ePerHour": pytest.approx(1.38 * 40 + 0.69 * 300),
    }


def test_node_capacity_from_objects() -> None:
    nodes = [
        {
            "metadata": {
                "name": "g1",
                "labels": {
                    "topology.kubernetes.io/region": "eu-west-1",
                    "nvidia.com/gpu.product": H100,
                },
            },
            "status": {"allocatable": {"nvidia.com/gpu": "8"}},
        },
        {
            "metadata": {"name": "c1", "labels": {"topology.kubernetes.io/region": "eu-west-1"}},
            "status": {"allocatable": {}},
        },
        {"metadata": {"name": "nolabel"}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}},
        {
            "metadata": {
                "name": "cordoned",
                "labels": {"topology.kubernetes.io/region": "eu-west-1"},
            },
            "spec": {"unschedulable": True},
        },
    ]
    gpu_pod = {
        "spec": {
            "nodeName": "g1",
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}],
        }
    }
    done = {**gpu_pod, "status": {"phase": "Succeeded"}}
    limits_only = {
        "spec": {"nodeName": "g1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}
    }
    assert node_capacity(nodes, [gpu_pod, done, limits_only]) == [
        NodeCapacity("c1", "eu-west-1", None, 0, 0, cpu_only=True),
        NodeCapacity("g1", "eu-west-1", H100, 8, 3),
    ]


def test_merge_zone_map_and_overrides() -> None:
    assert merge_zone_map({"a": "X", "b": "Y"}, {"b": "Z", "c": "W", " ": "Q", "d": ""}) == {
        "a": "X",
        "b": "Z",
        "c": "W",
    }
    t = with_zone_overrides(TABLE, {"eu-west-1": "GB", "lab-1": "FR"}, {"lab-1": ["eu"]})
    assert t.zone("eu-west-1") == "GB" and t.jurisdictions("eu-west-1") == EU
    assert t.jurisdictions("lab-1") == ("eu",)
    t2 = with_zone_overrides(TABLE, {"lab-2": "FR"})
    assert t2.jurisdictions("lab-2") == ()


def test_default_table_covers_local_cluster_regions() -> None:
    t = default_region_table()
    assert t.zone("eu-north-1") == "SE-SE3"
    assert t.zone("eu-west-1") == "IE"
    assert t.zone("us-east-1") == "US-MIDA-PJM"
    assert "eu" in t.jurisdictions("eu-north-1") and t.jurisdictions("us-east-1") == ("us",)
    clouds = {e.cloud for e in t.entries}
    assert clouds == {"aws", "gcp", "azure"}


# --- properties -------------------------------------------------------------

REGIONS = ("r-eu-a", "r-eu-b", "r-us-a", "r-uk-a", "r-ap-a")
PROP_TABLE = RegionTable(
    (
        RegionInfo("r-eu-a", "Z1", EU),
        RegionInfo("r-eu-b", "Z2", EU),
        RegionInfo("r-us-a", "Z3", ("us",)),
        RegionInfo("r-uk-a", "Z4", ("uk",)),
        RegionInfo("r-ap-a", "Z5", ("apac",)),
    )
)

products = st.sampled_from([H100, "Tesla-T4"])
node_st = st.builds(
    lambda i, r, p, alloc, used: NodeCapacity(f"n{i}", r, p, alloc, min(alloc, used)),
    st.integers(0, 10_000),
    st.sampled_from(REGIONS),
    products,
    st.integers(0, 8),
    st.integers(0, 8),
)
signal_st = st.dictionaries(
    st.sampled_from(REGIONS),
    st.one_of(st.none(), st.floats(0, 900, allow_nan=False)),
)
model_st = st.builds(
    lambda residency, allowed, spread, gpus, product, replicas: PlacementInput(
        "ns/p",
        Placement(residency=residency, regions=tuple(allowed), spread=spread),
        Resources(gpus=gpus, gpu_product=product),
        replicas,
    ),
    st.one_of(st.none(), st.sampled_from(["eu", "us", "uk", "apac", "eea"])),
    st.lists(st.sampled_from(REGIONS), unique=True, max_size=3),
    st.integers(1, 3),
    st.integers(0, 2),
    st.one_of(st.none(), products),
    st.integers(1, 3),
)
current_st = st.one_of(
    st.none(),
    st.builds(
        lambda regs, dwelt: CurrentPlacement(
            tuple(regs), NOW - timedelta(seconds=dwelt), tuple((r, 1) for r in regs)
        ),
        st.lists(st.sampled_from(REGIONS), unique=True, min_size=1, max_size=2),
        st.integers(0, 10_000),
    ),
)


def _signals(raw: dict[str, float | None]) -> dict[str, CarbonReading]:
    return {r: reading(r, g, zone=PROP_TABLE.zone(r) or r) for r, g in raw.items()}


@settings(max_examples=300, deadline=None)
@given(model_st, st.lists(node_st, max_size=12), signal_st, current_st)
def test_property_residency_and_capacity_hold(
    m: PlacementInput,
    cap: list[NodeCapacity],
    raw: dict[str, float | None],
    cur: CurrentPlacement | None,
) -> None:
    d = decide(m, _signals(raw), cap, cur, NOW, SETTINGS, regions=PROP_TABLE)
    for region in d.regions:
        if m.placement.residency:
            assert m.placement.residency in PROP_TABLE.jurisdictions(region)
        if m.placement.regions:
            assert region in m.placement.regions
        if d.feasible:
            held = cur.held(region) if cur else 0
            assert replicas_that_fit(m.resources, region, cap, held) >= m.replicas
    assert len(d.regions) <= max(m.placement.spread, len(cur.regions) if cur else 0)
    if not d.feasible:
        assert not d.move


@settings(max_examples=300, deadline=None)
@given(model_st, st.lists(node_st, max_size=12), signal_st, current_st, st.integers(0, 1799))
def test_property_no_optional_move_inside_dwell(
    m: PlacementInput,
    cap: list[NodeCapacity],
    raw: dict[str, float | None],
    cur: CurrentPlacement | None,
    dwelt: int,
) -> None:
    if cur is None:
        return
    cur = replace(cur, since=NOW - timedelta(seconds=dwelt))  # below the 1800 s default
    d = decide(m, _signals(raw), cap, cur, NOW, SETTINGS, regions=PROP_TABLE)
    excluded = {e.region for e in d.excluded}
    all_still_feasible = not (set(cur.regions) & excluded)
    if all_still_feasible and len(cur.regions) == m.placement.spread:
        assert not d.move, d.message
        assert set(d.regions) == set(cur.regions)


@settings(max_examples=200, deadline=None)
@given(model_st, st.lists(node_st, max_size=12), signal_st, current_st, st.randoms())
def test_property_deterministic(
    m: PlacementInput,
    cap: list[NodeCapacity],
    raw: dict[str, float | None],
    cur: CurrentPlacement | None,
    rnd: object,
) -> None:
    sig = _signals(raw)
    a = decide(m, sig, cap, cur, NOW, SETTINGS, regions=PROP_TABLE)
    shuffled = list(cap)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    items = list(sig.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    b = decide(m, dict(items), shuffled, cur, NOW, SETTINGS, regions=PROP_TABLE)
    assert a == b
