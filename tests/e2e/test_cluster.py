"""The local cluster behaves like the GPU fleet the operator is written for.

Placement and scaling rest on what the real kube-scheduler does with GPU
requests, region affinity and taints, and the operator's safety rests on the
chart's RBAC actually being enforced. These tests check those foundations
with plain pods and plain kubectl, before any smallfleet code runs, and that
every process of the cluster, and the operator, listens on loopback only.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hack.cluster import (
    LOCAL_NODE_LABEL,
    Listener,
    assert_listening_on_loopback,
    listen_is_loopback,
    listening_in,
    non_loopback_addresses,
)
from tests.e2e.cluster import ChartRelease, Cluster, OperatorFactory

REGIONS = ("eu-north-1", "eu-west-1", "us-east-1")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def nodes(cluster: Cluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "nodes")["items"]
    return items


def gpu_pod(name: str, gpus: int, region: str | None) -> dict[str, Any]:
    affinity: dict[str, Any] = {}
    if region:
        term = {"key": "topology.kubernetes.io/region", "operator": "In", "values": [region]}
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [term]}]
                }
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "affinity": affinity,
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "triton",
                    "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def pod_ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod: dict[str, Any] = cluster.kubectl_json("get", "pod", name, "-n", namespace)
    conditions = pod.get("status", {}).get("conditions", [])
    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return pod
    return None


def test_nodes_span_three_regions_with_gpu_capacity_on_loopback(cluster: Cluster) -> None:
    by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cpu_only = []
    for node in nodes(cluster):
        labels = node["metadata"]["labels"]
        if labels.get("nvidia.com/gpu.present") == "true":
            by_region[labels["topology.kubernetes.io/region"]].append(node)
            assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) == 4
            assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node[
                "spec"
            ]["taints"]
            assert labels["topology.kubernetes.io/zone"].startswith(
                labels["topology.kubernetes.io/region"]
            )
        elif labels.get(LOCAL_NODE_LABEL) != "true":  # the real-Triton node is checked apart
            cpu_only.append(node)
        ips = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert ips and all(ipaddress.ip_address(ip) in LOOPBACK for ip in ips), ips
    assert sorted(by_region) == list(REGIONS)
    for region, gpu_nodes in by_region.items():
        products = {n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in gpu_nodes}
        assert {"NVIDIA-A10G", "NVIDIA-L4"} <= products, region
        zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in gpu_nodes}
        assert zones == {f"{region}a", f"{region}b"}
    assert "NVIDIA-H100-80GB-HBM3" in {
        n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in by_region["us-east-1"]
    }
    assert [n["metadata"]["labels"]["topology.kubernetes.io/region"] for n in cpu_only] == [
        "eu-west-1"
    ]
    assert "nvidia.com/gpu" not in cpu_only[0]["status"]["allocatable"]
    kubernetes = cluster.kubectl_json("get", "service", "kubernetes", "-n", "default")
    assert ipaddress.ip_address(kubernetes["spec"]["clusterIP"]) in ipaddress.ip_network(
        "127.2.0.0/16"
    )
    cluster.assert_loopback()


@pytest.mark.parametrize("region", REGIONS)
def test_gpu_pod_is_scheduled_in_its_region_and_becomes_ready(
    cluster: Cluster, namespace: str, region: str
) -> None:
    cluster.apply_yaml(_yaml(gpu_pod("gpu", 1, region)), namespace=namespace)
    pod = cluster.wait_for(
        lambda: pod_ready(cluster, namespace, "gpu"), 60, f"GPU pod in {region} never became Ready"
    )
    node = cluster.kubectl_json("get", "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["topology.kubernetes.io/region"] == region
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("127.1.0.0/16")
    cluster.assert_loopback()


def test_cpu_pod_lands_on_the_cpu_node(cluster: Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cpu"},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}
            ]
        },
    }
    cluster.apply_yaml(_yaml(pod), namespace=namespace)
    ready = cluster.wait_for(
        lambda: pod_ready(cluster, namespace, "cpu"), 60, "CPU pod never became Ready"
    )
    assert ready["spec"]["nodeName"] == "cpu-eu-west-1a"


def test_asking_for_more_gpus_than_any_node_has_stays_pending(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply_yaml(_yaml(gpu_pod("greedy", 5, "eu-west-1")), namespace=namespace)

    def unschedulable() -> str | None:
        pod = cluster.kubectl_json("get", "pod", "greedy", "-n", namespace)
        for c in pod.get("status", {}).get("conditions", []):
            if (
                c["type"] == "PodScheduled"
                and c["status"] == "False"
                and c.get("reason") == "Unschedulable"
            ):
                return str(c.get("message", ""))
        return None

    message = cluster.wait_for(
        unschedulable, 60, "the scheduler never reported the pod Unschedulable"
    )
    assert "Insufficient nvidia.com/gpu" in message
    pod = cluster.kubectl_json("get", "pod", "greedy", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_chart_role_denies_what_it_does_not_grant(
    cluster: Cluster, chart_installed: ChartRelease, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = cluster.token_kubeconfig(
        chart_installed.service_account, chart_installed.namespace, tmp_path / "sa.kubeconfig"
    )

    def as_operator(*args: str) -> tuple[int, str]:
        proc = cluster.kubectl(*args, check=False, kubeconfig=kubeconfig)
        return proc.returncode, proc.stdout + proc.stderr

    # What the operator needs works with this identity...
    assert as_operator("get", "nodes")[0] == 0
    assert as_operator("get", "smallmodels,modelpipelines", "-A")[0] == 0
    code, out = as_operator("create", "configmap", "probe", "-n", namespace, "--dry-run=server")
    assert code == 0, out
    # ...and what it does not need is refused by the API server.
    for denied in (
        ("delete", "node", "cpu-eu-west-1a", "--dry-run=server"),
        ("get", "secrets", "-n", "kube-system"),
        ("get", "secrets", "-n", namespace),
        ("create", "namespace", "not-allowed", "--dry-run=server"),
        (
            "delete",
            "customresourcedefinition",
            "smallmodels.serving.smallfleet.io",
            "--dry-run=server",
        ),
        (
            "create",
            "clusterrolebinding",
            "escalate",
            "--clusterrole=cluster-admin",
            "--user=x",
            "--dry-run=server",
        ),
    ):
        code, out = as_operator(*denied)
        assert code != 0 and "forbidden" in out.lower(), f"{denied}: {out}"
    code, out = as_operator("auth", "can-i", "delete", "nodes", "--all-namespaces")
    assert code != 0 and out.splitlines()[0] == "no", out


def _yaml(obj: dict[str, Any]) -> str:
    return json.dumps(obj) + "\n"


def _node(ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "n"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def _service(*ips: str) -> dict[str, Any]:
    return {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"clusterIPs": list(ips)}}


def _pod(ip: str) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "status": {"podIPs": [{"ip": ip}]}}


@pytest.mark.parametrize(
    ("nodes", "services", "pods", "flagged"),
    [
        ([_node("127.0.0.1")], [_service("127.2.0.1")], [_pod("127.1.0.7")], []),
        ([_node("10.0.0.4")], [], [], ["node n InternalIP 10.0.0.4"]),
        ([], [_service("127.2.0.9", "fd00::1")], [], ["service ns/s ClusterIP fd00::1"]),
        ([], [_service("None")], [], []),  # headless
        ([], [], [_pod("10.0.0.1")], ["pod ns/p IP 10.0.0.1"]),
        ([], [], [_pod("not-an-ip")], ["pod ns/p IP not-an-ip"]),
        (
            [_node("::1")],
            [],
            [_pod("192.168.1.2")],
            ["pod ns/p IP 192.168.1.2", "node n InternalIP ::1"],
        ),
    ],
)
def test_non_loopback_addresses_are_all_reported(
    nodes: list[dict[str, Any]],
    services: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    flagged: list[str],
) -> None:
    # Pure: the rule assert_loopback enforces, without a cluster.
    assert sorted(non_loopback_addresses(nodes, services, pods)) == sorted(flagged)


# --------------------------------------------------------------------------- listening addresses

# Flags by which kwokctl tells each component where to listen; each must appear once, on
# 127.0.0.1 (extraArgs in kwokctl.yaml would append a second, conflicting one).
BIND_FLAGS = {
    "etcd": ("--listen-client-urls", "--listen-peer-urls"),
    "kube-apiserver": ("--bind-address",),
    "kube-controller-manager": ("--bind-address",),
    "kube-scheduler": ("--bind-address",),
    "kwok-controller": ("--server-address",),
}


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_every_cluster_process_listens_on_loopback_only(cluster: Cluster) -> None:
    seen = cluster.assert_listening_on_loopback()  # fails naming process and address
    by_pid: dict[int, list[Listener]] = defaultdict(list)
    for listener in seen:
        by_pid[listener.pid].append(listener)
    components = {Path(_argv(pid)[0]).name: pid for pid in by_pid}
    assert set(BIND_FLAGS) <= set(components), sorted(components)
    for component, flags in BIND_FLAGS.items():
        argv = _argv(components[component])
        for flag in flags:
            given = [a.split("=", 1)[1] for a in argv if a.startswith(f"{flag}=")]
            assert len(given) == 1, f"{component}: {flag} given {len(given)} times: {given}"
            host = given[0].removeprefix("http://").rsplit(":", 1)[0]
            assert host == "127.0.0.1", f"{component} {flag}={given[0]}"
        assert all(lst.address == "127.0.0.1" for lst in by_pid[components[component]]), by_pid[
            components[component]
        ]


def test_the_operator_listens_on_loopback_only(
    operator_process: OperatorFactory, namespace: str
) -> None:
    # As the chart runs it: SMALLFLEET_BIND_ADDRESS from the pod IP, loopback here.
    operator = operator_process(namespace)
    assert operator.env["SMALLFLEET_BIND_ADDRESS"] == "127.0.0.1"
    seen = assert_listening_on_loopback([operator.pid], "the operator")
    listening = {(lst.address, lst.port) for lst in seen}
    assert {("127.0.0.1", operator.metrics_port), ("127.0.0.1", operator.health_port)} <= (
        listening
    ), listening
    assert "process_resident_memory_bytes" in operator.metrics()


# A /proc/net/tcp{,6} table: LISTEN rows (st 0A) on a wildcard, loopback and other addresses,
# and one established connection (st 01) that is no listener.
_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1
   1: 0100007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12 1
   2: 0300017F:1F42 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 13 1
   3: 0100007F:192B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 14 1
"""
_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 0 0 0 0 0 21 1
   1: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 0 0 0 0 0 22 1
   2: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 0 0 0 0 0 23 1
   3: 000000FD000000000000000017000000:0050 00000000000000000000000000000000:0000 0A 0 0 0 0 0 24 1
"""


def test_listening_rows_are_read_with_their_addresses() -> None:
    # Pure: what assert_listening_on_loopback reads from /proc, without a cluster.
    assert listening_in(_TCP) == [("0.0.0.0", 2379), ("127.0.0.1", 6443), ("127.1.0.3", 8002)]
    assert listening_in(_TCP, {"12", "14"}) == [("127.0.0.1", 6443)]
    assert listening_in(_TCP6) == [
        ("::", 10250),
        ("::1", 9090),
        ("127.0.0.1", 8081),
        ("fd00::17", 80),
    ]
    loopback = {a for a, _ in listening_in(_TCP) + listening_in(_TCP6) if listen_is_loopback(a)}
    assert loopback == {"127.0.0.1", "127.1.0.3", "::1"}
    assert str(Listener(7, "etcd", "0.0.0.0", 2379)) == "etcd (pid 7) listens on 0.0.0.0:2379"
    assert str(Listener(7, "etcd", "::", 2379)) == "etcd (pid 7) listens on [::]:2379"
