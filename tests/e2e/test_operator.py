"""The operator against a real control plane: what model owners and GitOps tools rely on.

Each test starts `smallfleet run` as a local process under the chart's
ServiceAccount (so RBAC is the chart's), watching a fresh namespace. The
real kube-scheduler places the Triton pods on KWOK's fake GPU nodes, the
real garbage collector removes children, and readiness is read the way
people read it: `kubectl wait --for=condition=Ready`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.cluster import (
    Cluster,
    ClusterError,
    OperatorFactory,
    OperatorProcess,
    condition,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
SMALLFLEET = ROOT / ".venv" / "bin" / "smallfleet"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BAD_MANIFESTS = sorted((ROOT / "tests" / "e2e" / "bad_manifests").glob("*.yaml"))
SHORT = {"SmallModel": "sm", "ModelPipeline": "mp"}
CHILD_KINDS = "deployments,services,configmaps,poddisruptionbudgets,horizontalpodautoscalers"
READY_TIMEOUT = 120.0


def documents(path: Path) -> list[dict[str, Any]]:
    """The resources in a file, with their namespace removed so a test can place them."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc.get("metadata", {}).pop("namespace", None)
    return docs


def classifier(name: str) -> dict[str, Any]:
    """The CPU classifier example under another name: a model that is quick to make Ready."""
    (doc,) = documents(ROOT / "examples" / "cpu-classifier.yaml")
    doc["metadata"]["name"] = name
    return doc


def apply(cluster: Cluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    cluster.apply_yaml(yaml.safe_dump_all(docs), namespace=namespace)


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl_json("get", SHORT.get(kind, kind), name, "-n", namespace)
    return obj


def wait_condition(
    cluster: Cluster,
    kind: str,
    name: str,
    namespace: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> dict[str, Any]:
    """Wait until a condition has the status (and reason); fail showing the object if not."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = get(cluster, kind, name, namespace)
        c = condition(last, type_)
        ok = c.get("status") == status and (reason is None or c.get("reason") == reason)
        return last if ok else None

    try:
        return cluster.wait_for(reached, timeout, f"{kind} {name}: {type_} never {status}", 1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{yaml.safe_dump(last.get('status', {}))}") from exc


def children(cluster: Cluster, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    selector = f"serving.smallfleet.io/owner-kind={kind},serving.smallfleet.io/owner-name={name}"
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", CHILD_KINDS, "-n", namespace, "-l", selector
    )["items"]
    return items


def owned_pods(cluster: Cluster, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    selector = f"serving.smallfleet.io/owner-kind={kind},serving.smallfleet.io/owner-name={name}"
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", selector
    )["items"]
    return items


def resources_of(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in docs]


@pytest.fixture(scope="session")
def keda_crds(cluster: Cluster) -> list[str]:
    """KEDA's CRDs (built from its Go module beside the cluster binaries), for ScaledObjects."""
    crd_dir = cluster.bin_dir / "crds" / "keda"
    files = sorted(crd_dir.glob("*.yaml"))
    if not files:
        raise ClusterError(f"no KEDA CRDs in {crd_dir}: run `hack/build-bins.sh keda`")
    cluster.apply_yaml(crd_dir)

    def established() -> bool:
        crd = cluster.kubectl_json("get", "crd", "scaledobjects.keda.sh")
        conds = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    cluster.wait_for(established, 60, "KEDA's ScaledObject CRD never became Established")
    return [f.name for f in files]


@pytest.fixture
def operator(operator_process: OperatorFactory, namespace: str) -> OperatorProcess:
    return operator_process(namespace)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_reaches_ready(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    keda_crds: list[str],
    example: Path,
) -> None:
    docs = documents(example)
    assert docs, f"{example} holds no resources"
    apply(cluster, namespace, docs)
    for kind, name in resources_of(docs):
        wait_ready(cluster, SHORT[kind], name, namespace, timeout=READY_TIMEOUT)
        obj = get(cluster, kind, name, namespace)
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert condition(obj, "Reconciling")["status"] == "False"
        assert condition(obj, "Stalled")["status"] == "False"
        assert status["readyReplicas"] >= 1 and status["region"], status
        assert status["endpoint"] == f"{name}.{namespace}.svc"
        kids = children(cluster, namespace, kind, name)
        assert {k["kind"] for k in kids} >= {"Deployment", "Service", "ConfigMap"}
        for kid in kids:
            (ref,) = kid["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["uid"]) == (kind, obj["metadata"]["uid"])
            assert kid["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "smallfleet"


def test_printer_columns(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    docs = documents(ROOT / "examples" / "cpu-classifier.yaml")
    apply(cluster, namespace, docs)
    wait_ready(cluster, "sm", "cpu-classifier", namespace)
    out = cluster.kubectl("get", "sm,mp", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "READY",
        "REGION",
        "URL",
        "REPLICAS",
        "GCO2E/H",
        "AGE",
    ], out
    cells = row.split()
    url = f"http://cpu-classifier.{namespace}.svc:8000"
    assert cells[0].endswith("cpu-classifier") and cells[1:5] == ["True", "eu-west-1", url, "1"], (
        out
    )


# --------------------------------------------------------------------------- scheduling


def test_pods_land_on_the_requested_hardware(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, documents(ROOT / "examples" / "minilm-embedder.yaml"))
    apply(cluster, namespace, documents(ROOT / "examples" / "cpu-classifier.yaml"))
    wait_ready(cluster, "sm", "minilm-embedder", namespace)
    wait_ready(cluster, "sm", "cpu-classifier", namespace)
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}

    (gpu_pod,) = owned_pods(cluster, namespace, "SmallModel", "minilm-embedder")
    labels = nodes[gpu_pod["spec"]["nodeName"]]["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A10G"
    assert labels["topology.kubernetes.io/region"] in ("eu-west-1", "eu-central-1", "eu-north-1")

    (cpu_pod,) = owned_pods(cluster, namespace, "SmallModel", "cpu-classifier")
    labels = nodes[cpu_pod["spec"]["nodeName"]]["metadata"]["labels"]
    assert "nvidia.com/gpu.product" not in labels

    metrics = operator.metrics()
    assert re.search(
        r'smallfleet_reconcile_total\{kind="SmallModel",result="ready"\} [1-9]', metrics
    )
    assert 'smallfleet_resources{condition="Ready",kind="SmallModel"}' in metrics


def test_unknown_gpu_product_is_stalled_naming_it(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """No node has the product: placement (or else the scheduler) says so, and it is Stalled."""
    doc = classifier("needs-b200")
    doc["spec"]["resources"] = {"gpus": 1, "gpuProduct": "NVIDIA-B200", "cpu": "1", "memory": "1Gi"}
    apply(cluster, namespace, [doc])
    obj = wait_condition(cluster, "SmallModel", "needs-b200", namespace, "Stalled", "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] in ("NoFeasibleRegion", "Unschedulable"), stalled
    message = stalled["message"]
    assert "NVIDIA-B200" in message or re.search(r"0/\d+ nodes are available", message), message
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "False"
    proc = cluster.kubectl(
        "wait",
        "sm/needs-b200",
        "-n",
        namespace,
        "--for=condition=Ready",
        "--timeout=3s",
        check=False,
    )
    assert proc.returncode != 0


# --------------------------------------------------------------------------- lifecycle


def test_spec_update_rolls_out_and_observed_generation_follows(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, documents(ROOT / "examples" / "cpu-classifier.yaml"))
    wait_ready(cluster, "sm", "cpu-classifier", namespace)
    (before,) = [
        k
        for k in children(cluster, namespace, "SmallModel", "cpu-classifier")
        if k["kind"] == "Deployment"
    ]
    cluster.kubectl(
        "patch", "sm", "cpu-classifier", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"resources": {"memory": "1536Mi"}}}),
    )  # fmt: skip
    obj = get(cluster, "SmallModel", "cpu-classifier", namespace)
    assert obj["metadata"]["generation"] == 2

    def rolled() -> dict[str, Any] | None:
        o = get(cluster, "SmallModel", "cpu-classifier", namespace)
        ok = (
            o["status"].get("observedGeneration") == 2
            and condition(o, "Ready").get("status") == "True"
        )
        return o if ok else None

    cluster.wait_for(
        rolled, READY_TIMEOUT, "observedGeneration never reached 2 with Ready=True", 1.0
    )
    (after,) = [
        k
        for k in children(cluster, namespace, "SmallModel", "cpu-classifier")
        if k["kind"] == "Deployment"
    ]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    container = after["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "1536Mi"


def test_deleting_garbage_collects_every_child(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    docs = documents(ROOT / "examples" / "rag-pipeline.yaml")
    apply(cluster, namespace, docs)
    for kind, name in resources_of(docs):
        wait_ready(cluster, SHORT[kind], name, namespace)
    assert children(cluster, namespace, "ModelPipeline", "rag")
    cluster.kubectl("delete", "mp", "rag", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.wait_for(
        lambda: not children(cluster, namespace, "ModelPipeline", "rag"),
        90,
        lambda: (
            f"children of the pipeline remain: {[k['metadata']['name'] for k in children(cluster, namespace, 'ModelPipeline', 'rag')]}"
        ),
    )
    # The models keep serving: their children are theirs, not the pipeline's.
    assert children(cluster, namespace, "SmallModel", "rag-embed")
    cluster.kubectl("delete", "sm", "rag-embed", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.wait_for(
        lambda: (
            not children(cluster, namespace, "SmallModel", "rag-embed")
            and not owned_pods(cluster, namespace, "SmallModel", "rag-embed")
        ),
        90,
        "children or pods of rag-embed remain",
    )


def test_pipeline_with_a_missing_model_stalls_and_recovers(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    docs = documents(ROOT / "examples" / "rag-pipeline.yaml")
    models = [d for d in docs if d["kind"] == "SmallModel"]
    pipeline = [d for d in docs if d["kind"] == "ModelPipeline"]
    apply(cluster, namespace, pipeline + models[:1])
    wait_condition(cluster, "ModelPipeline", "rag", namespace, "Stalled", "True", "MissingModel")

    # Applied together, the pipeline may be reconciled before the model's watch event has
    # arrived (two watch streams); that event queues the pipeline again and the message
    # then names only the models that do not exist.
    def exact() -> dict[str, Any] | None:
        obj = get(cluster, "ModelPipeline", "rag", namespace)
        stalled = condition(obj, "Stalled")
        named = models[0]["metadata"]["name"] in stalled.get("message", "")
        return obj if stalled.get("reason") == "MissingModel" and not named else None

    obj = cluster.wait_for(exact, 30, "the Stalled message kept naming a model that exists", 0.5)
    message = condition(obj, "Stalled")["message"]
    for missing in models[1:]:
        assert missing["metadata"]["name"] in message, message
    assert models[0]["metadata"]["name"] not in message
    assert not children(cluster, namespace, "ModelPipeline", "rag")

    apply(cluster, namespace, models[1:])
    wait_ready(cluster, "mp", "rag", namespace)
    obj = get(cluster, "ModelPipeline", "rag", namespace)
    assert condition(obj, "Stalled")["status"] == "False"
    assert obj["status"]["models"] == sorted(m["metadata"]["name"] for m in models)


def test_a_name_taken_by_someone_elses_object_is_stalled_and_never_taken_over(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "taken", "labels": {"app": "hand-made"}},
        "spec": {"selector": {"app": "hand-made"}, "ports": [{"name": "web", "port": 80}]},
    }
    apply(cluster, namespace, [service])
    doc = classifier("taken")
    apply(cluster, namespace, [doc])
    obj = wait_condition(
        cluster, "SmallModel", "taken", namespace, "Stalled", "True", "NameConflict"
    )
    message = condition(obj, "Stalled")["message"]
    assert "Service 'taken' already exists" in message and "not smallfleet" in message, message
    assert condition(obj, "Ready")["status"] == "False"
    kept = get(cluster, "service", "taken", namespace)
    assert kept["spec"]["selector"] == {"app": "hand-made"}, kept["spec"]
    assert [p["port"] for p in kept["spec"]["ports"]] == [80], kept["spec"]
    assert not kept["metadata"].get("ownerReferences"), kept["metadata"]
    assert "app.kubernetes.io/managed-by" not in kept["metadata"].get("labels", {})
    assert not [
        d for d in children(cluster, namespace, "SmallModel", "taken") if d["kind"] == "Deployment"
    ]

    # Once the namesake is gone, the periodic resync finishes the model.
    cluster.kubectl("delete", "service", "taken", "-n", namespace, "--wait=true")
    wait_ready(cluster, "sm", "taken", namespace, timeout=READY_TIMEOUT)


def test_a_namesake_whose_fields_do_not_clash_is_not_taken_over_either(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Server-side apply would merge into this ConfigMap without a conflict (no shared
    # field), adding the model's ownerReference: deleting the model would then delete it.
    mine = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "quiet-config"},
        "data": {"notes.txt": "kept by a person"},
    }
    apply(cluster, namespace, [mine])
    doc = classifier("quiet")
    apply(cluster, namespace, [doc])
    obj = wait_condition(
        cluster, "SmallModel", "quiet", namespace, "Stalled", "True", "NameConflict"
    )
    message = condition(obj, "Stalled")["message"]
    assert "ConfigMap 'quiet-config' already exists" in message, message
    cluster.kubectl("delete", "sm", "quiet", "-n", namespace, "--wait=true")
    kept = get(cluster, "configmap", "quiet-config", namespace)
    assert kept["data"] == {"notes.txt": "kept by a person"}, kept
    assert not kept["metadata"].get("ownerReferences"), kept["metadata"]


def test_a_model_deleted_and_made_again_at_once_becomes_ready_with_new_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    doc = classifier("again")
    apply(cluster, namespace, [doc])
    wait_ready(cluster, "sm", "again", namespace, timeout=READY_TIMEOUT)
    old_uid = get(cluster, "SmallModel", "again", namespace)["metadata"]["uid"]
    # The garbage collector removes the old children after their owner is gone; a finalizer
    # holds one back, so the new model surely meets its predecessor's ConfigMap.
    hold = '{"metadata":{"finalizers":["example.com/hold"]}}'
    cluster.kubectl("patch", "configmap", "again-config", "-n", namespace, "-p", hold)
    cluster.kubectl("delete", "sm", "again", "-n", namespace, "--wait=true")
    apply(cluster, namespace, [doc])
    seen: set[str] = set()

    def waiting() -> dict[str, Any] | None:
        obj = get(cluster, "SmallModel", "again", namespace)
        assert condition(obj, "Stalled").get("status") != "True", obj.get("status")
        reconciling = condition(obj, "Reconciling")
        says = "still belongs to the deleted SmallModel" in reconciling.get("message", "")
        return obj if reconciling.get("status") == "True" and says else None

    obj = cluster.wait_for(waiting, 60, "the model made again never said what it waits for", 0.5)
    # Retried with backoff meanwhile: a few more seconds change nothing.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert waiting() is not None
        time.sleep(0.5)
    held = get(cluster, "configmap", "again-config", namespace)["metadata"]
    assert held["ownerReferences"][0]["uid"] == old_uid, held
    assert condition(obj, "Ready").get("status") != "True", obj.get("status")
    release = '{"metadata":{"finalizers":null}}'
    cluster.kubectl("patch", "configmap", "again-config", "-n", namespace, "-p", release)

    def ready() -> dict[str, Any] | None:
        obj = get(cluster, "SmallModel", "again", namespace)
        stalled = condition(obj, "Stalled")
        if stalled.get("status") == "True":
            seen.add(str(stalled.get("reason")))
        return obj if condition(obj, "Ready").get("status") == "True" else None

    obj = cluster.wait_for(ready, READY_TIMEOUT, "the model made again never became Ready", 0.5)
    assert not seen, f"the model made again was Stalled on the way: {seen}"
    new_uid = obj["metadata"]["uid"]
    assert new_uid != old_uid
    for child in children(cluster, namespace, "SmallModel", "again"):
        uids = [r["uid"] for r in child["metadata"].get("ownerReferences") or []]
        assert uids == [new_uid], (child["kind"], child["metadata"]["name"], uids)


def test_children_orphaned_by_a_deleted_model_are_adopted_by_the_next_one(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    doc = classifier("heir")
    apply(cluster, namespace, [doc])
    wait_ready(cluster, "sm", "heir", namespace, timeout=READY_TIMEOUT)
    before = {
        (d["kind"], d["metadata"]["name"]): d["metadata"]["uid"]
        for d in children(cluster, namespace, "SmallModel", "heir")
    }
    cluster.kubectl("delete", "sm", "heir", "-n", namespace, "--cascade=orphan", "--wait=true")
    orphans = children(cluster, namespace, "SmallModel", "heir")
    assert {(d["kind"], d["metadata"]["name"]) for d in orphans} == set(before)
    assert not any(d["metadata"].get("ownerReferences") for d in orphans), orphans

    apply(cluster, namespace, [doc])
    obj = wait_condition(cluster, "SmallModel", "heir", namespace, "Ready", "True")
    uid = obj["metadata"]["uid"]
    after = children(cluster, namespace, "SmallModel", "heir")
    # The same objects (the pods kept serving), now owned by the new model.
    assert {(d["kind"], d["metadata"]["name"]): d["metadata"]["uid"] for d in after} == before
    for d in after:
        refs = d["metadata"].get("ownerReferences") or []
        assert [(r["uid"], r.get("controller")) for r in refs] == [(uid, True)], refs


def test_a_pipeline_named_like_a_model_does_not_take_its_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    docs = documents(ROOT / "examples" / "rag-pipeline.yaml")
    name = "bystander"  # no step of the pipeline
    bystander = classifier(name)
    models = [d for d in docs if d["kind"] == "SmallModel"] + [bystander]
    (pipeline,) = [d for d in docs if d["kind"] == "ModelPipeline"]
    apply(cluster, namespace, models)
    for m in models:
        wait_ready(cluster, "sm", m["metadata"]["name"], namespace, timeout=READY_TIMEOUT)
    before = {
        (d["kind"], d["metadata"]["name"]): d["metadata"]["uid"]
        for d in children(cluster, namespace, "SmallModel", name)
    }
    pipeline["metadata"]["name"] = name
    apply(cluster, namespace, [pipeline])
    obj = wait_condition(
        cluster, "ModelPipeline", name, namespace, "Stalled", "True", "NameConflict"
    )
    message = condition(obj, "Stalled")["message"]
    assert f"belongs to SmallModel {name!r}" in message, message
    assert not children(cluster, namespace, "ModelPipeline", name)
    after = children(cluster, namespace, "SmallModel", name)
    assert {(d["kind"], d["metadata"]["name"]): d["metadata"]["uid"] for d in after} == before
    for d in after:
        owners = [r["kind"] for r in d["metadata"].get("ownerReferences") or []]
        assert owners == ["SmallModel"], (d["kind"], d["metadata"]["name"], owners)
    assert condition(get(cluster, "SmallModel", name, namespace), "Ready")["status"] == "True"


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    (template,) = documents(ROOT / "examples" / "cpu-classifier.yaml")
    names = [f"classifier-{i}" for i in range(8)]
    docs = []
    for name in names:
        doc = json.loads(json.dumps(template))
        doc["metadata"]["name"] = name
        docs.append(doc)
    first = operator_process(namespace)
    apply(cluster, namespace, docs)
    cluster.wait_for(
        lambda: any(
            k["kind"] == "Deployment"
            for n in names
            for k in children(cluster, namespace, "SmallModel", n)
        ),
        60,
        "the operator never created a child",
        0.1,
    )
    first.proc.kill()  # SIGKILL: no cleanup, whatever was in flight stays half done
    first.proc.wait(timeout=10)

    operator_process(namespace)
    for name in names:
        wait_ready(cluster, "sm", name, namespace)
    for name in names:
        kinds = Counter(k["kind"] for k in children(cluster, namespace, "SmallModel", name))
        assert kinds == Counter(
            {"Deployment": 1, "Service": 1, "ConfigMap": 1, "PodDisruptionBudget": 1}
        ), (name, kinds)
        assert len(owned_pods(cluster, namespace, "SmallModel", name)) == 1
        obj = get(cluster, "SmallModel", name, namespace)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


# --------------------------------------------------------------------------- manifests


def test_rendered_examples_apply_with_server_dry_run(cluster: Cluster, namespace: str) -> None:
    rendered = subprocess.run(
        [str(SMALLFLEET), "render", *map(str, EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
    }
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=smallfleet", "-f", "-",
        input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(docs), proc.stdout


def bad_cases() -> Iterator[tuple[Path, str]]:
    for path in BAD_MANIFESTS:
        match = re.search(r"^#\s*expect:\s*(.+?)\s*$", path.read_text(), re.MULTILINE)
        yield path, match.group(1) if match else ""


def test_there_are_enough_bad_manifests() -> None:
    assert len(BAD_MANIFESTS) >= 15, (
        f"only {len(BAD_MANIFESTS)} bad manifests in tests/e2e/bad_manifests"
    )
    for path, expect in bad_cases():
        assert expect, f"{path.name} has no `# expect: <substring>` line"


@pytest.mark.parametrize(("path", "expect"), list(bad_cases()), ids=[p.stem for p in BAD_MANIFESTS])
def test_bad_manifest_is_rejected_by_the_api_server(
    cluster: Cluster, crds_installed: list[str], namespace: str, path: Path, expect: str
) -> None:
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all(documents(path)), check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"{path.name} was accepted:\n{proc.stdout}"
    assert expect in proc.stderr, f"{path.name}: want {expect!r} in:\n{proc.stderr}"


def test_status_survives_an_operator_restart_unchanged(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    """A restart re-derives the same status from the cluster: no transition moves."""
    first = operator_process(namespace)
    apply(cluster, namespace, documents(ROOT / "examples" / "cpu-classifier.yaml"))
    wait_ready(cluster, "sm", "cpu-classifier", namespace)

    def mine(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
        conditions = obj["status"]["conditions"]
        return [
            (c["type"], c["status"], c["lastTransitionTime"])
            for c in conditions
            if c["type"] in ("Ready", "Reconciling", "Stalled")
        ]

    before = mine(get(cluster, "SmallModel", "cpu-classifier", namespace))
    first.stop()
    operator_process(namespace)
    time.sleep(5)
    assert mine(get(cluster, "SmallModel", "cpu-classifier", namespace)) == before


def test_all_namespaces_mode_serves_any_namespace(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    operator = operator_process(all_namespaces=True)
    apply(cluster, namespace, documents(ROOT / "examples" / "cpu-classifier.yaml"))
    wait_ready(cluster, "sm", "cpu-classifier", namespace)
    assert "smallfleet_reconcile_duration_seconds_count" in operator.metrics()


def test_deleting_needs_no_running_operator(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    """No finalizer of the operator's: a model (or its namespace) goes while the operator is down."""
    first = operator_process(namespace)
    apply(cluster, namespace, documents(ROOT / "examples" / "cpu-classifier.yaml"))
    wait_ready(cluster, "sm", "cpu-classifier", namespace)
    assert not get(cluster, "SmallModel", "cpu-classifier", namespace)["metadata"].get("finalizers")
    first.stop()
    cluster.kubectl("delete", "sm", "cpu-classifier", "-n", namespace, "--timeout=30s")
    cluster.wait_for(
        lambda: not children(cluster, namespace, "SmallModel", "cpu-classifier"),
        90,
        "children outlived their SmallModel",
    )


def test_pods_the_scheduler_cannot_place_are_stalled_with_its_message(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """GPUs are free but no node has the memory: only the real scheduler knows, and says so."""
    (doc,) = documents(ROOT / "examples" / "minilm-embedder.yaml")
    doc["metadata"]["name"] = "needs-memory"
    doc["spec"]["resources"]["memory"] = "900Gi"
    apply(cluster, namespace, [doc])
    obj = wait_condition(
        cluster, "SmallModel", "needs-memory", namespace, "Stalled", "True", "Unschedulable"
    )
    message = condition(obj, "Stalled")["message"]
    assert re.search(r"0/\d+ nodes are available", message), message
    assert "Insufficient memory" in message, message
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "False"
