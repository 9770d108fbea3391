"""HPA and KEDA ScaledObject rendering."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from smallfleet.core.render import ServerPlan, plan_for_model
from smallfleet.core.render.autoscalers import (
    DEFAULT_PROMETHEUS_URL,
    POD_METRICS,
    autoscaler_manifests,
    quantity,
)
from smallfleet.core.render.quantity import parse_quantity
from smallfleet.core.spec import Scaling, parse_small_model
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABELS = {"app.kubernetes.io/instance": "m"}
OWNER = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "name": "m",
    "uid": "u-1",
}


def plan(example: str) -> ServerPlan:
    obj = yaml.safe_load((EXAMPLES / example).read_text())
    return plan_for_model(parse_small_model(obj), Settings())


def test_operator_and_none_modes_render_nothing() -> None:
    p = plan("scaling-operator.yaml")
    for mode in ("operator", "none"):
        assert autoscaler_manifests(p, replace(p.scaling, mode=mode), ["a"], LABELS, None) == []


def test_hpa_per_deployment() -> None:
    p = plan("scaling-hpa.yaml")
    scaling = p.scaling
    out = autoscaler_manifests(p, scaling, ["x-eu", "x-us"], LABELS, OWNER)
    assert [o["metadata"]["name"] for o in out] == ["x-eu", "x-us"]
    hpa = out[0]
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert hpa["metadata"]["namespace"] == p.namespace
    assert hpa["metadata"]["labels"] == LABELS
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x-eu"}
    assert spec["minReplicas"] == max(1, scaling.min_replicas)
    assert spec["maxReplicas"] == scaling.max_replicas
    [metric] = spec["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"] == {
        "name": POD_METRICS[scaling.metric],
        "selector": {"matchLabels": {"model": p.models[0].name}},
    }
    assert parse_quantity(metric["pods"]["target"]["averageValue"]) == Fraction(str(scaling.target))
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == scaling.scale_up_stabilization_seconds
    assert down["stabilizationWindowSeconds"] == scaling.scale_down_stabilization_seconds
    assert up["policies"][0]["value"] == scaling.max_scale_up_step
    assert down["policies"][0]["value"] == scaling.max_scale_down_step


def test_keda_per_deployment() -> None:
    p = plan("scaling-keda.yaml")
    out = autoscaler_manifests(
        p, p.scaling, ["scaling-keda-eu"], LABELS, None, prometheus_url="http://prom:9090"
    )
    [so] = out
    assert (so["apiVersion"], so["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert "ownerReferences" not in so["metadata"]
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == "scaling-keda-eu"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 10)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"  # inferences/s add up over pods
    meta = trigger["metadata"]
    assert meta["serverAddress"] == "http://prom:9090"
    assert meta["threshold"] == "400"
    assert 'model="scaling-keda"' in meta["query"]
    assert 'namespace="default"' in meta["query"]
    assert 'pod=~"scaling-keda-eu-[a-z0-9]+-[a-z0-9]+"' in meta["query"]
    assert meta["query"].startswith("sum(rate(nv_inference_count{")


def test_keda_defaults_to_the_prometheus_operator_service() -> None:
    p = plan("scaling-keda.yaml")
    [so] = autoscaler_manifests(p, p.scaling, ["d"], LABELS, None)
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == DEFAULT_PROMETHEUS_URL


@pytest.mark.parametrize(
    ("metric", "metric_type", "query_start"),
    [
        ("queueTime", "Value", "sum(rate(nv_inference_queue_duration_us{"),
        ("pendingRequests", "AverageValue", "sum(nv_inference_pending_request_count{"),
        ("inferencesPerSecond", "AverageValue", "sum(rate(nv_inference_count{"),
        ("gpuUtilization", "Value", "avg(nv_gpu_utilization{"),
    ],
)
def test_every_metric_has_a_query_and_a_pod_metric(
    metric: str, metric_type: str, query_start: str
) -> None:
    p = plan("scaling-keda.yaml")
    scaling = replace(p.scaling, metric=metric)  # type: ignore[arg-type]
    [so] = autoscaler_manifests(p, scaling, ["d"], LABELS, None)
    trigger = so["spec"]["triggers"][0]
    assert trigger["metricType"] == metric_type
    assert trigger["metadata"]["query"].startswith(query_start)
    [hpa] = autoscaler_manifests(p, replace(scaling, mode="hpa"), ["d"], LABELS, None)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == POD_METRICS[metric]


def test_a_pipeline_scales_on_its_steps_not_the_ensemble() -> None:
    from smallfleet.core.render.serverplan import ModelEntry

    p = plan("scaling-hpa.yaml")
    pipeline = replace(
        p,
        models=(
            replace(p.models[0], name="retrieve"),
            replace(p.models[0], name="rerank"),
            ModelEntry(name="rag", platform="ensemble", max_batch_size=8),
        ),
    )
    [hpa] = autoscaler_manifests(pipeline, pipeline.scaling, ["d"], LABELS, None)
    selected = [
        m["pods"]["metric"]["selector"]["matchLabels"]["model"] for m in hpa["spec"]["metrics"]
    ]
    assert selected == ["retrieve", "rerank"]


def test_objects_are_plain_yaml() -> None:
    p = plan("scaling-keda.yaml")
    out: list[dict[str, Any]] = autoscaler_manifests(p, p.scaling, ["a", "b"], LABELS, OWNER)
    assert yaml.safe_load(yaml.safe_dump(out)) == out


@given(st.floats(0.001, 1e6))
def test_quantity_round_trips_to_a_milli(value: float) -> None:
    q = quantity(value)
    assert abs(parse_quantity(q) - Fraction(value)) <= Fraction(1, 2000)


def test_quantity_examples() -> None:
    assert [quantity(v) for v in (50.0, 0.5, 2.25, 400, 0.0)] == [
        "50",
        "500m",
        "2250m",
        "400",
        "1m",
    ]


def test_default_scaling_renders_nothing() -> None:
    p = plan("scaling-operator.yaml")
    assert autoscaler_manifests(p, Scaling(), ["a"], LABELS, None) == []


def test_gpu_utilisation_is_per_pod_not_per_model() -> None:
    p = plan("scaling-hpa.yaml")
    scaling = replace(p.scaling, metric="gpuUtilization")
    [hpa] = autoscaler_manifests(p, scaling, ["d"], LABELS, None)
    [metric] = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"] == {"name": "nv_gpu_utilization_percent"}
    [so] = autoscaler_manifests(p, replace(scaling, mode="keda"), ["d"], LABELS, None)
    [trigger] = so["spec"]["triggers"]
    assert "model=" not in trigger["metadata"]["query"]
