"""The operator scales a SmallModel from a real Triton's metrics, on a real control plane.

KWOK gives every pod an IP in 127.1.0.0/16, so when the operator scrapes
`<podIP>:8002` it reaches whatever listens at that address on this machine's
loopback. The test starts a real tritonserver on 127.0.0.1 only (HTTP, gRPC
and metrics on free ports) serving a model whose name is the SmallModel's,
and keeps a small forwarder listening on each pod's own IP, port 8002, that
passes the scrape on to Triton's metrics port (tests/e2e/podnet.py): each KWOK
pod of the model "is" that server as far as metrics go, and nothing listens on
a wildcard address. Load goes to the server with tritonclient; the operator
scales the Deployment through `/scale`; the real kube-scheduler places the
new pods on GPU nodes of the model's region, or leaves them Pending when no
GPU is free there, and the status says which.

Every pod scrapes the same server, so the measured load is the server's
times the replica count: the way up only gets steeper, and the way down
starts when the load stops, which is all the test relies on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from hack.cluster import assert_listening_on_loopback
from tests.e2e.cluster import Cluster, OperatorFactory, condition
from tests.e2e.podnet import PodForwards, pod_forwards
from tests.triton.triton_harness import (
    TextLoad,
    TritonEnv,
    TritonServer,
    build_repository,
    load_manifests,
    parse_all,
    prepare_env,
    serve_directory,
    start_triton,
)

from smallfleet.core.render import plan_for_model, triton_args
from smallfleet.settings import Settings

MODEL: Final = "minilm-l6"  # the SmallModel's name is the Triton model's
METRICS_PORT: Final = 8002
REGION: Final = "eu-west-1"
GPU_PRODUCT: Final = "NVIDIA-L4"  # one node of that product in the region, 4 GPUs
GPUS_PER_REPLICA: Final = 2  # so the region holds 2 replicas; max 4 leaves 2 Pending
MAX_REPLICAS: Final = 4
DOWN_WINDOW_S: Final = 5
LOAD_CLIENTS: Final = 8
LOAD_LIMIT_S: Final = 120.0
STEP_TIMEOUT_S: Final = 90.0
DOWN_TIMEOUT_S: Final = 120.0


def _start_triton(env: TritonEnv, workdir: Path, artifacts_url: str) -> TritonServer:
    """The rendered server, on 127.0.0.1 only; forwarders at the pod IPs reach its metrics."""
    docs = load_manifests(
        MODEL, ARTIFACTS_URL=artifacts_url, BACKEND_ENV=str(env.execution_env_path)
    )
    models, _ = parse_all(docs)
    plan = plan_for_model(models[MODEL], Settings())
    repository = build_repository(plan, workdir / "models")
    return start_triton(
        env,
        repository,
        triton_args(plan, str(repository)),
        log_path=workdir / "tritonserver.log",
        timeout=240.0,
    )


@pytest.fixture(scope="module")
def triton_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    env = prepare_env()
    with serve_directory(env.artifacts) as url:
        server = _start_triton(env, tmp_path_factory.mktemp("triton"), url)
        try:
            yield server
        finally:
            server.stop()


def _model(namespace: str, mode: str = "operator") -> dict[str, Any]:
    scaling: dict[str, Any] = {
        "mode": mode,
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "metric": "inferencesPerSecond",
        "target": 2,
    }
    if mode == "operator":
        scaling |= {
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": DOWN_WINDOW_S,
            "maxScaleUpStep": MAX_REPLICAS,
            "maxScaleDownStep": MAX_REPLICAS,
        }
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {
                "uri": "https://models.example.com/minilm-l6.tar.gz",
                "digest": "sha256:" + "0" * 64,
                "format": "python",
            },
            "triton": {
                "maxBatchSize": 32,
                "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": "EMBEDDING", "datatype": "FP32", "dims": [384]}],
            },
            "resources": {
                "gpus": GPUS_PER_REPLICA,
                "gpuProduct": GPU_PRODUCT,
                "cpu": "1",
                "memory": "1Gi",
            },
            "scaling": scaling,
            "placement": {"policy": "pinned", "regions": [REGION]},
            "card": {
                "owner": "search-team@example.com",
                "license": "Apache-2.0",
                "description": "Sentence embeddings, scaled from Triton's metrics.",
            },
        },
    }


def _get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl_json("get", kind, name, "-n", namespace)
    return obj


def _deployment(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return _get(cluster, "deployment", f"{MODEL}-{REGION}", namespace)


def _pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"serving.smallfleet.io/owner-name={MODEL}"
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", selector
    )["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _wait(cluster: Cluster, what: str, timeout: float, probe: Any, show: Any) -> Any:
    try:
        return cluster.wait_for(probe, timeout, what, 0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{show()}") from exc


def _operator_env() -> dict[str, str]:
    return {"SMALLFLEET_SCRAPE_INTERVAL_SECONDS": "1"}


def _events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"reason={reason}"
    )["items"]
    return items


def test_load_scales_up_into_the_region_pending_beyond_its_gpus_then_down(
    cluster: Cluster,
    crds_installed: list[str],
    namespace: str,
    operator_process: OperatorFactory,
    triton_local: TritonServer,
) -> None:
    selector = f"serving.smallfleet.io/owner-name={MODEL}"
    metrics = ("127.0.0.1", triton_local.metrics_port)
    with pod_forwards(cluster, namespace, selector, METRICS_PORT, metrics) as forwards:
        _scale_up_and_down(cluster, namespace, operator_process, triton_local, forwards)
        assert not forwards.all_errors(), forwards.all_errors()


def _scale_up_and_down(
    cluster: Cluster,
    namespace: str,
    operator_process: OperatorFactory,
    triton: TritonServer,
    forwards: PodForwards,
) -> None:
    operator = operator_process(namespace, env=_operator_env())
    cluster.apply_yaml(yaml.safe_dump(_model(namespace)), namespace=namespace)
    deployment = f"{MODEL}-{REGION}"

    def status() -> str:
        obj = cluster.kubectl("get", "sm", MODEL, "-n", namespace, "-o", "yaml", check=False)
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False)
        return f"{obj.stdout}\n{pods.stdout}"

    def one_ready() -> bool:
        dep = _deployment_or_none(cluster, namespace)
        return bool(dep and (dep.get("status") or {}).get("readyReplicas") == 1)

    _wait(cluster, f"{deployment} never had its first replica ready", 120, one_ready, status)
    cluster.assert_loopback()
    ips = [p["status"].get("podIP", "") for p in _pods(cluster, namespace)]
    assert ips and all(ip.startswith("127.") for ip in ips), f"pod IPs not loopback: {ips}"

    def active() -> dict[str, Any] | None:
        obj = _get(cluster, "sm", MODEL, namespace)
        return obj if condition(obj, "ScalingActive").get("status") == "True" else None

    quiet = _wait(cluster, "ScalingActive never True with no load", 60, active, status)
    assert quiet["status"]["scaling"]["mode"] == "operator"
    assert quiet["status"]["scaling"]["desiredReplicas"] == 1

    load = TextLoad(triton, MODEL, LOAD_CLIENTS, limit_s=LOAD_LIMIT_S)
    load_started = time.monotonic()
    try:

        def scaled_to_max() -> dict[str, Any] | None:
            dep = _deployment(cluster, namespace)
            return dep if dep["spec"].get("replicas") == MAX_REPLICAS else None

        _wait(cluster, f"never scaled to {MAX_REPLICAS}", STEP_TIMEOUT_S, scaled_to_max, status)
        up_s = time.monotonic() - load_started

        def two_running_two_pending() -> list[dict[str, Any]] | None:
            pods = _pods(cluster, namespace)
            running = [p for p in pods if p["spec"].get("nodeName")]
            pending = [p for p in pods if not p["spec"].get("nodeName")]
            return pods if len(running) == 2 and len(pending) == 2 else None

        pods = _wait(
            cluster, "never 2 placed and 2 Pending pods", 60, two_running_two_pending, status
        )

        # Each placed pod's own IP answers on 8002 through a forwarder bound to that address;
        # Triton, the operator and the forwarders (this process) listen on loopback only.
        def forwarded() -> set[str] | None:
            placed = [p for p in _pods(cluster, namespace) if p["spec"].get("nodeName")]
            ips = {p["status"].get("podIP") or "" for p in placed}
            ok = len(ips) == len(placed) == 2 and "" not in ips and ips <= forwards.addresses()
            return ips if ok else None

        placed = _wait(
            cluster, "no forwarder at each placed pod's IP", 30, forwarded,
            lambda: f"forwarders at {sorted(forwards.addresses())}; errors {forwards.all_errors()}",
        )  # fmt: skip
        listeners = assert_listening_on_loopback(
            [triton.process.pid, operator.pid, os.getpid()], "Triton, the operator or the test"
        )
        listening = {(lst.address, lst.port) for lst in listeners}
        assert {(ip, METRICS_PORT) for ip in placed} <= listening, sorted(listening)
        assert ("127.0.0.1", triton.metrics_port) in listening, sorted(listening)
        nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node:
                labels = nodes[node]["metadata"]["labels"]
                assert labels["topology.kubernetes.io/region"] == REGION, node
                assert labels["nvidia.com/gpu.product"] == GPU_PRODUCT, node

        def pending_reported() -> dict[str, Any] | None:
            obj = _get(cluster, "sm", MODEL, namespace)
            scaling = obj.get("status", {}).get("scaling") or {}
            cond = condition(obj, "ScalingActive")
            ok = scaling.get("pendingReplicas") == 2 and "Pending" in cond.get("message", "")
            return obj if ok else None

        busy = _wait(cluster, "status never reported 2 Pending", 60, pending_reported, status)
        scaling = busy["status"]["scaling"]
        assert scaling["desiredReplicas"] == MAX_REPLICAS
        assert scaling["effectiveMaxReplicas"] == MAX_REPLICAS
        last = scaling["lastDecision"]
        assert last["metric"] == "inferencesPerSecond" and last["target"] == 2, last

        # The minimum serves: the model is Ready, and the message names the shortfall.
        def ready_names_the_shortfall() -> dict[str, Any] | None:
            obj = _get(cluster, "sm", MODEL, namespace)
            ready = condition(obj, "Ready")
            message = ready.get("message", "")
            ok = (
                ready.get("status") == "True"
                and message.startswith("2/4 replicas ready")
                and "Unschedulable" in message
            )
            return obj if ok else None

        shown = _wait(
            cluster, "Ready never named the shortfall", 30, ready_names_the_shortfall, status
        )
        assert condition(shown, "Stalled").get("status") == "False", shown["status"]
        assert _events(cluster, namespace, "ScaledUp"), "no ScaledUp Event"

        # A full reconcile (a spec change applies every child again) keeps the count.
        before = _deployment(cluster, namespace)
        cluster.kubectl(
            "patch", "sm", MODEL, "-n", namespace, "--type=merge",
            "-p", '{"spec":{"scaling":{"tolerance":0.11}}}',
        )  # fmt: skip
        generation = _get(cluster, "sm", MODEL, namespace)["metadata"]["generation"]

        def reconciled() -> bool:
            obj = _get(cluster, "sm", MODEL, namespace)
            return bool(obj.get("status", {}).get("observedGeneration") == generation)

        _wait(cluster, "the spec change was never reconciled", 60, reconciled, status)
        seen = set()
        for _ in range(10):
            seen.add(_deployment(cluster, namespace)["spec"].get("replicas"))
            time.sleep(0.5)
        after = _deployment(cluster, namespace)
        assert seen == {MAX_REPLICAS}, f"replicas moved across the resync: {seen}"
        assert after["metadata"]["generation"] == before["metadata"]["generation"], (
            "the Deployment was rewritten across the resync (apply and scale fought)"
        )
        assert load.sent > 0 and not load.errors, load.errors[:3]
    finally:
        load.close()
    load_stopped = time.monotonic()

    def back_to_min() -> dict[str, Any] | None:
        dep = _deployment(cluster, namespace)
        return dep if dep["spec"].get("replicas") == 1 else None

    _wait(cluster, "never scaled back down to 1", DOWN_TIMEOUT_S, back_to_min, status)
    down_s = time.monotonic() - load_stopped
    print(
        f"\nautoscaling e2e: 1 -> {MAX_REPLICAS} replicas {up_s:.1f} s after load began "
        f"({LOAD_CLIENTS} clients, {load.sent} requests); back to 1 {down_s:.1f} s after it "
        f"stopped (scale-down window {DOWN_WINDOW_S} s, rates over 30 s, scrape every 1 s)"
    )
    assert _events(cluster, namespace, "ScaledDown"), "no ScaledDown Event"
    metrics = operator.metrics()
    assert "smallfleet_scaling_desired_replicas{" in metrics, metrics[-2000:]
    assert 'smallfleet_scaling_decisions_total{direction="up"' in metrics, metrics[-2000:]


def _deployment_or_none(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    proc = cluster.kubectl(
        "get", "deployment", f"{MODEL}-{REGION}", "-n", namespace, "-o", "json", check=False
    )
    if proc.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


@pytest.mark.parametrize("mode", ["hpa", "keda"])
def test_external_scalers_own_replicas(
    cluster: Cluster,
    crds_installed: list[str],
    namespace: str,
    operator_process: OperatorFactory,
    mode: str,
) -> None:
    """In hpa and keda modes the operator reports, and never touches the replica count."""
    if mode == "keda":
        from tests.e2e.test_scaling_modes import _keda_crds

        cluster.apply_yaml(_keda_crds(cluster))
    operator_process(namespace, env=_operator_env())
    cluster.apply_yaml(yaml.safe_dump(_model(namespace, mode)), namespace=namespace)

    def status() -> str:
        return cluster.kubectl("get", "sm", MODEL, "-n", namespace, "-o", "yaml").stdout

    def external() -> dict[str, Any] | None:
        obj = _get(cluster, "sm", MODEL, namespace)
        cond = condition(obj, "ScalingActive")
        ok = cond.get("status") == "False" and cond.get("reason") == "ExternalScaler"
        return obj if ok else None

    obj = _wait(cluster, "ScalingActive never False/ExternalScaler", 60, external, status)
    assert obj["status"]["scaling"]["mode"] == mode
    dep = _deployment(cluster, namespace)
    assert "replicas" not in _applied_spec(dep), "the operator applied replicas in " + mode
    managers = {m.get("manager") for m in dep["metadata"].get("managedFields") or []}
    assert all(
        m.get("subresource") != "scale"
        for m in dep["metadata"].get("managedFields") or []
        if m.get("manager") == "smallfleet"
    ), managers
    assert not _events(cluster, namespace, "ScaledUp")


def _applied_spec(dep: dict[str, Any]) -> dict[str, Any]:
    for entry in dep["metadata"].get("managedFields") or []:
        if entry.get("manager") == "smallfleet" and entry.get("operation") == "Apply":
            spec: dict[str, Any] = (entry.get("fieldsV1") or {}).get("f:spec") or {}
            return {k.removeprefix("f:"): v for k, v in spec.items()}
    return {}
