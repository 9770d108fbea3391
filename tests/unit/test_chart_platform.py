"""The chart's platform features, rendered by the real `helm template`.

CRDs as templates (so `helm upgrade` upgrades them), Prometheus Operator
monitors and the Grafana dashboard behind values, JSON logs as a value, and a
schema that lets the chart be a subchart. Each is checked against the code it
must agree with: the CRDs against crds/, the PodMonitor against the labels and
port the renderer puts on Triton pods, every dashboard query against the
metric names the operator and Triton export, the log flag against the
operator's own argument parser.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from hack.check_chart import (
    CHART,
    CRDS,
    HELM_CRDS_DIR,
    check_crds,
    helm,
    kube_version,
    render,
    rendered_crd_problems,
)
from promql import PromQLError, metric_names
from render_fixtures import GPU_ONNX

from smallfleet import telemetry
from smallfleet.control import placement as _placement  # noqa: F401  (registers its gauges)
from smallfleet.control import scaling as _scaling  # noqa: F401  (registers its gauges)
from smallfleet.core import tritonmetrics
from smallfleet.core.render import plan_for_model, render_children
from smallfleet.core.render.children import (
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_REGION,
)
from smallfleet.handlers import main as run_command
from smallfleet.settings import Settings

DASHBOARD: Final = CHART / "dashboards" / "smallfleet.json"
MONITORING: Final = (
    "--set", "monitoring.serviceMonitor.enabled=true",
    "--set", "monitoring.podMonitor.enabled=true",
    "--set", "monitoring.dashboard.enabled=true",
)  # fmt: skip
GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@functools.cache
def rendered(*args: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(*args))


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def serving_crds(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in of_kind(objects, "CustomResourceDefinition")
        if o["spec"]["group"] == "serving.smallfleet.io"
    }


# --------------------------------------------------------------------------- CRDs


def test_chart_renders_every_crd_of_crds_with_its_spec_unchanged() -> None:
    objects = rendered()
    assert rendered_crd_problems(objects) == []
    sources = {p.name for p in CRDS.glob("*.yaml")}
    assert len(serving_crds(objects)) == len(sources) >= 2


def test_helm_never_installs_the_crds_from_its_special_directory() -> None:
    """A chart crds/ directory would be installed once and never upgraded."""
    assert not HELM_CRDS_DIR.exists()
    assert check_crds() == []


def test_crds_are_kept_on_uninstall_unless_told_otherwise() -> None:
    for crd in serving_crds(rendered()).values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for crd in serving_crds(rendered("--set", "crds.keep=false")).values():
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_crds_can_be_left_to_someone_else() -> None:
    objects = rendered("--set", "crds.enabled=false")
    assert serving_crds(objects) == {}
    assert of_kind(objects, "Deployment"), "everything else still installs"


def test_rendered_crd_problems_sees_a_missing_and_a_changed_crd() -> None:
    objects = [dict(o) for o in rendered()]
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    dropped = crds[0]["metadata"]["name"]
    changed = json.loads(json.dumps(crds[1]))
    changed["spec"]["names"]["shortNames"] = ["zz"]
    others = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    problems = rendered_crd_problems([*others, changed, *crds[2:]])
    assert f"CRD {dropped} of crds/ is not rendered" in problems
    assert f"CRD {changed['metadata']['name']}: the rendered spec differs from crds/" in problems


# --------------------------------------------------------------------------- monitoring


def test_monitors_and_dashboard_are_off_by_default() -> None:
    objects = rendered()
    assert of_kind(objects, "ServiceMonitor") == of_kind(objects, "PodMonitor") == []
    assert not [
        c for c in of_kind(objects, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]


def test_service_monitor_scrapes_the_metrics_service_keeping_the_models_labels() -> None:
    objects = rendered(
        *MONITORING,
        "--set", "monitoring.serviceMonitor.interval=10s",
        "--set", "monitoring.serviceMonitor.labels.release=prom",
    )  # fmt: skip
    (monitor,) = of_kind(objects, "ServiceMonitor")
    (service,) = of_kind(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["interval"] == "10s"
    # The operator's series carry the model's `namespace`; the scrape must not rename it.
    assert endpoint["honorLabels"] is True


def test_service_monitor_without_the_service_is_refused() -> None:
    proc = helm(
        "template", "smallfleet", str(CHART), f"--kube-version={kube_version()}",
        "--set", "monitoring.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "needs metrics.service.enabled" in proc.stderr


def _triton_pod_template() -> dict[str, Any]:
    children = render_children(
        plan_for_model(GPU_ONNX, Settings()),
        owner={
            "apiVersion": "serving.smallfleet.io/v1alpha1",
            "kind": "SmallModel",
            "metadata": {"name": "minilm", "uid": "2b7e1c9a-1d1f-4f7e-9a51-8d1e9e0f0001"},
        },
        regions={"eu-north-1": 1},
    )
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def _meta_label(pod_label: str) -> str:
    """The `__meta_kubernetes_pod_label_*` name Prometheus gives a pod label."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


@pytest.mark.parametrize(
    ("watch", "expected"), [("", {"any": True}), ("models", {"matchNames": ["models"]})]
)
def test_pod_monitor_selects_the_triton_pods_the_operator_renders(
    watch: str, expected: dict[str, Any]
) -> None:
    (monitor,) = of_kind(rendered(*MONITORING, "--set", f"watchNamespace={watch}"), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == expected
    pod = _triton_pod_template()
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (triton,) = [c for c in pod["spec"]["containers"] if c["name"] == "triton"]
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports[endpoint["port"]] == 8002
    # The owner and region labels become the labels the operator's per-model series carry.
    relabel = {r["sourceLabels"][0]: r["targetLabel"] for r in endpoint["relabelings"]}
    assert relabel == {
        _meta_label(LABEL_OWNER_KIND): "kind",
        _meta_label(LABEL_OWNER_NAME): "name",
        _meta_label(LABEL_REGION): "region",
    }
    for source in relabel:
        assert any(_meta_label(label) == source for label in pod["metadata"]["labels"])
    # Nothing the operator does not run matches: the operator's own pods are not Triton.
    (operator,) = of_kind(rendered(*MONITORING), "Deployment")
    assert not selector.items() <= operator["spec"]["template"]["metadata"]["labels"].items()


def test_dashboard_ships_as_a_sidecar_configmap() -> None:
    objects = rendered(
        *MONITORING,
        "--set", "monitoring.dashboard.namespace=grafana",
        "--set", "monitoring.dashboard.annotations.grafana_folder=Serving",
    )  # fmt: skip
    (cm,) = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Serving"}
    assert json.loads(cm["data"]["smallfleet.json"]) == json.loads(DASHBOARD.read_text())


# --------------------------------------------------------------------------- the dashboard


def exported_metric_names() -> set[str]:
    """Every series name the operator's /metrics and Triton's metrics port can carry."""
    names = set()
    for family in telemetry.REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif family.type == "summary":
            names |= {f"{family.name}_{s}" for s in ("sum", "count", "created")}
    # Families registered with labels but no child yet collect no samples; ask each metric.
    for metric in (*telemetry._extra.values(), telemetry.RECONCILES, telemetry.RECONCILE_SECONDS):
        for family in metric.describe():
            names.add(family.name)
    triton = {
        *tritonmetrics.COUNTERS,
        tritonmetrics.PENDING,
        tritonmetrics.GPU_UTILIZATION,
        tritonmetrics.GPU_POWER,
        tritonmetrics.GPU_MEMORY_USED,
    }
    return names | triton


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = (
                variable["query"]["query"]
                if isinstance(variable["query"], dict)
                else variable["query"]
            )
            m = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", query)
            assert m, f"variable {variable['name']}: {query!r} is not label_values(query, label)"
            yield f"variable {variable['name']}", m[1]


def grafana_free(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in re.sub(r'"[^"]*"', "", expr), f"unknown Grafana variable in {expr!r}"
    return expr


def test_every_dashboard_query_parses_and_reads_only_exported_metrics() -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for where, expr in dashboard_queries():
        names = metric_names(grafana_free(expr))
        assert names, f"{where} reads no metric"
        assert names <= exported, f"{where} reads {sorted(names - exported)}, which nothing exports"
        used |= names
    # The panels the platform team asked for each read their signal.
    assert {
        "smallfleet_resources",  # fleet readiness
        "nv_inference_count",  # per-model inference rate
        "nv_inference_queue_duration_us",  # queue time
        "smallfleet_reconcile_duration_seconds_bucket",  # p99
        "smallfleet_scaling_desired_replicas",  # replicas
        "smallfleet_scaling_decisions_total",  # scaling decisions
        "smallfleet_model_emissions_grams_per_hour",  # gCO2e/h per region
        "smallfleet_capacity_advice_grams_per_week",  # where extra GPUs would save the most
    } <= used


def test_the_dashboard_has_the_asked_for_panels() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in board["panels"]}
    assert any("histogram_quantile(0.99" in e for e in exprs.values())
    (per_region,) = [e for t, e in exprs.items() if "region" in t.lower()]
    assert per_region.startswith("sum by (region)")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] == "smallfleet"


def test_metric_names_would_catch_a_misspelt_metric() -> None:
    exported = exported_metric_names()
    assert not metric_names("rate(nv_inference_counts[5m])") <= exported
    assert not metric_names("smallfleet_reconciles_total") <= exported
    assert metric_names('sum(rate(smallfleet_reconcile_total{result!="ok"}[5m]))') <= exported


@pytest.mark.parametrize(
    "bad",
    [
        "rate(nv_inference_count)",  # rate needs a range
        "sum(rate(nv_inference_count[5m])",  # unbalanced
        "histogram_quantile(smallfleet_reconcile_duration_seconds_bucket)",  # missing argument
        "nv_inference_count * group_left () smallfleet_resources",  # group_left without on
        "sum by (le) rate(nv_inference_count[5m])",  # aggregation without parentheses
        "frobnicate(nv_inference_count)",  # unknown function
        "nv_inference_count{model=~}",  # matcher without a value
        "nv_inference_count[5m] + 1",  # arithmetic on a range vector
        "{}",  # no metric
        "1 and 2",  # set operator on scalars
        "nv_inference_count offset",  # offset without a duration
    ],
)
def test_promql_parser_rejects_what_prometheus_rejects(bad: str) -> None:
    with pytest.raises(PromQLError):
        metric_names(bad)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum(rate(a[5m])) by (x) / ignoring(y) group_right b", {"a", "b"}),
        ("topk(3, sum by (model) (a)) or on() vector(0)", {"a"}),
        ("max_over_time(a[1h:5m] offset 1d) > bool 2 ^ -1 ^ 2", {"a"}),
        ('{__name__="a", job!~"x.*",} unless b', {"a", "b"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)") * on (dst) group_left (z) c', {"a", "c"}),
        ("histogram_quantile(0.99, sum without (pod) (rate(a_bucket[1m])))", {"a_bucket"}),
        ("clamp_min(sum(a), 1e-9) - time()", {"a"}),
    ],
)
def test_promql_parser_accepts_valid_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# --------------------------------------------------------------------------- logs


def _parsed_operator_args(objects: tuple[dict[str, Any], ...]) -> argparse.Namespace:
    """The chart's container args as `smallfleet run` parses them."""
    (deployment,) = of_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "run"
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(args[1:])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_format_value_reaches_the_operator_flag(fmt: str) -> None:
    args = _parsed_operator_args(rendered("--set", f"logFormat={fmt}"))
    assert args.log_format == fmt
    assert run_command.log_format(args, env={run_command.LOG_FORMAT_ENV: "text"}) == fmt


def test_log_format_defaults_to_text_and_is_refused_when_unknown() -> None:
    assert _parsed_operator_args(rendered()).log_format == "text"
    proc = helm(
        "template", "smallfleet", str(CHART), f"--kube-version={kube_version()}",
        "--set", "logFormat=xml", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "logformat" in proc.stderr.lower()


def test_log_format_without_the_flag_comes_from_the_environment() -> None:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    bare = parser.parse_args([])
    assert run_command.log_format(bare, env={}) == "text"
    assert run_command.log_format(bare, env={run_command.LOG_FORMAT_ENV: "json"}) == "json"
    with pytest.raises(SystemExit, match="SMALLFLEET_LOG_FORMAT='jsn'"):
        run_command.log_format(bare, env={run_command.LOG_FORMAT_ENV: "jsn"})
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "yaml"])


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_logging_writes_the_chosen_format(fmt: str, root_logging: logging.Logger) -> None:
    run_command.configure_logging(fmt, verbose=False)
    handler = root_logging.handlers[-1]
    stream = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("smallfleet.test").info("model %s is Ready", "minilm")
    line = stream.getvalue().strip().splitlines()[-1]
    if fmt == "json":
        record = json.loads(line)
        assert record["message"] == "model minilm is Ready"
        assert record["severity"] == "info"
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        assert line.endswith("model minilm is Ready") and "[INFO" in line


# --------------------------------------------------------------------------- subchart


def test_values_accept_a_global_key_so_the_chart_can_be_a_subchart(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"global": {"foo": "bar"}}))
    proc = helm(
        "template", "smallfleet", str(CHART), f"--kube-version={kube_version()}", "-f", str(values),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kind: Deployment" in proc.stdout
    # The schema stays strict everywhere else.
    values.write_text(yaml.safe_dump({"global": {"foo": "bar"}, "globals": {}}))
    proc = helm(
        "template", "smallfleet", str(CHART), f"--kube-version={kube_version()}", "-f", str(values),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
