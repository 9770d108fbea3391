"""The local node runs its pods for real: processes on loopback pod IPs, with honest status.

KWOK fakes every other node of the cluster. The node `triton-local`
(hack/localnode.py) plays the kubelet with local processes, so the operator
can be tested against a real Triton. These tests hold it to what a kubelet
promises: a pod gets its own IP and answers there, init containers run first
and their termination messages reach the status, volumes hold what their
sources say, readiness follows the probe, a container that exits comes back,
a deleted pod's processes end before its object goes, and the wheel's
`tritonserver` starts bound to the pod IP and loads a model sent to it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest
import tritonclient.http as httpclient
from hack.cluster import REPO, assert_listening_on_loopback, pid_alive
from hack.localnode import expand, localize
from tests.e2e.cluster import (
    LOCAL_NODE_NAME,
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    LOCAL_POD_CIDR,
    Cluster,
    LocalNode,
)

READY_TIMEOUT_S: Final = 60.0
TRITON_READY_TIMEOUT_S: Final = 150.0  # two shared cores
# No proxy, whatever the environment says: pod IPs are on this machine.
OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

DOUBLE_MODEL: Final = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.Tensor("Y", (x * 2).astype(np.float32))
            out.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return out
"""


def pod_manifest(
    name: str,
    containers: Sequence[dict[str, Any]],
    *,
    init: Sequence[dict[str, Any]] = (),
    volumes: Sequence[dict[str, Any]] = (),
    grace: int = 5,
) -> dict[str, Any]:
    """A pod that only the local node accepts (its selector and toleration)."""
    spec: dict[str, Any] = {
        "nodeSelector": dict(LOCAL_NODE_SELECTOR),
        "tolerations": [dict(LOCAL_NODE_TOLERATION)],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace,
        "containers": list(containers),
        "volumes": list(volumes),
    }
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def http_server(name: str, port: int, directory: str, **extra: Any) -> dict[str, Any]:
    """A container serving `directory` with python's http.server on $(POD_IP):port."""
    return {
        "name": name,
        "image": "python:3.11-slim",
        "command": ["python3", "-m", "http.server"],
        "args": ["--bind", "$(POD_IP)", "--directory", directory, str(port)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": f"{name}-port", "containerPort": port}],
        **extra,
    }


def apply(cluster: Cluster, namespace: str, *objects: Mapping[str, Any]) -> None:
    for obj in objects:
        cluster.apply_yaml(json.dumps(obj), namespace=namespace)


def get_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = cluster.kubectl_json("get", "pod", name, "-n", namespace)
    return pod


def condition(pod: Mapping[str, Any], type_: str) -> str:
    for c in pod.get("status", {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c["status"])
    return ""


def wait_pod(
    cluster: Cluster,
    node: LocalNode,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = READY_TIMEOUT_S,
) -> dict[str, Any]:
    """Wait until `predicate(pod)`; fail with the pod's status and the agent's log tail."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = get_pod(cluster, namespace, name)
        return last if predicate(last) else None

    def message() -> str:
        return (
            f"pod {namespace}/{name} never {what}; status:\n"
            f"{json.dumps(last.get('status'), indent=1)}\n--- agent log (tail)\n"
            + "\n".join(node.log().splitlines()[-30:])
        )

    return cluster.wait_for(check, timeout, message)


def ready(pod: Mapping[str, Any]) -> bool:
    return condition(pod, "Ready") == "True"


def fetch(url: str, timeout: float = 5.0) -> str:
    with OPENER.open(url, timeout=timeout) as response:
        return str(response.read().decode())


def container_pid(status: Mapping[str, Any]) -> int:
    container_id = str(status["containerID"])
    assert container_id.startswith("localnode://"), container_id
    return int(container_id.removeprefix("localnode://"))


def test_mount_paths_are_localized_once_and_only_where_a_path_starts() -> None:
    mounts = {
        "/models": Path("/tmp/pods/p/volumes/models"),
        "/tmp": Path("/tmp/pods/p/volumes/tmp"),
        "/dev/termination-log": Path("/tmp/pods/p/termination/c"),
    }
    assert localize("--model-repository=/models", mounts) == (
        "--model-repository=/tmp/pods/p/volumes/models"
    )
    # The local directories lie under /tmp themselves: they must not be rewritten again.
    assert localize("cp /tmp/a /models/b; echo ok > /dev/termination-log", mounts) == (
        "cp /tmp/pods/p/volumes/tmp/a /tmp/pods/p/volumes/models/b; "
        "echo ok > /tmp/pods/p/termination/c"
    )
    assert localize("/modelsx /srv/models $(ROOT)/models '/tmp'", mounts) == (
        "/modelsx /srv/models $(ROOT)/models '/tmp/pods/p/volumes/tmp'"
    )


def test_variables_expand_as_kubernetes_expands_them() -> None:
    variables = {"POD_IP": "127.3.0.9", "EMPTY": ""}
    assert expand("--bind=$(POD_IP) $(MISSING) $$(POD_IP) $$HOME x$(EMPTY)y", variables) == (
        "--bind=127.3.0.9 $(MISSING) $(POD_IP) $HOME xy"
    )


def test_the_node_is_real_ready_and_placed(cluster: Cluster, local_node: LocalNode) -> None:
    node = cluster.kubectl_json("get", "node", LOCAL_NODE_NAME)
    labels = node["metadata"]["labels"]
    assert labels["topology.kubernetes.io/region"] == "eu-west-1"
    assert labels["topology.kubernetes.io/zone"] == "eu-west-1c"
    assert labels["serving.smallfleet.io/real-triton"] == "true"
    # Not KWOK's: its kwok-controller takes only nodes annotated fake.
    assert "kwok.x-k8s.io/node" not in (node["metadata"].get("annotations") or {})
    assert node["status"]["nodeInfo"]["kubeletVersion"] != "fake"
    assert {
        "key": "serving.smallfleet.io/real-triton",
        "value": "true",
        "effect": "NoSchedule",
    } in node["spec"]["taints"]
    assert {k: node["status"]["capacity"][k] for k in ("cpu", "memory", "pods")} == {
        "cpu": "2",
        "memory": "16Gi",
        "pods": "110",
    }
    assert condition(node, "Ready") == "True"
    lease = cluster.kubectl_json("get", "lease", LOCAL_NODE_NAME, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == LOCAL_NODE_NAME
    assert local_node.running()


def test_a_pod_runs_as_processes_on_its_own_loopback_ip(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "greeting"},
        "data": {"greeting": "hello from a configmap", "ignored": "not projected"},
    }
    init = {
        "name": "write-index",
        "image": "busybox",
        "command": [
            "sh",
            "-c",
            'echo "written by init for $(POD_NAME)" > /www/index.html'
            " && echo index-written > /dev/termination-log",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
    }
    web = http_server(
        "web",
        8080,
        "/www",
        readinessProbe={"httpGet": {"path": "/index.html", "port": "web-port"}},
        volumeMounts=[{"name": "www", "mountPath": "/www"}],
    )
    config = http_server(
        "config",
        8081,
        "/config",
        readinessProbe={"tcpSocket": {"port": 8081}},
        volumeMounts=[{"name": "config", "mountPath": "/config"}],
    )
    volumes = [
        {"name": "www", "emptyDir": {}},
        {
            "name": "config",
            "configMap": {
                "name": "greeting",
                "items": [{"key": "greeting", "path": "nested/greeting.txt"}],
            },
        },
    ]
    apply(
        cluster,
        namespace,
        config_map,
        pod_manifest("web", [web, config], init=[init], volumes=volumes),
    )
    pod = wait_pod(cluster, local_node, namespace, "web", ready, "became Ready")

    status = pod["status"]
    ip = status["podIP"]
    assert ipaddress.ip_address(ip) in LOCAL_POD_CIDR
    assert status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"] == "127.0.0.1"
    assert pod["spec"]["nodeName"] == LOCAL_NODE_NAME
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    (init_status,) = status["initContainerStatuses"]
    terminated = init_status["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["message"] == "index-written\n"

    assert fetch(f"http://{ip}:8080/index.html") == "written by init for web\n"
    assert fetch(f"http://{ip}:8081/nested/greeting.txt") == "hello from a configmap"
    with pytest.raises(urllib.error.HTTPError):  # `items` projects only the key named
        fetch(f"http://{ip}:8081/ignored")

    # Each server listens on the pod IP only; nothing of the agent listens elsewhere.
    listeners = assert_listening_on_loopback([local_node.pid], "the local node's processes")
    mine = {(lst.address, lst.port) for lst in listeners if lst.address == ip}
    assert mine == {(ip, 8080), (ip, 8081)}
    assert all(ipaddress.ip_address(lst.address) in LOCAL_POD_CIDR for lst in listeners)
    log = (local_node.pod_dir(namespace, "web") / "web.log").read_text()
    assert "GET /index.html" in log


def test_a_container_that_exits_is_restarted(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    crasher = {
        "name": "crasher",
        "image": "busybox",
        "command": ["sh", "-c", "echo starting; exit 3"],
    }
    apply(cluster, namespace, pod_manifest("crasher", [crasher]))

    def backing_off_after_two_restarts(pod: dict[str, Any]) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        return (
            int(statuses[0].get("restartCount", 0)) >= 2
            and waiting.get("reason") == "CrashLoopBackOff"
        )

    pod = wait_pod(
        cluster,
        local_node,
        namespace,
        "crasher",
        backing_off_after_two_restarts,
        "restarted twice and backed off",
    )
    (status,) = pod["status"]["containerStatuses"]
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")
    assert "back-off" in status["state"]["waiting"]["message"]
    assert status["ready"] is False and condition(pod, "Ready") == "False"
    assert pod["status"]["phase"] == "Running"
    log = (local_node.pod_dir(namespace, "crasher") / "crasher.log").read_text()
    assert log.count("starting") >= 3  # the first run and two restarts


def test_a_failing_init_container_reports_its_message_and_is_retried(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    fetch_init = {
        "name": "fetch",
        "image": "busybox",
        "command": ["sh", "-c", "echo 'digest mismatch' > /dev/termination-log; exit 1"],
    }
    main = {"name": "main", "image": "busybox", "command": ["sleep", "60"]}
    apply(cluster, namespace, pod_manifest("bad-init", [main], init=[fetch_init]))

    def retried(pod: dict[str, Any]) -> bool:
        statuses = pod.get("status", {}).get("initContainerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0)) >= 1 and bool(statuses[0].get("lastState"))

    pod = wait_pod(
        cluster, local_node, namespace, "bad-init", retried, "retried its init container"
    )
    status = pod["status"]
    (init_status,) = status["initContainerStatuses"]
    last = init_status["lastState"]["terminated"]
    assert (last["exitCode"], last["message"]) == (1, "digest mismatch\n")
    assert status["phase"] == "Pending"
    assert condition(pod, "Initialized") == "False"
    (main_status,) = status["containerStatuses"]
    assert "waiting" in main_status["state"], main_status
    assert not (local_node.pod_dir(namespace, "bad-init") / "main.log").exists()


def test_a_volume_the_node_cannot_provide_fails_the_pod(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    main = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "60"],
        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
    }
    volumes = [{"name": "host", "hostPath": {"path": "/etc"}}]
    apply(cluster, namespace, pod_manifest("host-path", [main], volumes=volumes))
    pod = wait_pod(
        cluster,
        local_node,
        namespace,
        "host-path",
        lambda p: p.get("status", {}).get("phase") == "Failed",
        "failed",
    )
    assert pod["status"]["reason"] == "UnsupportedVolume"
    assert "'host' is a hostPath volume" in pod["status"]["message"]
    assert not (local_node.pod_dir(namespace, "host-path") / "main.log").exists()


def test_deleting_a_pod_stops_its_process_then_removes_it(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    # It ignores SIGTERM, so only the agent's SIGKILL (after min(grace, 5 s)) ends it.
    stubborn = http_server(
        "stubborn",
        8080,
        ".",
        readinessProbe={"tcpSocket": {"port": 8080}},
    )
    stubborn["command"] = ["sh", "-c", 'trap "" TERM; exec python3 -m http.server "$@"', "sh"]
    apply(cluster, namespace, pod_manifest("doomed", [stubborn], grace=30))
    pod = wait_pod(cluster, local_node, namespace, "doomed", ready, "became Ready")
    ip = pod["status"]["podIP"]
    pid = container_pid(pod["status"]["containerStatuses"][0])
    assert pid_alive(pid)

    started = time.monotonic()
    cluster.kubectl("delete", "pod", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    took = time.monotonic() - started
    assert cluster.kubectl("get", "pod", "doomed", "-n", namespace, check=False).returncode != 0
    assert not pid_alive(pid), "the container's process outlived its pod"
    assert 4.0 <= took <= 20.0, f"deletion took {took:.1f}s: SIGKILL comes after 5 s, not 30"
    with pytest.raises(OSError):
        fetch(f"http://{ip}:8080/", timeout=2)


def test_a_pod_that_vanishes_has_its_processes_killed(
    cluster: Cluster, local_node: LocalNode, namespace: str
) -> None:
    sleeper = {"name": "sleeper", "image": "busybox", "command": ["sleep", "600"]}
    apply(cluster, namespace, pod_manifest("vanishing", [sleeper], grace=30))
    pod = wait_pod(cluster, local_node, namespace, "vanishing", ready, "became Ready")
    pid = container_pid(pod["status"]["containerStatuses"][0])
    # Forced: the object is gone at once, before the node has stopped anything.
    cluster.kubectl("delete", "pod", "vanishing", "-n", namespace, "--grace-period=0", "--force")
    cluster.wait_for(lambda: not pid_alive(pid), 10, f"process {pid} outlived its vanished pod")


@pytest.fixture(scope="module")
def triton_env() -> dict[str, Any]:
    """hack/triton_env.py's result (it is idempotent: a second run takes a moment)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "hack" / "triton_env.py")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, (
        f"hack/triton_env.py failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    cache = Path(os.environ.get("SMALLFLEET_CACHE") or Path.home() / ".cache" / "smallfleet")
    env: dict[str, Any] = json.loads((cache / "triton" / "env.json").read_text())
    return env


def test_tritonserver_runs_on_the_pod_ip_and_loads_a_model(
    cluster: Cluster, local_node: LocalNode, namespace: str, triton_env: dict[str, Any]
) -> None:
    triton = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
        "command": ["tritonserver"],
        "args": [
            "--model-control-mode=explicit",
            "--model-repository=/models",
            "--strict-readiness=false",
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "ports": [
            {"name": "http", "containerPort": 8000},
            {"name": "grpc", "containerPort": 8001},
            {"name": "metrics", "containerPort": 8002},
        ],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
        "volumeMounts": [
            {"name": "models", "mountPath": "/models"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes = [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    apply(cluster, namespace, pod_manifest("triton", [triton], volumes=volumes))
    pod = wait_pod(
        cluster,
        local_node,
        namespace,
        "triton",
        ready,
        "became Ready (tritonserver log: "
        f"{local_node.pod_dir(namespace, 'triton') / 'triton.log'})",
        timeout=TRITON_READY_TIMEOUT_S,
    )
    ip = pod["status"]["podIP"]
    pid = container_pid(pod["status"]["containerStatuses"][0])
    assert Path(f"/proc/{pid}/exe").resolve() == Path(triton_env["tritonserver"]).resolve()
    listeners = assert_listening_on_loopback([pid], "tritonserver")
    assert {(lst.address, lst.port) for lst in listeners} == {(ip, 8000), (ip, 8001), (ip, 8002)}

    config = {
        "name": "double",
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": {"EXECUTION_ENV_PATH": {"string_value": triton_env["execution_env_path"]}},
    }
    client = httpclient.InferenceServerClient(f"{ip}:8000", network_timeout=120)
    try:
        client.load_model(
            "double", config=json.dumps(config), files={"file:1/model.py": DOUBLE_MODEL.encode()}
        )
        assert client.is_model_ready("double")
        x = httpclient.InferInput("X", [4], "FP32")
        x.set_data_from_numpy(np.array([1.0, 2.0, 3.5, -4.0], dtype=np.float32))
        y = client.infer("double", [x]).as_numpy("Y")
    finally:
        client.close()
    assert y is not None and y.tolist() == [2.0, 4.0, 7.0, -8.0]
    # Triton refreshes its metrics on an interval (2 s by default), not per request.
    served = 'nv_inference_request_success{model="double",version="1"} 1'
    deadline = time.monotonic() + 15
    metrics = fetch(f"http://{ip}:8002/metrics")
    while served not in metrics and time.monotonic() < deadline:
        time.sleep(0.5)
        metrics = fetch(f"http://{ip}:8002/metrics")
    assert served in metrics
