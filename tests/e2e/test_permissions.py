"""Least privilege, proven live: the API server's audit log of the operator under the chart's RBAC.

This module starts its own cluster (named after the e2e cluster, plus
`-audit`) whose kube-apiserver writes an audit log of every request a
ServiceAccount makes. The operator runs as the chart's ServiceAccount through
a SmallModel's and a ModelPipeline's create, spec update and delete, in the
two shapes people install: every namespace (one ClusterRole), and one
namespace with leader election (a Role plus kopf peering). Then the log must
show no request refused (403), and every request must be one that
smallfleet.kube.permissions lists for that shape, which tests/unit/
test_permissions.py proves is exactly what the chart grants.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from hack.cluster import KWOKCTL_CONFIG, REPO, down, exists, up
from tests.e2e.cluster import (
    ChartRelease,
    Cluster,
    OperatorProcess,
    cluster_name,
    install_chart,
    install_crds,
    start_operator,
    wait_ready,
)

from smallfleet.kube.permissions import audit_triple, needed, triples

SA_GROUP: Final = "system:serviceaccounts"


@dataclass(frozen=True)
class Audited:
    cluster: Cluster
    log: Path
    work: Path


def audited_config(work: Path) -> Path:
    """hack/kwok/kwokctl.yaml plus an audit log of every ServiceAccount's requests."""
    policy = work / "audit-policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "userGroups": [SA_GROUP]}, {"level": "None"}],
            }
        )
    )
    config = yaml.safe_load(KWOKCTL_CONFIG.read_text())
    apiserver = next(c for c in config["componentsPatches"] if c["name"] == "kube-apiserver")
    apiserver["extraArgs"] += [
        {"key": "audit-policy-file", "value": str(policy)},
        {"key": "audit-log-path", "value": str(work / "audit.log")},
        {"key": "audit-log-maxsize", "value": "0"},
    ]
    path = work / "kwokctl.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    name = f"{cluster_name('smallfleet-e2e')}-audit"
    work = tmp_path_factory.mktemp("audited")
    if exists(name):
        down(name)  # a leftover would lack this run's audit log
    try:
        cluster = up(name, work / "kubeconfig", config=audited_config(work))
        install_crds(cluster)
        yield Audited(cluster, work / "audit.log", work)
    finally:
        if os.environ.get("SMALLFLEET_KEEP_CLUSTER") != "1":
            down(name)


def requests_of(log: Path, user: str) -> list[dict[str, Any]]:
    """Complete requests (and started watches) of one user, resource requests only."""
    out = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("user", {}).get("username") != user or not event.get("objectRef"):
            continue
        done = (
            ("ResponseStarted",) if event.get("verb") == "watch" else ("ResponseComplete", "Panic")
        )
        if event.get("stage") in done:
            out.append(event)
    return out


def used(event: dict[str, Any]) -> tuple[str, str, str]:
    ref = event["objectRef"]
    return audit_triple(
        event["verb"], ref.get("apiGroup", ""), ref["resource"], ref.get("subresource", "")
    )


def examples(namespace: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The CPU classifier and the RAG pipeline (three SmallModels, one ModelPipeline)."""
    docs = [yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())]
    docs += [
        d for d in yaml.safe_load_all((REPO / "examples" / "rag-pipeline.yaml").read_text()) if d
    ]
    for d in docs:
        d["metadata"]["namespace"] = namespace
    return [d for d in docs if d["kind"] == "SmallModel"], [
        d for d in docs if d["kind"] == "ModelPipeline"
    ]


def wait_observed(cluster: Cluster, kind: str, name: str, namespace: str) -> None:
    def observed() -> bool:
        obj = cluster.kubectl_json("get", kind, name, "-n", namespace)
        return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]

    cluster.wait_for(observed, 120, f"{kind} {namespace}/{name} never observed its new generation")


def exercise(cluster: Cluster, namespace: str) -> None:
    """Create, update (spec) and delete a SmallModel and a ModelPipeline, waiting on each step."""
    models, pipelines = examples(namespace)
    cluster.apply_yaml(yaml.safe_dump_all(models + pipelines))
    for doc in models + pipelines:
        wait_ready(cluster, doc["kind"].lower(), doc["metadata"]["name"], namespace, timeout=180)
    for doc in models[:1] + pipelines:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        patch = {"spec": {"scaling": {"maxReplicas": 5}}}
        cluster.kubectl(
            "patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch)
        )
        wait_observed(cluster, kind, name, namespace)
    for doc in pipelines + models:
        cluster.kubectl(
            "delete",
            doc["kind"].lower(),
            doc["metadata"]["name"],
            "-n",
            namespace,
            "--timeout=120s",
        )
    cluster.wait_for(
        lambda: (
            not cluster.kubectl_json(
                "get",
                "deployments",
                "-n",
                namespace,
                "-l",
                "app.kubernetes.io/managed-by=smallfleet",
            )["items"]
        ),
        120,
        "children still there after their owners were deleted",
    )


def check_audit(
    audit: Audited,
    chart: ChartRelease,
    operator: OperatorProcess,
    *,
    all_namespaces: bool,
    peering: bool,
) -> None:
    user = f"system:serviceaccount:{chart.namespace}:{chart.service_account}"
    events = requests_of(audit.log, user)
    refused = sorted(
        {
            (used(e), e["requestURI"])
            for e in events
            if e.get("responseStatus", {}).get("code") == 403
        }
    )
    assert refused == [], (
        f"the API server refused the operator: {refused}\n--- operator log\n{operator.log()}"
    )
    asked = {used(e) for e in events}
    allowed = triples(needed(all_namespaces=all_namespaces, peering=peering))
    assert asked - allowed == set(), (
        f"requests outside smallfleet.kube.permissions: {sorted(asked - allowed)}"
    )
    # Not vacuous: the log holds the operator's status writes, applies, watches and events.
    for expected in (
        ("serving.smallfleet.io", "smallmodels/status", "patch"),
        ("serving.smallfleet.io", "modelpipelines/status", "patch"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "watch"),
        ("", "pods", "watch"),
        ("", "nodes", "list"),
    ):
        assert expected in asked, f"{expected} missing from the audit log: {sorted(asked)}"
    if peering:
        assert ("kopf.dev", "kopfpeerings", "patch") in asked
    text = operator.log().lower()
    assert "forbidden" not in text and "not enough permissions" not in text, operator.log()
    print(f"\nunused in this run: {sorted(allowed - asked)}")


def test_every_namespace_with_only_the_cluster_role(audited: Audited, tmp_path: Path) -> None:
    cluster = audited.cluster
    chart = install_chart(cluster)
    namespace = "audit-all"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(cluster, chart, tmp_path / "op", all_namespaces=True)
    try:
        exercise(cluster, namespace)
    finally:
        operator.stop()
    check_audit(audited, chart, operator, all_namespaces=True, peering=False)


def test_one_namespace_with_leader_election_and_only_a_role(
    audited: Audited, tmp_path: Path
) -> None:
    cluster = audited.cluster
    namespace = "audit-one"
    chart = install_chart(
        cluster,
        release="sf-one",
        namespace=namespace,
        values=("--set", f"watchNamespace={namespace}", "--set", "replicas=2"),
    )
    operator = start_operator(
        cluster, chart, tmp_path / "op", namespace=namespace, extra_args=["--peering", "smallfleet"]
    )
    try:
        exercise(cluster, namespace)
    finally:
        operator.stop()
    check_audit(audited, chart, operator, all_namespaces=False, peering=True)


def test_several_namespaces_each_with_a_role_and_no_writes_elsewhere(
    audited: Audited, tmp_path: Path
) -> None:
    """watchNamespaces: one Role per listed namespace; a model outside them is never touched."""
    cluster = audited.cluster
    watched, outside = ("multi-a", "multi-b"), "multi-outside"
    for ns in (*watched, outside):
        cluster.kubectl("create", "namespace", ns)
    chart = install_chart(
        cluster,
        release="sf-multi",
        namespace="multi-ops",
        values=("--set", f"watchNamespaces={{{','.join(watched)}}}"),
    )
    user = f"system:serviceaccount:{chart.namespace}:{chart.service_account}"
    for ns in (*watched, outside):
        can = cluster.kubectl(
            "auth", "can-i", "create", "configmaps", "-n", ns, "--as", user, check=False
        )
        assert can.stdout.strip() == ("yes" if ns in watched else "no"), (
            ns,
            can.stdout,
            can.stderr,
        )
    operator = start_operator(
        cluster,
        chart,
        tmp_path / "op",
        namespace=watched[0],
        extra_args=["--namespace", watched[1]],
    )
    try:
        model = examples(watched[1])[0][0]
        stray = json.loads(json.dumps(model))
        stray["metadata"]["namespace"] = outside
        cluster.apply_yaml(yaml.safe_dump_all([model, stray]))
        wait_ready(cluster, "smallmodel", model["metadata"]["name"], watched[1], timeout=180)
        ignored = cluster.kubectl_json(
            "get", "smallmodel", model["metadata"]["name"], "-n", outside
        )
        assert not (ignored.get("status") or {}).get("conditions"), (
            f"a model outside the watched namespaces got status: {ignored}"
        )
    finally:
        operator.stop()
    events = requests_of(audited.log, user)
    refused = sorted(
        {e["requestURI"] for e in events if e.get("responseStatus", {}).get("code") == 403}
    )
    assert refused == [], f"the API server refused the operator: {refused}\n{operator.log()}"
    touched = {e["objectRef"].get("namespace") for e in events} - {None, ""}
    assert touched == set(watched), f"requests in namespaces {sorted(touched)}"
    asked = {used(e) for e in events}
    allowed = triples(needed(all_namespaces=False, peering=False))
    assert asked - allowed == set(), f"requests outside the table: {sorted(asked - allowed)}"
    assert ("serving.smallfleet.io", "smallmodels/status", "patch") in asked
