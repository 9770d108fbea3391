"""The chart as a platform team runs it: `helm upgrade` upgrades the CRDs, monitoring is accepted.

A CRD in a chart's crds/ directory is installed once and never upgraded, so
an upgraded operator would read fields the API server still prunes. The chart
renders its CRDs as templates instead; this installs a chart whose SmallModel
CRD lacks a field, upgrades to the current chart and proves the field is then
accepted and stored, and that uninstalling keeps the CRDs and the models.

The monitoring objects (ServiceMonitor, PodMonitor, the dashboard ConfigMap)
are applied to a real API server serving the Prometheus Operator's own CRDs
(fetched from its Go module by hack/build-bins.sh), with strict field
validation, so a misspelt or misplaced field fails here rather than in a
customer's cluster.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from hack.cluster import REPO, install_prometheus_crds
from tests.e2e.cluster import CHART, Cluster, install_crds

SMALLMODELS: Final = "smallmodels.serving.smallfleet.io"
# An optional field the old chart's CRD lacks: spec.card.limitations.
FIELD: Final = "limitations"
LIMITATIONS: Final = "English only; not for medical or legal decisions."
MONITORING: Final = (
    "--set", "monitoring.serviceMonitor.enabled=true",
    "--set", "monitoring.serviceMonitor.labels.release=prometheus",
    "--set", "monitoring.podMonitor.enabled=true",
    "--set", "monitoring.dashboard.enabled=true",
    "--set", "logFormat=json",
)  # fmt: skip


def _card_properties(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    properties: dict[str, Any] = spec["properties"]["card"]["properties"]
    return properties


def old_chart(directory: Path) -> Path:
    """The chart as an older release shipped it: its SmallModel CRD without card.limitations."""
    chart = directory / "smallfleet-old"
    shutil.copytree(CHART, chart)
    path = chart / "files" / "crds" / f"{SMALLMODELS}.yaml"
    crd = yaml.safe_load(path.read_text())
    del _card_properties(crd)[FIELD]
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.99"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return chart


@pytest.fixture
def crds_restored(cluster: Cluster, crds_installed: list[str]) -> Iterator[None]:
    """Whatever happens, the shared cluster serves crds/ again afterwards."""
    yield
    install_crds(cluster)


def _model(namespace: str) -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())
    model["metadata"] = {"name": f"card-{secrets.token_hex(3)}", "namespace": namespace}
    model["spec"]["card"][FIELD] = LIMITATIONS
    return model


def test_helm_upgrade_upgrades_the_crds_and_uninstall_keeps_them(
    cluster: Cluster, crds_restored: None, namespace: str, tmp_path: Path
) -> None:
    release = f"sf-crds-{secrets.token_hex(3)}"
    common = (
        "--namespace", namespace, "--set", "replicas=0", "--set", f"watchNamespace={namespace}",
    )  # fmt: skip
    # The harness applied the CRDs with `kubectl apply --server-side`; the release adopts them
    # (ownership and the fields kubectl managed), as the chart README says to.
    cluster.helm(
        "install", release, str(old_chart(tmp_path)), *common, "--take-ownership",
        "--force-conflicts", "--wait", "--timeout=2m",
    )  # fmt: skip
    model = _model(namespace)
    name = model["metadata"]["name"]
    try:
        crd = cluster.kubectl_json("get", "crd", SMALLMODELS)
        assert FIELD not in _card_properties(crd)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        # The old API does not know the field: strict field validation refuses it.
        refused = cluster.kubectl(
            "apply", "--server-side", "--field-manager=e2e", "-f", "-",
            input=json.dumps(model), check=False,
        )  # fmt: skip
        assert refused.returncode != 0, "the old CRD accepted a field it does not define"
        assert FIELD in refused.stderr, refused.stderr

        cluster.helm("upgrade", release, str(CHART), *common, "--wait", "--timeout=2m")

        crd = cluster.kubectl_json("get", "crd", SMALLMODELS)
        assert FIELD in _card_properties(crd)
        chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        assert crd["metadata"]["labels"]["helm.sh/chart"] == f"smallfleet-{chart_version}"
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=e2e", "-f", "-", input=json.dumps(model)
        )
        stored = cluster.kubectl_json("get", "smallmodel", name, "-n", namespace)
        assert stored["spec"]["card"][FIELD] == LIMITATIONS
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
    # helm.sh/resource-policy: keep: the CRDs, and so every model, outlive the release.
    assert FIELD in _card_properties(cluster.kubectl_json("get", "crd", SMALLMODELS))
    stored = cluster.kubectl_json("get", "smallmodel", name, "-n", namespace)
    assert stored["spec"]["card"][FIELD] == LIMITATIONS


def test_monitoring_objects_are_accepted_by_the_api_server(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    install_prometheus_crds(cluster)
    release = f"sf-mon-{secrets.token_hex(3)}"
    values = (
        "--namespace", namespace, "--set", "replicas=0", "--set", f"watchNamespace={namespace}",
        "--set", "crds.enabled=false", *MONITORING,
    )  # fmt: skip
    rendered = cluster.helm("template", release, str(CHART), *values).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"ServiceMonitor", "PodMonitor", "ConfigMap"} <= kinds
    # Strict field validation: an unknown or misplaced field is an error, not pruned.
    cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "--server-side",
        "--field-manager=e2e", "-f", "-", input=rendered,
    )  # fmt: skip

    # The check has teeth: the same PodMonitor with a bad interval is refused.
    (pod_monitor,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PodMonitor"]
    broken = copy.deepcopy(pod_monitor)
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "soon"
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=json.dumps(broken), check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "interval" in proc.stderr, proc.stderr

    # A real install stores them as rendered: nothing pruned.
    cluster.helm("install", release, str(CHART), *values, "--wait", "--timeout=2m")
    try:
        stored = cluster.kubectl_json(
            "get", "podmonitor", pod_monitor["metadata"]["name"], "-n", namespace
        )
        assert stored["spec"] == pod_monitor["spec"]
        (service_monitor,) = cluster.kubectl_json("get", "servicemonitors", "-n", namespace)[
            "items"
        ]
        assert service_monitor["metadata"]["labels"]["release"] == "prometheus"
        assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
        (dashboard,) = cluster.kubectl_json(
            "get", "configmaps", "-n", namespace, "-l", "grafana_dashboard=1"
        )["items"]
        assert json.loads(dashboard["data"]["smallfleet.json"])["uid"] == "smallfleet"
        deployment = cluster.kubectl_json("get", "deployments", "-n", namespace)["items"][0]
        assert (
            "--log-format=json" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        )
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
