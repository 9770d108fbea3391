"""The HPA and KEDA objects smallfleet renders are accepted, field for field, by a real API server.

KEDA's CRDs come from its Go module (`hack/build-bins.sh keda`), at the
version pinned in hack/versions.env. Strict field validation makes the API
server refuse any field its schema does not know, instead of silently
pruning it; reading the objects back proves nothing was dropped.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.cluster import CACHE, HACK
from tests.e2e.cluster import Cluster

from smallfleet.core.render import common_labels, plan_for_model, render_children
from smallfleet.core.render.autoscalers import autoscaler_manifests
from smallfleet.core.spec import ScalingMetric, parse_small_model
from smallfleet.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
METRICS: tuple[ScalingMetric, ...] = (
    "queueTime",
    "pendingRequests",
    "inferencesPerSecond",
    "gpuUtilization",
)
BUILD_WAIT_S = 1800.0


def _keda_crds(cluster: Cluster) -> Path:
    """KEDA's CRD directory, fetched by hack/build-bins.sh when missing (never two builds at once)."""
    crds = cluster.bin_dir / "crds" / "keda"
    if sorted(crds.glob("*.yaml")):
        return crds
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "build-bins.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deadline = time.monotonic() + BUILD_WAIT_S
        while not sorted(crds.glob("*.yaml")) and time.monotonic() < deadline:
            running = subprocess.run(
                ["pgrep", "-f", "build-bins.sh"], capture_output=True, text=True, check=False
            ).stdout.split()
            if not running:
                break
            time.sleep(5)
        if not sorted(crds.glob("*.yaml")):
            proc = subprocess.run(
                [str(HACK / "build-bins.sh"), "keda"], capture_output=True, text=True, check=False
            )
            assert proc.returncode == 0, f"hack/build-bins.sh keda failed:\n{proc.stderr[-3000:]}"
    found = sorted(crds.glob("*.yaml"))
    assert found, f"no KEDA CRDs in {crds} after hack/build-bins.sh keda"
    return crds


@pytest.fixture(scope="module")
def keda_installed(cluster: Cluster) -> None:
    cluster.apply_yaml(_keda_crds(cluster))

    def established() -> bool:
        crd = cluster.kubectl_json("get", "crd", "scaledobjects.keda.sh")
        conditions = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    cluster.wait_for(established, 60, "KEDA's ScaledObject CRD never became Established")


def _scalers(example: str, namespace: str) -> list[dict[str, Any]]:
    obj = yaml.safe_load((EXAMPLES / example).read_text())
    obj["metadata"]["namespace"] = namespace
    plan = plan_for_model(parse_small_model(obj), Settings())
    # No owner: an ownerReference to an object that does not exist would let the
    # garbage collector delete these before the test reads them back.
    owner = None
    out: list[dict[str, Any]] = []
    for metric in METRICS:
        scaling = replace(plan.scaling, metric=metric)
        out += autoscaler_manifests(
            plan,
            scaling,
            [f"{plan.name}-{metric.lower()}-eu-west-1"],
            common_labels(plan),
            owner,
            prometheus_url="http://prometheus-operated.monitoring.svc:9090",
        )
    return out


@pytest.mark.parametrize(
    ("example", "kind"),
    [("scaling-hpa.yaml", "HorizontalPodAutoscaler"), ("scaling-keda.yaml", "ScaledObject")],
)
def test_scalers_are_accepted_as_rendered(
    cluster: Cluster, keda_installed: None, namespace: str, example: str, kind: str
) -> None:
    scalers = _scalers(example, namespace)
    assert [s["kind"] for s in scalers] == [kind] * len(METRICS)
    text = yaml.safe_dump_all(scalers)
    dry = cluster.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-o", "name", "-f", "-", input=text
    )
    assert len(dry.stdout.split()) == len(METRICS), dry.stdout
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=smallfleet",
        "--validate=strict",
        "-f",
        "-",
        input=text,
    )
    for rendered in scalers:
        resource = "hpa" if kind == "HorizontalPodAutoscaler" else "scaledobjects.keda.sh"
        stored = cluster.kubectl_json(
            "get", resource, rendered["metadata"]["name"], "-n", namespace
        )
        assert stored["spec"] == rendered["spec"], "the API server changed or pruned the spec"
        assert stored["metadata"]["labels"] == rendered["metadata"]["labels"]


def test_invalid_scaler_is_refused(cluster: Cluster, keda_installed: None, namespace: str) -> None:
    """The check above has teeth: an unknown field is an error, not silently pruned."""
    [so, *_] = _scalers("scaling-keda.yaml", namespace)
    so["spec"]["triggers"][0]["metadatum"] = so["spec"]["triggers"][0].pop("metadata")
    proc = cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=yaml.safe_dump(so),
        check=False,
    )
    assert proc.returncode != 0
    assert "metadatum" in proc.stderr


@pytest.mark.parametrize("example", ["scaling-hpa.yaml", "scaling-keda.yaml"])
def test_external_scaler_owns_replicas(example: str) -> None:
    """In hpa and keda modes the operator's Deployments carry no replica count."""
    plan = plan_for_model(
        parse_small_model(yaml.safe_load((EXAMPLES / example).read_text())), Settings()
    )
    children = render_children(plan, owner=None, regions={"eu-west-1": 2})
    deployments = [c for c in children if c["kind"] == "Deployment"]
    assert deployments
    assert all("replicas" not in d["spec"] for d in deployments)
