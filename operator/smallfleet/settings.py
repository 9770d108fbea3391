"""Operator-wide defaults, read once from the environment (which the Helm values set).

One frozen object so that rendering stays pure: the renderer receives the
settings as a value instead of reading the environment itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from smallfleet.core.spec import DEFAULT_TRITON_IMAGE, PodSettings, SpecError, parse_pod_settings

DEFAULT_OPERATOR_IMAGE: Final = "ghcr.io/smallfleet/smallfleet:0.1.0"


@dataclass(frozen=True)
class Settings:
    triton_image: str = DEFAULT_TRITON_IMAGE
    operator_image: str = DEFAULT_OPERATOR_IMAGE  # runs `smallfleet fetch` as the init container
    namespace: str | None = None  # watch one namespace; None watches all
    carbon_provider: str = "static"  # static | electricitymaps | watttime | ukgrid | carbonawaresdk
    carbon_provider_url: str | None = None
    carbon_max_age_seconds: int = 3600
    carbon_refresh_seconds: int = 300
    region_zone_configmap: str | None = (
        None  # "namespace/name" overriding the region -> grid-zone map
    )
    pue: float = 1.2
    min_improvement_percent: float = 15.0
    min_dwell_seconds: int = 1800
    # Joint placement: a move must also save this share of the fleet's median model's
    # emissions, so small models are not shuffled into every hole a bigger move leaves;
    # a share, not grams, so a fleet of small models is planned as a fleet of large ones.
    min_move_gain_percent_of_median: float = 90.0
    # and at least this many gCO2e per hour, whatever the fleet (off by default).
    min_move_gain_grams_per_hour: float = 0.0
    scrape_interval_seconds: float = 5.0
    prometheus_url: str | None = None  # query Prometheus instead of scraping Triton pods
    metrics_port: int = 8080
    health_port: int = 8081
    # The one address /metrics and /healthz listen on: loopback unless set (the chart sets
    # the pod IP, so the kubelet's probes reach it). Never a wildcard by default.
    bind_address: str = "127.0.0.1"
    # The chart's podDefaults: what a model's server pods get where its spec.pod sets nothing.
    pod_defaults: PodSettings = field(default_factory=PodSettings)


def _env(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(f"SMALLFLEET_{key}")
    return value if value else None


def pod_defaults_from(text: str | None) -> PodSettings:
    """SMALLFLEET_POD_DEFAULTS (JSON of a spec.pod block), checked as the CRD checks spec.pod.

    A bad value stops the operator at start-up with every problem named, rather
    than rendering pods that the API server or the scheduler would refuse later.
    """
    if text is None:
        return PodSettings()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"SMALLFLEET_POD_DEFAULTS is not JSON: {exc}") from exc
    try:
        return parse_pod_settings(value if value is not None else {})
    except SpecError as exc:
        raise ValueError(f"SMALLFLEET_POD_DEFAULTS: {exc}") from exc


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if env is None else env
    d = Settings()

    def s(key: str, default: str) -> str:
        return _env(e, key) or default

    def f(key: str, default: float) -> float:
        v = _env(e, key)
        return float(v) if v is not None else default

    def i(key: str, default: int) -> int:
        v = _env(e, key)
        return int(v) if v is not None else default

    return Settings(
        triton_image=s("TRITON_IMAGE", d.triton_image),
        operator_image=s("OPERATOR_IMAGE", d.operator_image),
        namespace=_env(e, "NAMESPACE"),
        carbon_provider=s("CARBON_PROVIDER", d.carbon_provider),
        carbon_provider_url=_env(e, "CARBON_PROVIDER_URL"),
        carbon_max_age_seconds=i("CARBON_MAX_AGE_SECONDS", d.carbon_max_age_seconds),
        carbon_refresh_seconds=i("CARBON_REFRESH_SECONDS", d.carbon_refresh_seconds),
        region_zone_configmap=_env(e, "REGION_ZONE_CONFIGMAP"),
        pue=f("PUE", d.pue),
        min_improvement_percent=f("MIN_IMPROVEMENT_PERCENT", d.min_improvement_percent),
        min_dwell_seconds=i("MIN_DWELL_SECONDS", d.min_dwell_seconds),
        min_move_gain_percent_of_median=f(
            "MIN_MOVE_GAIN_PERCENT_OF_MEDIAN", d.min_move_gain_percent_of_median
        ),
        min_move_gain_grams_per_hour=f(
            "MIN_MOVE_GAIN_GRAMS_PER_HOUR", d.min_move_gain_grams_per_hour
        ),
        scrape_interval_seconds=f("SCRAPE_INTERVAL_SECONDS", d.scrape_interval_seconds),
        prometheus_url=_env(e, "PROMETHEUS_URL"),
        metrics_port=i("METRICS_PORT", d.metrics_port),
        health_port=i("HEALTH_PORT", d.health_port),
        bind_address=s("BIND_ADDRESS", d.bind_address),
        pod_defaults=pod_defaults_from(_env(e, "POD_DEFAULTS")),
    )
