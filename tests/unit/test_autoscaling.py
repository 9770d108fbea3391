"""The scaling decision: a table of cases, then properties over generated load."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core.autoscaling import ScalerState, decide
from smallfleet.core.autoscaling import decision as d
from smallfleet.core.spec import CarbonCap, Scaling, ScalingMetric
from smallfleet.core.tritonmetrics import LoadSample

BASE = Scaling(min_replicas=1, max_replicas=10, metric="inferencesPerSecond", target=100.0)


def load(
    ips: float = 0.0,
    *,
    queue_ms: float = 0.0,
    pending: float = 0.0,
    gpu: float | None = None,
    ready: int = 1,
    answered: int | None = None,
    batch: float = 1.0,
    demand: float | None = None,
    counted_seconds: float = 0.0,
) -> LoadSample:
    """A sample; `counted_seconds` > 0 gives `demand` (default: `ips`) its counting noise."""
    arrived = ips if demand is None else demand
    return LoadSample(
        inferences_per_second=ips,
        requests_per_second=ips / batch if batch else ips,
        executions_per_second=ips / batch if batch else 0.0,
        queue_ms_per_request=queue_ms,
        compute_ms_per_request=1.0,
        pending_requests=pending,
        gpu_utilization=gpu,
        replicas=ready if answered is None else answered,
        expected_replicas=ready,
        demand_inferences_per_second=demand,
        demand_variance=arrived / counted_seconds if counted_seconds > 0 else 0.0,
    )


CASES = [
    # (name, scaling, sample, current, intensity, max_batch, want desired, want reason)
    ("ips up", BASE, load(450, ready=2), 2, None, 0, 5, d.SCALED_UP),
    ("ips within tolerance", BASE, load(205, ready=2), 2, None, 0, 2, d.WITHIN_TOLERANCE),
    ("ips up, step limited", BASE, load(2000, ready=1), 1, None, 0, 5, d.SCALED_UP),
    ("ips up to max", BASE, load(5000, ready=8), 8, None, 0, 10, d.BOUNDED),
    ("no sample holds", BASE, None, 4, None, 0, 4, d.METRICS_MISSING),
    (
        "partial sample never scales down",
        BASE,
        load(10, ready=4, answered=2),
        4,
        None,
        0,
        4,
        d.METRICS_PARTIAL,
    ),
    (
        "partial sample may scale up",
        BASE,
        load(900, ready=4, answered=2),
        4,
        None,
        0,
        8,
        d.SCALED_UP,
    ),
    (
        "pending per replica",
        replace(BASE, metric="pendingRequests", target=4.0),
        load(pending=30, ready=3),
        3,
        None,
        0,
        7,
        d.SCALED_UP,
    ),
    (
        "gpu utilisation",
        replace(BASE, metric="gpuUtilization", target=60.0),
        load(gpu=90.0, ready=4),
        4,
        None,
        0,
        6,
        d.SCALED_UP,
    ),
    (
        "gpu utilisation missing holds",
        replace(BASE, metric="gpuUtilization", target=60.0),
        load(gpu=None, ready=4),
        4,
        None,
        0,
        4,
        d.METRICS_MISSING,
    ),
    (
        "queue time behind",
        replace(BASE, metric="queueTime", target=50.0),
        load(400, queue_ms=150.0, pending=40, ready=2, batch=8.0),
        2,
        None,
        8,
        6,
        d.SCALED_UP,
    ),
    (
        "queue time absorbed by batching",
        replace(BASE, metric="queueTime", target=50.0),
        load(400, queue_ms=150.0, pending=3, ready=2, batch=4.0),
        2,
        None,
        8,
        2,
        d.QUEUE_ABSORBED,
    ),
    (
        "queue time with full batches is backlog",
        replace(BASE, metric="queueTime", target=50.0),
        load(400, queue_ms=150.0, pending=3, ready=2, batch=8.0),
        2,
        None,
        8,
        6,
        d.SCALED_UP,
    ),
    (
        "queue time of a non-batching model",
        replace(BASE, metric="queueTime", target=50.0),
        load(40, queue_ms=100.0, pending=4, ready=2),
        2,
        None,
        0,
        4,
        d.SCALED_UP,
    ),
    (
        "carbon cap lowers max",
        replace(BASE, carbon_cap=CarbonCap(above_intensity=300.0, max_replicas=3)),
        load(900, ready=2),
        2,
        450.0,
        0,
        3,
        d.CARBON_CAPPED,
    ),
    (
        "carbon cap off in a clean grid",
        replace(BASE, carbon_cap=CarbonCap(above_intensity=300.0, max_replicas=3)),
        load(900, ready=2),
        2,
        120.0,
        0,
        6,
        d.SCALED_UP,
    ),
    (
        "carbon cap never below min",
        replace(BASE, min_replicas=4, carbon_cap=CarbonCap(above_intensity=300.0, max_replicas=2)),
        load(900, ready=4),
        4,
        450.0,
        0,
        4,
        d.CARBON_CAPPED,
    ),
    ("below min rises", replace(BASE, min_replicas=3), load(0, ready=1), 1, None, 0, 3, d.BOUNDED),
]


@pytest.mark.parametrize(
    ("scaling", "sample", "current", "intensity", "max_batch", "want", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(
    scaling: Scaling,
    sample: LoadSample | None,
    current: int,
    intensity: float | None,
    max_batch: int,
    want: int,
    reason: str,
) -> None:
    decision, _ = decide(
        scaling, ScalerState(), sample, 1000.0, current, intensity, max_batch_size=max_batch
    )
    assert (decision.desired, decision.reason) == (want, reason), decision.message
    assert decision.current == current
    assert decision.metric == scaling.metric
    assert decision.target == scaling.target


def test_carbon_cap_is_reported() -> None:
    scaling = replace(BASE, carbon_cap=CarbonCap(above_intensity=300.0, max_replicas=3))
    capped, _ = decide(scaling, ScalerState(), load(100), 0.0, 1, 450.0)
    clean, _ = decide(scaling, ScalerState(), load(100), 0.0, 1, 100.0)
    unknown, _ = decide(scaling, ScalerState(), load(100), 0.0, 1, None)
    assert (capped.effective_max, capped.capped_by_carbon) == (3, True)
    assert (clean.effective_max, clean.capped_by_carbon) == (10, False)
    assert (unknown.effective_max, unknown.capped_by_carbon) == (10, False)


def test_scale_down_waits_for_the_window_then_steps() -> None:
    scaling = replace(BASE, scale_down_stabilization_seconds=60, max_scale_down_step=1)
    state = ScalerState()
    current = 5
    seen: list[tuple[float, int]] = []
    for t in range(0, 200, 5):
        ips = 480.0 if t < 30 else 90.0
        decision, state = decide(scaling, state, load(ips, ready=current), float(t), current, None)
        current = decision.desired
        seen.append((t, current))
    first_down = next(t for t, n in seen if n < 5)
    assert first_down == 25 + 60  # when the last high recommendation (t=25) leaves the window
    assert seen[-1][1] == 1  # then one step per decision down to the need


def test_state_is_bounded_by_the_window() -> None:
    scaling = replace(BASE, scale_down_stabilization_seconds=30)
    state = ScalerState()
    for t in range(1000):
        _, state = decide(scaling, state, load(150), float(t), 2, None)
    assert len(state.recommendations) <= 31


# Properties ---------------------------------------------------------------------------------

scalings = st.builds(
    lambda lo, span, metric, target, tol, up, down, ustep, dstep, cap: Scaling(
        min_replicas=lo,
        max_replicas=lo + span,
        metric=metric,
        target=target,
        tolerance=tol,
        scale_up_stabilization_seconds=up,
        scale_down_stabilization_seconds=down,
        max_scale_up_step=ustep,
        max_scale_down_step=dstep,
        carbon_cap=cap,
    ),
    st.integers(0, 5),
    st.integers(0, 20),
    st.sampled_from(["queueTime", "pendingRequests", "inferencesPerSecond", "gpuUtilization"]),
    st.floats(1.0, 500.0),
    st.floats(0.0, 0.5),
    st.integers(0, 60),
    st.integers(0, 600),
    st.integers(1, 10),
    st.integers(1, 10),
    st.none() | st.builds(CarbonCap, st.floats(0.0, 800.0), st.integers(0, 20)),
)
loads = st.builds(
    lambda ips, q, p, g, ready, answered, batch: load(
        ips, queue_ms=q, pending=p, gpu=g, ready=ready, answered=min(answered, ready), batch=batch
    ),
    st.floats(0.0, 1e5),
    st.floats(0.0, 1e4),
    st.floats(0.0, 1e4),
    st.none() | st.floats(0.0, 100.0),
    st.integers(0, 30),
    st.integers(0, 30),
    st.floats(1.0, 32.0),
)


@settings(max_examples=300, deadline=None)
@given(
    scalings,
    st.lists(st.one_of(st.none(), loads), min_size=1, max_size=30),
    st.integers(0, 40),
    st.none() | st.floats(0.0, 900.0),
    st.integers(0, 32),
)
def test_always_within_bounds(
    scaling: Scaling,
    samples: list[LoadSample | None],
    current: int,
    intensity: float | None,
    max_batch: int,
) -> None:
    state = ScalerState()
    for i, sample in enumerate(samples):
        decision, state = decide(
            scaling, state, sample, 5.0 * i, current, intensity, max_batch_size=max_batch
        )
        upper = scaling.max_replicas
        if decision.capped_by_carbon:
            assert scaling.carbon_cap is not None
            upper = max(scaling.min_replicas, scaling.carbon_cap.max_replicas)
        assert scaling.min_replicas <= decision.desired <= upper
        assert decision.effective_max == upper or not decision.capped_by_carbon
        current = decision.desired


@settings(max_examples=300, deadline=None)
@given(scalings, loads, st.integers(1, 30), st.floats(1.0, 10.0), st.integers(0, 32))
def test_monotone_in_load(
    scaling: Scaling, sample: LoadSample, current: int, factor: float, max_batch: int
) -> None:
    """More of every load signal never yields fewer replicas."""
    more = replace(
        sample,
        inferences_per_second=sample.inferences_per_second * factor,
        requests_per_second=sample.requests_per_second * factor,
        executions_per_second=sample.executions_per_second * factor,
        queue_ms_per_request=sample.queue_ms_per_request * factor,
        pending_requests=sample.pending_requests * factor,
        demand_inferences_per_second=None
        if sample.demand_inferences_per_second is None
        else sample.demand_inferences_per_second * factor,
        gpu_utilization=None if sample.gpu_utilization is None else sample.gpu_utilization * factor,
    )
    a, _ = decide(scaling, ScalerState(), sample, 0.0, current, None, max_batch_size=max_batch)
    b, _ = decide(scaling, ScalerState(), more, 0.0, current, None, max_batch_size=max_batch)
    assert b.desired >= a.desired


@settings(max_examples=300, deadline=None)
@given(scalings, st.lists(loads, min_size=1, max_size=20), st.integers(0, 30))
def test_stale_data_never_scales_down(
    scaling: Scaling, history: list[LoadSample], current: int
) -> None:
    """After any history, a missing or partial sample never lowers a count within bounds."""
    state = ScalerState()
    for i, sample in enumerate(history):
        _, state = decide(scaling, state, sample, 5.0 * i, current, None)
    current = min(max(current, scaling.min_replicas), scaling.max_replicas)
    t = 5.0 * len(history)
    missing, _ = decide(scaling, state, None, t, current, None)
    assert missing.desired == current
    partial = replace(history[-1], replicas=0, expected_replicas=max(1, current))
    held, _ = decide(scaling, state, partial, t, current, None)
    assert held.desired >= current


@settings(max_examples=200, deadline=None)
@given(
    st.floats(10.0, 5000.0),
    st.floats(10.0, 200.0),
    st.integers(1, 20),
    st.integers(0, 300),
)
def test_constant_load_converges_and_stays(
    total_ips: float, target: float, start: int, down_window: int
) -> None:
    scaling = replace(
        BASE,
        max_replicas=100,
        target=target,
        tolerance=0.0,
        scale_down_stabilization_seconds=down_window,
    )
    need = min(100, max(1, math.ceil(round(total_ips / target, 9))))
    state, current = ScalerState(), start
    counts = []
    for i in range(200):
        decision, state = decide(
            scaling, state, load(total_ips, ready=current), 5.0 * i, current, None
        )
        current = decision.desired
        counts.append(current)
    assert counts[-1] == need
    settled = counts.index(need)
    assert all(c == need for c in counts[settled:])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 20),
    st.lists(st.floats(-0.3, 0.3), min_size=50, max_size=200),
)
def test_noisy_load_does_not_oscillate(level: int, noise: list[float]) -> None:
    """Load wandering ±30% around a level makes at most one move each way, never a flap."""
    scaling = replace(BASE, max_replicas=100, scale_down_stabilization_seconds=600)
    state, current = ScalerState(), level
    directions: list[int] = []
    for i, e in enumerate(noise):
        ips = level * scaling.target * (1 + e)
        decision, state = decide(scaling, state, load(ips, ready=current), 5.0 * i, current, None)
        if decision.desired != current:
            directions.append(1 if decision.desired > current else -1)
        current = decision.desired
    changes = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    assert changes == 0, directions


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20), st.lists(st.floats(-0.09, 0.09), min_size=10, max_size=100))
def test_noise_inside_tolerance_never_moves(level: int, noise: list[float]) -> None:
    scaling = replace(BASE, max_replicas=100)
    state = ScalerState()
    for i, e in enumerate(noise):
        ips = level * scaling.target * (1 + e)
        decision, state = decide(scaling, state, load(ips, ready=level), 5.0 * i, level, None)
        assert decision.desired == level


def test_fresh_scaler_waits_one_window_before_scaling_down() -> None:
    scaling = replace(BASE, scale_down_stabilization_seconds=60)
    state, current = ScalerState(), 6
    for t in range(0, 60, 5):
        decision, state = decide(scaling, state, load(100, ready=current), float(t), current, None)
        assert decision.desired == 6, decision.message
    decision, state = decide(scaling, state, load(100, ready=current), 60.0, current, None)
    assert decision.desired == 5


def test_blind_period_restarts_the_scale_down_window() -> None:
    scaling = replace(BASE, scale_down_stabilization_seconds=30)
    state, current = ScalerState(), 4
    for t in range(0, 100, 5):
        decision, state = decide(scaling, state, None, float(t), current, None)
        assert decision.desired == 4
    decision, _ = decide(scaling, state, load(100, ready=4), 100.0, current, None)
    assert decision.desired == 4  # metrics just came back: not yet a full window of evidence


@pytest.mark.parametrize(
    ("ips", "want", "reason"),
    [
        (1150, 12, d.SCALED_UP),  # more than 10% over target: up to ceil(need)
        (1090, 10, d.WITHIN_TOLERANCE),  # within 10% over target: hold
        (990, 10, d.WITHIN_TOLERANCE),  # just under target: hold
        (870, 10, d.WITHIN_TOLERANCE),  # 9 replicas would run at 97%: less than 5% headroom
        (860, 10, d.WITHIN_TOLERANCE),  # 9 replicas at 95.6%: still less than 5%
        (855, 9, d.SCALED_DOWN),  # 9 replicas at 95%: half the tolerance as headroom
        (800, 9, d.SCALED_DOWN),  # 9 replicas at 89%
        (400, 9, d.SCALED_DOWN),  # one step down per decision
    ],
)
def test_tolerance_band_and_scale_down_headroom(ips: float, want: int, reason: str) -> None:
    scaling = replace(BASE, max_replicas=20, scale_down_stabilization_seconds=0)
    warm = ScalerState(started=True)
    decision, _ = decide(scaling, warm, load(ips, ready=10), 0.0, 10, None)
    assert (decision.desired, decision.reason) == (want, reason), decision.message


# Rises at once, falls only while the load is not rising ----------------------------------


def _steady(scaling: Scaling, ips: float, replicas: int, seconds: int) -> ScalerState:
    state = ScalerState()
    for t in range(0, seconds, 5):
        decision, state = decide(
            scaling, state, load(ips, ready=replicas), float(t), replicas, None
        )
        assert decision.desired == replicas, decision.message
    return state


@pytest.mark.parametrize(
    ("ips", "want"),
    [(1101, 12), (1200, 12), (1300, 13), (1400, 14)],
)
def test_a_rise_above_the_band_scales_up_at_once(ips: float, want: int) -> None:
    scaling = replace(BASE, max_replicas=40)
    state = _steady(scaling, 1000.0, 10, 300)
    decision, _ = decide(scaling, state, load(ips, ready=10), 300.0, 10, None)
    assert (decision.desired, decision.reason) == (want, d.SCALED_UP), decision.message


def _after_a_drop(scaling: Scaling) -> tuple[ScalerState, float]:
    """10 replicas at target for 5 minutes, then half the load for longer than the window."""
    state = _steady(scaling, 1000.0, 10, 300)
    t = 300.0
    for _ in range(26):  # 130 s at 500/s: every sample in the window asks for 6
        decision, state = decide(scaling, state, load(500.0, ready=10), t, 10, None)
        t += 5
    assert decision.desired == 9, decision.message  # the window has passed: one step down
    return state, t


def test_a_fall_waits_while_the_load_rises() -> None:
    scaling = replace(BASE, max_replicas=20)
    state, t = _after_a_drop(scaling)
    # 600/s still asks for fewer than 10, but it is above the window's mean: hold.
    decision, _ = decide(scaling, state, load(600.0, ready=10), t, 10, None)
    assert (decision.desired, decision.reason) == (10, d.RISING), decision.message
    assert "while the load rises" in decision.message
    # The same load, not above the window's mean, falls.
    decision, _ = decide(scaling, state, load(500.0, ready=10), t, 10, None)
    assert (decision.desired, decision.reason) == (9, d.SCALED_DOWN), decision.message


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 30),
    st.floats(0.96, 1.0),
    st.floats(1.0, 1.1),
    st.integers(1, 5),
    st.integers(0, 300),
)
def test_a_spike_within_the_band_moves_nothing(
    level: int, utilisation: float, spike: float, spike_samples: int, down_window: int
) -> None:
    """Steady load near target, a few samples up to the band's edge: the count never moves."""
    scaling = replace(BASE, max_replicas=100, scale_down_stabilization_seconds=down_window)
    ips = level * scaling.target * utilisation
    state = _steady(scaling, ips, level, 300)
    for i in range(60):
        high = i < spike_samples
        sample = load(ips * spike if high else ips, ready=level)
        decision, state = decide(scaling, state, sample, 300.0 + 5 * i, level, None)
        assert decision.desired == level, decision.message


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(st.floats(0.0, 6000.0), min_size=1, max_size=80),
    st.sampled_from([0, 30, 120]),
)
def test_a_fall_leaves_headroom_and_never_follows_a_rising_sample(
    start: int, totals: list[float], down_window: int
) -> None:
    """After every fall the load fits the new count with half the tolerance to spare,
    and no fall happens on a sample above the mean of the window's samples."""
    scaling = replace(BASE, max_replicas=60, scale_down_stabilization_seconds=down_window)
    current = start
    state = ScalerState(started=True)
    seen: list[tuple[float, float]] = []
    for i, total in enumerate(totals):
        now = 5.0 * i
        decision, state = decide(scaling, state, load(total, ready=current), now, current, None)
        seen.append((now, total / scaling.target))
        if decision.desired < current:
            assert (
                total / scaling.target
                <= decision.desired * (1 - scaling.tolerance * d.SCALE_DOWN_HEADROOM) + 1e-9
            ), decision.message
            window = [n for at, n in seen if at > now - down_window]
            assert not window or total / scaling.target <= sum(window) / len(window) + 1e-9
        current = decision.desired


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["pendingRequests", "inferencesPerSecond"]),
    st.floats(1.0, 5000.0),
    st.lists(st.floats(0.0, 200.0), min_size=1, max_size=60),
)
def test_a_rising_load_never_scales_down(
    metric: ScalingMetric, start: float, rises: list[float]
) -> None:
    scaling = replace(BASE, metric=metric, max_replicas=200, scale_down_stabilization_seconds=0)
    total = start
    current = max(1, math.ceil(start / scaling.target))
    state = ScalerState()
    for i, rise in enumerate(rises):
        total += rise
        sample = load(total, pending=total, ready=current)
        decision, state = decide(scaling, state, sample, 5.0 * i, current, None)
        assert decision.desired >= current, decision.message
        current = decision.desired


# Falls sized on the demand's upper bound; no reversal within the window --------------------


def test_a_fall_is_sized_on_the_upper_bound_of_a_small_count() -> None:
    """8.9/s over 30 s is 267 arrivals: the true rate may be 10.5/s, more than one replica's 10."""
    scaling = replace(BASE, target=10.0, scale_down_stabilization_seconds=0)
    warm = ScalerState(started=True)
    counted, _ = decide(scaling, warm, load(8.9, ready=2, counted_seconds=30), 0.0, 2, None)
    assert (counted.desired, counted.reason) == (2, d.WITHIN_TOLERANCE), counted.message
    exact, _ = decide(scaling, warm, load(8.9, ready=2), 0.0, 2, None)  # no noise known
    assert exact.desired == 1, exact.message
    # At 890/s over 30 s the bound is 3% higher: the same share of target falls.
    many = replace(scaling, target=1000.0)
    big, _ = decide(many, warm, load(890.0, ready=2, counted_seconds=30), 0.0, 2, None)
    assert big.desired == 1, big.message


def test_behind_means_a_queue_growing_beyond_counting_noise() -> None:
    # 1,000/s served over 30 s: one standard error is 5.8/s, so 3 of them are 17/s.
    assert not d.behind(load(1000.0, demand=1010.0, counted_seconds=30, ready=10), 0)
    assert d.behind(load(1000.0, demand=1030.0, counted_seconds=30, ready=10), 0)
    # No demand measurement (Prometheus): a full batch pending per ready replica.
    assert not d.behind(load(1000.0, pending=70.0, ready=10), 8)
    assert d.behind(load(1000.0, pending=80.0, ready=10), 8)


def test_a_rise_just_after_a_fall_waits_unless_the_queue_grows() -> None:
    scaling = replace(BASE, max_replicas=20)
    state, t = _after_a_drop(scaling)  # fell from 10 to 9 at t - 5
    burst = load(1150.0, ready=9, counted_seconds=30)  # 128% of 9 replicas' target, served
    held, _ = decide(scaling, state, burst, t, 9, None)
    assert (held.desired, held.reason) == (9, d.RISE_HELD), held.message
    assert "queue is not growing" in held.message
    growing = load(900.0, demand=1150.0, counted_seconds=30, ready=9)  # 9 serve 900 of 1,150
    up, _ = decide(scaling, state, growing, t, 9, None)
    assert (up.desired, up.reason) == (12, d.SCALED_UP), up.message
    later, _ = decide(
        scaling, state, burst, t - 5 + scaling.scale_down_stabilization_seconds, 9, None
    )
    assert (later.desired, later.reason) == (12, d.SCALED_UP), later.message


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30),
    st.lists(st.floats(0.0, 4000.0), min_size=2, max_size=120),
    st.sampled_from([30, 120, 300]),
)
def test_a_served_load_never_flaps(start: int, totals: list[float], down_window: int) -> None:
    """Whatever the load does, while the replicas serve it (no growing queue) no move is
    reversed within the scale-down window of the move it undoes."""
    scaling = replace(BASE, max_replicas=60, scale_down_stabilization_seconds=down_window)
    state, current = ScalerState(), start
    moves: list[tuple[float, int]] = []
    for i, total in enumerate(totals):
        now = 5.0 * i
        sample = load(total, ready=current, counted_seconds=30)
        decision, state = decide(scaling, state, sample, now, current, None)
        if decision.desired != current:
            step = 1 if decision.desired > current else -1
            if moves and moves[-1][1] != step:
                assert now - moves[-1][0] >= down_window, (moves, decision.message)
            moves.append((now, step))
        current = decision.desired


@settings(max_examples=200, deadline=None)
@given(
    st.floats(100.0, 5000.0),
    st.floats(10.0, 200.0),
    st.lists(st.floats(-3.0, 3.0), min_size=10, max_size=150),
)
def test_constant_demand_never_reverses(rate: float, target: float, errors: list[float]) -> None:
    """A constant Poisson demand, read with up to 3 standard errors of counting noise either
    way, moves the count in one direction at most, starting from the count it needs."""
    scaling = replace(BASE, max_replicas=1000, target=target)
    seconds = 30.0
    noise = math.sqrt(rate / seconds)
    current = math.ceil(rate / target)
    state = ScalerState()
    directions: list[int] = []
    for i, e in enumerate(errors):
        sample = load(rate + e * noise, ready=current, counted_seconds=seconds)
        decision, state = decide(scaling, state, sample, 5.0 * i, current, None)
        if decision.desired != current:
            directions.append(1 if decision.desired > current else -1)
        current = decision.desired
    assert len(set(directions)) <= 1, directions
