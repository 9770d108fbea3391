"""Trust mode at admission: the chart's ValidatingAdmissionPolicy against the real API server.

A namespace labelled `serving.smallfleet.io/trust: enforced` takes only
SmallModels with a digest and a model card (owner, license), and, with the
annotation `serving.smallfleet.io/allowed-artifact-hosts`, only artifacts from
those hosts. Each refusal must say what to add. Namespaces without the label,
and writes that leave the spec alone (kopf's annotations and finalizers), pass.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any, Final

import yaml
from hack.cluster import REPO
from tests.e2e.cluster import ChartRelease, Cluster

TRUST: Final = "serving.smallfleet.io/trust"
HOSTS: Final = "serving.smallfleet.io/allowed-artifact-hosts"
ALLOWED: Final = "models.example.com, *.trusted.example"


def model(namespace: str, name: str = "trusted", **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "cpu-classifier.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    for path, value in spec.items():
        *parents, leaf = path.split("__")
        node = doc["spec"]
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return doc


def create(
    cluster: Cluster, doc: dict[str, Any], *, dry_run: bool = True
) -> subprocess.CompletedProcess[str]:
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return cluster.kubectl(*args, input=json.dumps(doc), check=False)


def refused(cluster: Cluster, doc: dict[str, Any]) -> str:
    proc = create(cluster, doc)
    assert proc.returncode != 0, f"admitted, expected a refusal: {json.dumps(doc['spec'])[:300]}"
    return proc.stderr


def test_policy_and_binding_ship_with_the_chart(
    cluster: Cluster, chart_installed: ChartRelease
) -> None:
    name = f"{chart_installed.deployment}-trust"
    policy = cluster.kubectl_json("get", "validatingadmissionpolicy", name)
    binding = cluster.kubectl_json("get", "validatingadmissionpolicybinding", name)
    assert binding["spec"]["policyName"] == name
    assert binding["spec"]["validationActions"] == ["Deny"]
    # The API server type-checked every expression against the CRD's schema.
    warnings = (policy.get("status") or {}).get("typeChecking", {}).get("expressionWarnings") or []
    assert warnings == [], warnings


def test_an_enforced_namespace_admits_only_trusted_models(
    cluster: Cluster, chart_installed: ChartRelease, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, f"{TRUST}=enforced")
    cluster.kubectl("annotate", "namespace", namespace, f"{HOSTS}={ALLOWED}")

    # The binding takes effect within a moment of the label: wait for the first refusal.
    evil = model(namespace, model__uri="https://evil.example.net/m.tar.gz")
    cluster.wait_for(
        lambda: create(cluster, evil).returncode != 0,
        30,
        "the trust policy never refused an artifact from a host the namespace does not allow",
    )
    message = refused(cluster, evil)
    assert (
        f"namespace {namespace} takes artifacts only from models.example.com, *.trusted.example"
        in message
    )
    assert "spec.model.uri comes from evil.example.net" in message
    assert "add this host to the annotation" in message

    # Allowed: the exact host, a subdomain of a wildcard entry, case and port aside.
    for uri in (
        "https://models.example.com/a.tar.gz",
        "https://cdn.trusted.example/b.tar.gz",
        "https://MODELS.example.com:8443/c.tar.gz",
    ):
        proc = create(cluster, model(namespace, model__uri=uri))
        assert proc.returncode == 0, f"{uri}: {proc.stderr}"
    # A wildcard matches subdomains only, and s3:// URIs are judged by their bucket.
    assert "comes from trusted.example" in refused(
        cluster, model(namespace, model__uri="https://trusted.example/x")
    )
    assert "comes from my-bucket" in refused(
        cluster, model(namespace, model__uri="s3://my-bucket/m.onnx")
    )

    # A model card with a blank owner or license passes the CRD schema but not trust mode.
    for field in ("owner", "license"):
        message = refused(cluster, model(namespace, **{f"card__{field}": "  "}))
        assert (
            "enforces trust" in message
            and "add a model card, spec.card with a non-blank owner" in message
        )

    # Without a digest the model is refused too (by the CRD schema first, which already asks
    # for one everywhere; the policy's own rule stands if that ever relaxes).
    assert "spec.model.digest" in refused(cluster, model(namespace, model__digest=None))


def test_an_empty_host_list_allows_no_host(
    cluster: Cluster, chart_installed: ChartRelease, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, f"{TRUST}=enforced")
    cluster.kubectl("annotate", "namespace", namespace, f"{HOSTS}=")
    doc = model(namespace)
    cluster.wait_for(
        lambda: create(cluster, doc).returncode != 0, 30, "an empty host list admitted a model"
    )
    assert "takes artifacts only from no host" in refused(cluster, doc)


def test_namespaces_without_the_label_are_untouched(
    cluster: Cluster, chart_installed: ChartRelease, namespace: str
) -> None:
    cluster.kubectl("annotate", "namespace", namespace, f"{HOSTS}=models.example.com")
    cluster.kubectl(
        "label", "namespace", namespace, f"{TRUST}=audit"
    )  # any other value: not enforced
    for doc in (
        model(namespace, model__uri="https://evil.example.net/m.tar.gz"),
        model(namespace, card__owner=" "),
    ):
        proc = create(cluster, doc)
        assert proc.returncode == 0, proc.stderr


def test_only_spec_changes_are_judged_once_a_model_exists(
    cluster: Cluster, chart_installed: ChartRelease, namespace: str
) -> None:
    """A namespace that tightens its hosts later does not freeze its models' metadata."""
    doc = model(namespace, model__uri="https://legacy.example.org/m.tar.gz")
    proc = create(cluster, doc, dry_run=False)
    assert proc.returncode == 0, proc.stderr
    cluster.kubectl("label", "namespace", namespace, f"{TRUST}=enforced")
    cluster.kubectl("annotate", "namespace", namespace, f"{HOSTS}=models.example.com")
    probe = copy.deepcopy(doc)
    probe["metadata"]["name"] = "probe"
    cluster.wait_for(
        lambda: create(cluster, probe).returncode != 0, 30, "the policy never took effect"
    )

    # Labels, annotations and finalizers (what kopf writes) still go through.
    cluster.kubectl("label", "smallmodel", doc["metadata"]["name"], "-n", namespace, "team=search")
    cluster.kubectl(
        "patch", "smallmodel", doc["metadata"]["name"], "-n", namespace, "--type=merge",
        "-p", json.dumps({"metadata": {"finalizers": ["example.com/hold"]}}),
    )  # fmt: skip
    cluster.kubectl(
        "patch", "smallmodel", doc["metadata"]["name"], "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
    )  # fmt: skip
    # A spec change is judged, and told what to fix.
    changed = cluster.kubectl(
        "patch", "smallmodel", doc["metadata"]["name"], "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"card": {"description": "new words"}}}), check=False,
    )  # fmt: skip
    assert changed.returncode != 0
    assert "spec.model.uri comes from legacy.example.org" in changed.stderr
