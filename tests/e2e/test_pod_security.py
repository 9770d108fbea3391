"""The `restricted` Pod Security Standard: the operator's pod and every pod it renders are admitted.

Pod Security admission enforces on pods only (on workloads it merely warns),
so each Deployment's pod template is submitted as a Pod, with a server-side
dry run, into a namespace labelled `pod-security.kubernetes.io/enforce:
restricted`; the Deployments themselves go in with `warn: restricted` and
must draw no warning. A pod that breaks the standard is refused in the same
namespace, so a pass means the API server really judged them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, Final

import pytest
import yaml
from hack.check_chart import VALUE_SETS, render
from hack.cluster import REPO
from tests.e2e.cluster import Cluster

from smallfleet.core.render.cli import render_documents
from smallfleet.settings import Settings

LEVEL: Final = "restricted"
EXAMPLES: Final = (
    "cpu-classifier.yaml",  # CPU, python backend
    "minilm-embedder.yaml",  # GPU, onnx
    "rag-pipeline.yaml",  # three SmallModels and a ModelPipeline (an ensemble)
    "scaling-hpa.yaml",
    "scaling-keda.yaml",
)


@pytest.fixture
def restricted(cluster: Cluster, namespace: str) -> Iterator[str]:
    labels = [f"pod-security.kubernetes.io/{mode}={LEVEL}" for mode in ("enforce", "warn")]
    cluster.kubectl("label", "namespace", namespace, *labels, "--overwrite")
    yield namespace


def dry_run(cluster: Cluster, obj: dict[str, Any]) -> tuple[int, str]:
    proc = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    return proc.returncode, proc.stderr


def as_pod(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment['metadata']['name']}-psa",
            "namespace": namespace,
            "labels": template["metadata"].get("labels") or {},
        },
        "spec": template["spec"],
    }


def assert_admitted(cluster: Cluster, deployment: dict[str, Any], namespace: str) -> None:
    deployment = json.loads(json.dumps(deployment))
    deployment["metadata"]["namespace"] = namespace
    deployment["metadata"].pop("ownerReferences", None)
    code, err = dry_run(cluster, as_pod(deployment, namespace))
    assert code == 0, f"pod of {deployment['metadata']['name']} refused under {LEVEL}: {err}"
    code, err = dry_run(cluster, deployment)
    assert code == 0, err
    assert "PodSecurity" not in err, f"{deployment['metadata']['name']}: {err}"


def test_a_pod_that_breaks_the_standard_is_refused(cluster: Cluster, restricted: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose", "namespace": restricted},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    code, err = dry_run(cluster, pod)
    assert code != 0 and "violates PodSecurity" in err and LEVEL in err, err


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_the_charts_operator_pod_is_restricted(
    cluster: Cluster, restricted: str, value_set: str
) -> None:
    deployments = [o for o in render(*VALUE_SETS[value_set]) if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    account = deployments[0]["spec"]["template"]["spec"]["serviceAccountName"]
    cluster.kubectl("create", "serviceaccount", account, "-n", restricted)
    assert_admitted(cluster, deployments[0], restricted)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_rendered_pod_is_restricted(cluster: Cluster, restricted: str, example: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / example).read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = restricted
    err = io.StringIO()
    children, ok = render_documents(docs, Settings(), region="eu-north-1", err=err)
    assert ok, err.getvalue()
    deployments = [c for c in children if c["kind"] == "Deployment"]
    owners = {d["metadata"]["labels"]["serving.smallfleet.io/owner-kind"] for d in deployments}
    if example == "rag-pipeline.yaml":
        assert owners == {"SmallModel", "ModelPipeline"}
    assert deployments, f"{example} rendered no Deployment"
    for deployment in deployments:
        assert_admitted(cluster, deployment, restricted)
