"""`helm install` of the chart into the real cluster, in the shapes people install it.

Rendering is checked offline (tests/unit/test_chart_render.py); this proves the
API server accepts every object, that the CRDs the chart carries are served,
and that the leader-election variant (kopf peering CRDs plus the peering
object created by a hook) installs, upgrades and uninstalls cleanly.
"""

from __future__ import annotations

import ipaddress
import json

import yaml
from hack.cluster import REPO
from tests.e2e.cluster import CHART, CRDS, ChartRelease, Cluster, OperatorFactory, wait_ready


def test_chart_installs_and_its_objects_exist(
    cluster: Cluster, chart_installed: ChartRelease
) -> None:
    ns = chart_installed.namespace
    status = cluster.helm("status", chart_installed.release, "-n", ns, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", "")
    sa = cluster.kubectl_json("get", "serviceaccount", chart_installed.service_account, "-n", ns)
    assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    deployment = cluster.kubectl_json("get", "deployment", chart_installed.deployment, "-n", ns)
    assert deployment["spec"]["replicas"] == 0
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][0] == "run"
    for kind in ("clusterrole", "clusterrolebinding"):
        cluster.kubectl("get", kind, chart_installed.deployment)
    service = cluster.kubectl_json(
        "get", "service", f"{chart_installed.deployment}-metrics", "-n", ns
    )
    assert service["spec"]["ports"][0]["port"] == 8080
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network("127.0.0.0/8")
    resources = cluster.kubectl(
        "api-resources", "--api-group=serving.smallfleet.io", "-o", "name"
    ).stdout
    # Every CRD of crds/ is served (the chart renders each; the harness applies them).
    assert set(resources.split()) == {p.name.removesuffix(".yaml") for p in CRDS.glob("*.yaml")}
    assert {"smallmodels.serving.smallfleet.io", "modelpipelines.serving.smallfleet.io"} <= set(
        resources.split()
    )
    short = cluster.kubectl("get", "sm,mp", "-A").returncode
    assert short == 0


def test_leader_election_variant_installs_upgrades_and_uninstalls(
    cluster: Cluster, namespace: str
) -> None:
    release, second = "sf-peering", f"{namespace}-2"
    # The CRDs belong to the harness (install_crds): these releases leave them alone.
    args = (
        "--namespace", namespace, "--set", "replicas=2", "--set", f"watchNamespace={namespace}",
        "--set", "crds.enabled=false",
    )  # fmt: skip
    cluster.helm("install", release, str(CHART), *args, "--wait", "--timeout=2m")
    try:
        for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
            cluster.kubectl("get", "crd", crd)
        peering = cluster.kubectl_json("get", "kopfpeering", "smallfleet", "-n", namespace)
        assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        deployment = cluster.kubectl_json(
            "get", "deployment", f"{release}-smallfleet", "-n", namespace
        )
        args_run = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--peering=smallfleet" in args_run and f"--namespace={namespace}" in args_run
        assert deployment["status"].get("readyReplicas") == 2  # KWOK runs the pods
        role = cluster.kubectl_json("get", "role", f"{release}-smallfleet", "-n", namespace)
        assert any("kopfpeerings" in rule["resources"] for rule in role["rules"])
        cluster.helm(
            "upgrade", release, str(CHART), *args, "--set", "carbon.refreshSeconds=120", "--wait"
        )
        assert cluster.kubectl_json("get", "kopfpeering", "smallfleet", "-n", namespace)
        # A second release finds kopf's CRDs owned by the first and leaves them alone.
        cluster.kubectl("create", "namespace", second)
        cluster.helm(
            "install", "sf-second", str(CHART), "--namespace", second, "--set", "replicas=2",
            "--set", f"watchNamespace={second}", "--set", "crds.enabled=false",
            "--wait", "--timeout=2m",
        )  # fmt: skip
        assert cluster.kubectl_json("get", "kopfpeering", "smallfleet", "-n", second)
    finally:
        cluster.helm("uninstall", "sf-second", "--namespace", second, "--wait", check=False)
        cluster.kubectl("delete", "namespace", second, "--wait=false", check=False)
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait")
    assert (
        cluster.kubectl("get", "clusterrole", f"{release}-smallfleet", check=False).returncode != 0
    )
    # kopf's CRDs stay: other kopf operators may keep their peering objects in them.
    cluster.kubectl("get", "crd", "kopfpeerings.kopf.dev")


def test_operator_serves_a_model_with_only_the_charts_rights(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    """The chart's RBAC is enough: the operator, as the chart's ServiceAccount, makes a model Ready."""
    operator = operator_process(namespace)
    assert "system:serviceaccount:" in operator.kubeconfig.read_text()
    assert operator.env["SMALLFLEET_TRITON_IMAGE"]  # the chart's environment, not the shell's
    model = yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())
    model["metadata"]["namespace"] = namespace
    cluster.apply_yaml(json.dumps(model) + "\n")
    wait_ready(cluster, "smallmodel", model["metadata"]["name"], namespace, timeout=120)
    assert "forbidden" not in operator.log().lower(), operator.log()
    assert operator.metrics()
