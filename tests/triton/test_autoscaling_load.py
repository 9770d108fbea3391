"""A real Triton under rising, then stopping load drives the scaling decision up, then down.

The operator's loop in small: every second `DirectSource` scrapes the
server's metrics port and `decide` turns the sample into a replica count,
which is fed back as the current count (one server stands in for the fleet:
the inference rate is a total, so the recommendation does not depend on how
many servers produced it). The spec uses a short scale-down window so the
test sees the window hold the count, then release it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from triton_harness import TextLoad, TritonServer

from smallfleet.core.autoscaling import ScalerState, ScalingDecision, decide
from smallfleet.core.autoscaling import decision as reasons
from smallfleet.core.spec import Scaling
from smallfleet.metricsource import DirectSource

MODEL = "minilm-l6"
DOWN_WINDOW = 4
SCALING = Scaling(
    min_replicas=1,
    max_replicas=32,
    metric="inferencesPerSecond",
    # Well below what this CPU serves to 16 clients, so the peak asks for several replicas.
    target=20.0,
    scale_up_stabilization_seconds=0,
    scale_down_stabilization_seconds=DOWN_WINDOW,
    max_scale_up_step=32,
    max_scale_down_step=32,
)
PHASES = ((0, 3.0), (2, 4.0), (16, 6.0))  # (concurrent clients, seconds)
AFTER_LOAD_S = 20.0  # bound on the wait for the way down


@dataclass(frozen=True)
class Step:
    at: float
    clients: int
    decision: ScalingDecision


def test_load_scales_up_then_down_after_the_window(triton_server: TritonServer) -> None:
    source = DirectSource(port=triton_server.metrics_port, window=2.0)
    state, current = ScalerState(), 1
    steps: list[Step] = []
    load = TextLoad(triton_server, MODEL, max(c for c, _ in PHASES), active=0)

    def tick(clients: int) -> None:
        nonlocal state, current
        sample = source.sample("load", MODEL, ["127.0.0.1"])
        now = time.monotonic()
        decision, state = decide(SCALING, state, sample, now, current, None)
        current = decision.desired
        steps.append(Step(now, clients, decision))

    try:
        for clients, seconds in PHASES:
            load.active = clients
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                tick(clients)
                time.sleep(1.0)
        load.active = 0
        stopped_at = time.monotonic()
        deadline = stopped_at + AFTER_LOAD_S
        while time.monotonic() < deadline:
            tick(0)
            if current == SCALING.min_replicas and time.monotonic() > stopped_at + DOWN_WINDOW:
                break
            time.sleep(1.0)
    finally:
        load.close()
    assert not load.errors, load.errors

    trail = [
        (round(s.at - steps[0].at, 1), s.clients, s.decision.desired, s.decision.reason)
        for s in steps
    ]
    print("trail (s, clients, desired, reason):", trail)
    idle = [s.decision.desired for s in steps if s.clients == 0 and s.at < stopped_at]
    assert set(idle) <= {1}, trail
    peak = max(s.decision.desired for s in steps if s.clients == 16)
    light = max(s.decision.desired for s in steps if s.clients == 2)
    assert peak >= 3, trail
    assert peak >= light, trail
    assert any(s.decision.desired > s.decision.current for s in steps), trail

    after = [s for s in steps if s.at >= stopped_at]
    # The window holds the count while the raw recommendation already asks for less...
    held = [
        s
        for s in after
        if s.decision.reason == reasons.STABILIZING
        and s.decision.recommendation is not None
        and s.decision.recommendation < s.decision.current
    ]
    assert held, trail
    # ...and then lets it go, all the way to the minimum.
    assert any(s.decision.reason == reasons.SCALED_DOWN for s in after), trail
    assert current == SCALING.min_replicas, trail
    # The last step down (to the minimum) comes after a hold: the rates of the first ticks
    # after the load stops may still carry load, and a step down to what they need is no hold.
    last_down = max(s.at for s in after if s.decision.reason == reasons.SCALED_DOWN)
    assert last_down - held[0].at > 0, trail
    assert load.sent > 0
