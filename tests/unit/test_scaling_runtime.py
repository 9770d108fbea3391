"""The autoscaler's run-time glue from values alone: pods it counts, counts it keeps, caps it reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.control.facts import StaticFacts
from smallfleet.control.reconcile import Reconciler
from smallfleet.control.scaling import (
    Autoscaler,
    _selected,
    _unschedulable,
    _without_volatile,
    intensity_from,
)
from smallfleet.core.placement import CarbonReading
from smallfleet.core.placement.evaluate import Signals
from smallfleet.core.render import ServerPlan, plan_for_model
from smallfleet.core.spec import Scaling, parse_small_model
from smallfleet.kube import Kube
from smallfleet.providers import default_region_table
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)


def plan(**scaling: Any) -> ServerPlan:
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / "minilm-embedder.yaml").read_text()) if d]
    p = plan_for_model(parse_small_model(doc), Settings())
    return dataclasses.replace(p, scaling=Scaling(**scaling))


def pod(
    phase: str, scheduled: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    conditions = [] if scheduled is None else [{"type": "PodScheduled", **scheduled}]
    return {
        "metadata": {"labels": labels or {}},
        "status": {"phase": phase, "conditions": conditions},
    }


NO_ROOM = {"status": "False", "reason": "Unschedulable", "message": "0/9 nodes: Insufficient gpu"}


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (pod("Pending", NO_ROOM), "0/9 nodes: Insufficient gpu"),
        (pod("Pending", {"status": "False", "reason": "Unschedulable"}), "unschedulable"),
        (pod("Pending", {"status": "False", "reason": "SchedulingGated"}), None),
        (pod("Pending", {"status": "True"}), None),  # placed, still starting
        (pod("Pending"), None),  # not looked at by the scheduler yet
        (pod("Running", NO_ROOM), None),
    ],
)
def test_unschedulable_counts_only_pods_the_scheduler_refused(
    p: dict[str, Any], expected: str | None
) -> None:
    assert _unschedulable(p) == expected


@pytest.mark.parametrize(
    ("labels", "match", "expected"),
    [
        ({"a": "1", "b": "2"}, {"a": "1"}, True),
        ({"a": "1"}, {"a": "1", "b": "2"}, False),
        ({"a": "2"}, {"a": "1"}, False),
        ({}, {}, True),
    ],
)
def test_a_pod_belongs_to_the_deployment_whose_selector_it_matches(
    labels: dict[str, str], match: dict[str, str], expected: bool
) -> None:
    assert _selected(pod("Running", labels=labels), match) is expected


def autoscaler() -> Autoscaler:
    # No request is made: the API client is never reached by these methods.
    return Autoscaler(Reconciler(Kube(None), Settings(), StaticFacts()))


@given(
    decided=st.integers(min_value=0, max_value=50),
    low=st.integers(min_value=0, max_value=10),
    span=st.integers(min_value=0, max_value=10),
)
def test_a_reconcile_renders_the_decided_count_within_the_bounds(
    decided: int, low: int, span: int
) -> None:
    scaler = autoscaler()
    p = plan(min_replicas=low, max_replicas=low + span)
    assert scaler.replicas(p, "ns", "m-eu-west-1") is None  # nothing decided yet
    scaler._decided["ns", "m-eu-west-1"] = decided
    assert scaler.replicas(p, "ns", "m-eu-west-1") == max(low, min(low + span, decided))
    assert scaler.replicas(p, "other", "m-eu-west-1") is None


@pytest.mark.parametrize("mode", ["hpa", "keda", "none"])
def test_other_modes_keep_their_own_counts(mode: str) -> None:
    scaler = autoscaler()
    scaler._decided["ns", "m"] = 3
    assert scaler.replicas(plan(mode=mode, max_replicas=5), "ns", "m") is None


def reading(region: str, value: float | None, kind: str = "average") -> CarbonReading:
    return CarbonReading(
        zone=region,
        region=region,
        start=NOW,
        duration=dt.timedelta(hours=1),
        intensity=value,
        kind=kind,  # type: ignore[arg-type]
        scope="lifecycle",
        forecast=False,
        provider="static",
        fetched_at=NOW,
    )


class Latest:
    def __init__(self, *readings: CarbonReading, fail: bool = False) -> None:
        self.signals = Signals({r.region: r for r in readings}, default_region_table(), NOW)
        self.fail = fail

    def latest(self) -> Signals:
        if self.fail:
            raise OSError("provider down")
        return self.signals


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        (Latest(reading("eu-west-1", 250.0)), 250.0),
        (Latest(reading("eu-west-1", 0.0)), None),  # a zero is a provider without data
        (Latest(reading("eu-west-1", None)), None),
        (Latest(reading("eu-west-1", 40.0, kind="index")), None),  # not gCO2eq/kWh
        (Latest(reading("us-east-1", 400.0)), None),  # another region's
        (Latest(reading("eu-west-1", 250.0), fail=True), None),
    ],
)
def test_the_carbon_cap_reads_only_usable_intensities(
    latest: Latest, expected: float | None
) -> None:
    assert intensity_from(latest)("eu-west-1") == expected


def test_time_and_value_alone_are_not_a_change_worth_a_write() -> None:
    a = {"mode": "operator", "lastDecision": {"time": "t1", "value": 1.0, "reason": "Stable"}}
    b = {"mode": "operator", "lastDecision": {"time": "t2", "value": 2.0, "reason": "Stable"}}
    c = {"mode": "operator", "lastDecision": {"time": "t2", "value": 2.0, "reason": "ScaledUp"}}
    assert _without_volatile(a) == _without_volatile(b)
    assert _without_volatile(b) != _without_volatile(c)


def test_a_model_not_scaled_by_the_operator_is_parsed_once_per_object_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass over a quiet fleet costs a lookup per model, not a parse of its spec."""
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / "minilm-embedder.yaml").read_text()) if d]
    doc["metadata"].update(namespace="ns", uid="u-1", resourceVersion="7")
    doc["spec"]["scaling"] = {"mode": "none", "minReplicas": 1, "maxReplicas": 1}
    key = ("SmallModel", "ns", doc["metadata"]["name"])
    facts = StaticFacts(objects={key: doc})
    scaler = Autoscaler(Reconciler(Kube(None), Settings(), facts))
    parsed: list[str] = []
    real = scaler.reconciler.plan

    def counting(kind: str, body: Any) -> ServerPlan:
        parsed.append(body["metadata"]["resourceVersion"])
        return real(kind, body)

    monkeypatch.setattr(scaler.reconciler, "plan", counting)
    for _ in range(3):
        scaler.run()
    assert parsed == ["7"]
    facts.objects[key] = {**doc, "metadata": {**doc["metadata"], "resourceVersion": "8"}}
    scaler.run()
    scaler.run()
    assert parsed == ["7", "8"]
    del facts.objects[key]
    scaler.run()
    assert scaler._unscaled == {}
