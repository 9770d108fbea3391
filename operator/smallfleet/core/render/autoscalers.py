"""HorizontalPodAutoscaler and KEDA ScaledObject children, for teams that scale with those.

With `scaling.mode: operator` the operator decides replicas itself
(`smallfleet.core.autoscaling`). Teams that already run a metrics adapter or KEDA
can hand the decision to them instead; the operator then renders the scaler
objects here and leaves `replicas` out of its Deployments, so only one
manager ever writes the scale.

Both read the same Triton signals the operator's own decision uses:

- `hpa`: one `autoscaling/v2` HPA per Deployment with one `Pods` metric per
  served model, named after Triton's counter it derives from (see
  `POD_METRICS`; a Prometheus metrics adapter must expose them per pod — the
  rules are in docs/autoscaling.md). Stabilisation windows and step limits
  come from the spec; a step limit is "per 15 s", the HPA's sync period.
- `keda`: one `ScaledObject` (keda.sh/v1alpha1) per Deployment with one
  `prometheus` trigger per served model, querying Prometheus for that
  model's series on that Deployment's pods; threshold = target.

When a server holds several models the scaler takes the largest
recommendation of their metrics, as the HPA does for several metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Final, Protocol

from smallfleet.core.spec import Scaling
from smallfleet.core.tritonmetrics import pod_regex, promql

# Name of the per-pod metric the adapter serves for each scaling metric, and its unit.
POD_METRICS: Final[Mapping[str, str]] = {
    "queueTime": "nv_inference_queue_duration_ms_per_request",
    "pendingRequests": "nv_inference_pending_request_count",
    "inferencesPerSecond": "nv_inference_count_per_second",
    "gpuUtilization": "nv_gpu_utilization_percent",
}
# KEDA: totals are divided by the replica count (AverageValue); means are compared as they are.
KEDA_METRIC_TYPES: Final[Mapping[str, str]] = {
    "queueTime": "Value",
    "pendingRequests": "AverageValue",
    "inferencesPerSecond": "AverageValue",
    "gpuUtilization": "Value",
}
HPA_PERIOD_SECONDS: Final = 15
# The Service that the Prometheus Operator creates for a `Prometheus` object named "k8s"
# in "monitoring" (kube-prometheus); settings.prometheus_url overrides it.
DEFAULT_PROMETHEUS_URL: Final = "http://prometheus-operated.monitoring.svc:9090"
ENSEMBLE_PLATFORM: Final = "ensemble"


class _Model(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def platform(self) -> str: ...


class PlanLike(Protocol):
    """What this renderer needs of a server plan."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def models(self) -> Sequence[_Model]: ...


def quantity(value: float) -> str:
    """A Kubernetes quantity for a target: "50", "2500m"; milli precision, at least 1m."""
    milli = max(1, round(Fraction(value) * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _owner_references(owner: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if owner is None:
        return []
    meta = owner.get("metadata")
    source: Mapping[str, Any] = meta if isinstance(meta, Mapping) else owner
    return [
        {
            "apiVersion": str(owner.get("apiVersion", "serving.smallfleet.io/v1alpha1")),
            "kind": str(owner["kind"]),
            "name": str(source["name"]),
            "uid": str(source["uid"]),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _scaled_models(plan: PlanLike, scaling: Scaling) -> list[str | None]:
    """The models whose load counts: every real model; an ensemble only routes between them.

    GPU utilisation belongs to the pod, not to a model: one metric, no model (None).
    """
    if scaling.metric == "gpuUtilization":
        return [None]
    names = [m.name for m in plan.models if m.platform != ENSEMBLE_PLATFORM]
    return list(names or [m.name for m in plan.models])


def _metadata(
    plan: PlanLike, name: str, labels: Mapping[str, str], owner: Mapping[str, Any] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": plan.namespace, "labels": dict(labels)}
    refs = _owner_references(owner)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def _behavior(scaling: Scaling) -> dict[str, Any]:
    def rules(window: int, step: int) -> dict[str, Any]:
        return {
            "stabilizationWindowSeconds": window,
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": step, "periodSeconds": HPA_PERIOD_SECONDS}],
        }

    return {
        "scaleUp": rules(scaling.scale_up_stabilization_seconds, scaling.max_scale_up_step),
        "scaleDown": rules(scaling.scale_down_stabilization_seconds, scaling.max_scale_down_step),
    }


def _hpa(
    plan: PlanLike,
    scaling: Scaling,
    deployment: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None,
) -> dict[str, Any]:
    def metric(model: str | None) -> dict[str, Any]:
        named: dict[str, Any] = {"name": POD_METRICS[scaling.metric]}
        if model is not None:
            named["selector"] = {"matchLabels": {"model": model}}
        return {
            "type": "Pods",
            "pods": {
                "metric": named,
                "target": {"type": "AverageValue", "averageValue": quantity(scaling.target)},
            },
        }

    metrics = [metric(model) for model in _scaled_models(plan, scaling)]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(plan, deployment, labels, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            # The HPA cannot go below one replica without the HPAScaleToZero feature gate.
            "minReplicas": max(1, scaling.min_replicas),
            "maxReplicas": max(1, scaling.max_replicas),
            "metrics": metrics,
            "behavior": _behavior(scaling),
        },
    }


def _scaled_object(
    plan: PlanLike,
    scaling: Scaling,
    deployment: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None,
    prometheus_url: str,
    polling_seconds: int,
) -> dict[str, Any]:
    pods = {"namespace": plan.namespace, "pod=~": pod_regex(deployment)}
    triggers = [
        {
            "type": "prometheus",
            "name": f"{model or 'pod'}-{scaling.metric}".lower()[:63],
            "metricType": KEDA_METRIC_TYPES[scaling.metric],
            "metadata": {
                "serverAddress": prometheus_url,
                "query": promql(scaling.metric, model or "", pods),
                "threshold": quantity(scaling.target),
            },
        }
        for model in _scaled_models(plan, scaling)
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(plan, deployment, labels, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "pollingInterval": polling_seconds,
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": max(1, scaling.max_replicas),
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(scaling)}},
            "triggers": triggers,
        },
    }


def autoscaler_manifests(
    plan: PlanLike,
    scaling: Scaling,
    deployments: Sequence[str],
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None,
    *,
    prometheus_url: str | None = None,
    polling_seconds: int = 15,
) -> list[dict[str, Any]]:
    """The HPA or KEDA objects for a plan's Deployments; none unless `scaling.mode` asks.

    `deployments` are the names of the plan's Deployments (one per region);
    each gets a scaler of the same name. `labels` are the plan's common
    labels; `owner` the owning custom object (None: no ownerReferences).
    `prometheus_url` is `Settings.prometheus_url` (KEDA's serverAddress).
    """
    if scaling.mode == "hpa":
        return [_hpa(plan, scaling, d, labels, owner) for d in deployments]
    if scaling.mode == "keda":
        url = prometheus_url or DEFAULT_PROMETHEUS_URL
        return [
            _scaled_object(plan, scaling, d, labels, owner, url, polling_seconds)
            for d in deployments
        ]
    return []
