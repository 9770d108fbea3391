"""The local multi-region cluster: a real control plane with fake GPU nodes.

`make cluster`, `make demo` and the end-to-end tests all need the same thing:
kube-apiserver, etcd, kube-controller-manager and kube-scheduler built from Go
modules, run by kwokctl's binary runtime, with KWOK simulating GPU nodes in
three regions. This module is the one place that knows how to start, reuse,
check and stop it, so the command line and the pytest fixtures cannot drift.

Two properties matter more than speed:

* Nothing is downloaded at start: every component binary is passed to kwokctl
  explicitly (its defaults point at release sites this machine cannot reach).
* Every address is loopback (see hack/kwok/kwokctl.yaml). `Cluster.assert_loopback`
  fails loudly if a node, Service or pod address leaves 127.0.0.0/8, before any
  traffic is sent, and every component listens on 127.0.0.1 only:
  `assert_listening_on_loopback` fails, naming the process and the address,
  when one listens on a wildcard or any other non-loopback address.

One node can be real: `Cluster.ensure_local_node()` (or `up --real-node`)
starts hack/localnode.py in the background, which registers the node
`triton-local` and runs the pods bound to it as local processes on loopback
pod IPs (127.3.x.y). KWOK is told to manage only the nodes annotated
`kwok.x-k8s.io/node: fake`, so it leaves that node alone; `down` stops the
agent and its processes.

Usage: python -m hack.cluster up|down|status|kubeconfig [--name NAME] [--kubeconfig PATH]
       [--real-node]
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from hack import localnode

REPO: Final = Path(__file__).resolve().parent.parent
HACK: Final = REPO / "hack"
KWOK_DIR: Final = HACK / "kwok"
KWOKCTL_CONFIG: Final = KWOK_DIR / "kwokctl.yaml"
NODES_MANIFEST: Final = KWOK_DIR / "nodes.yaml"
CACHE: Final = Path(os.environ.get("SMALLFLEET_CACHE", Path.home() / ".cache" / "smallfleet"))
KWOK_HOME: Final = Path(os.environ.get("KWOK_WORKDIR", Path.home() / ".kwok"))

DEFAULT_NAME: Final = "smallfleet"
NAME_ENV: Final = "SMALLFLEET_CLUSTER_NAME"
LOOPBACK: Final = ipaddress.ip_network("127.0.0.0/8")

# What the cluster needs from hack/build-bins.sh, by build target.
BUILD_TARGETS: Final[dict[str, tuple[str, ...]]] = {
    "k8s": ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd"),
    "kwok": ("kwok", "kwokctl"),
    "helm": ("helm",),
    "keda": ("crds/keda/keda.sh_scaledobjects.yaml",),
    "prometheus": (
        "crds/prometheus/monitoring.coreos.com_servicemonitors.yaml",
        "crds/prometheus/monitoring.coreos.com_podmonitors.yaml",
    ),
    "gateway-api": (
        "crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml",
        "crds/gateway-api/gateway.networking.k8s.io_grpcroutes.yaml",
    ),
}
REGIONS: Final = ("eu-north-1", "eu-west-1", "us-east-1")
GPU_TAINT_KEY: Final = "nvidia.com/gpu"
START_TIMEOUT_S: Final = 180.0
LOCAL_NODE_START_TIMEOUT_S: Final = 60.0
# KWOK fakes only these nodes; the local node lacks the annotation and runs real processes.
KWOK_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node=fake"

# The real node (hack/localnode.py): its name, place, and what a pod needs to land there.
LOCAL_NODE_NAME: Final = localnode.NODE_NAME
LOCAL_NODE_REGION: Final = localnode.REGION
LOCAL_NODE_ZONE: Final = localnode.ZONE
LOCAL_NODE_LABEL: Final = localnode.REAL_TRITON_LABEL
LOCAL_NODE_SELECTOR: Final = dict(localnode.NODE_SELECTOR)
LOCAL_NODE_TOLERATION: Final = dict(localnode.TOLERATION)
LOCAL_POD_CIDR: Final = localnode.POD_CIDR

T = TypeVar("T")


class ClusterError(RuntimeError):
    """A component failed; the message carries its output so the cause is visible."""


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def cluster_name(default: str = DEFAULT_NAME) -> str:
    return os.environ.get(NAME_ENV) or default


# --------------------------------------------------------------------------- binaries


def bin_dir_for_versions() -> Path:
    """The directory hack/build-bins.sh builds into (keyed by hack/versions.env)."""
    key = hashlib.sha256((HACK / "versions.env").read_bytes()).hexdigest()[:12]
    return CACHE / "bin" / key


def _missing(bin_dir: Path, names: Sequence[str]) -> list[str]:
    def present(name: str) -> bool:
        path = bin_dir / name
        return path.is_file() if name.endswith(".yaml") else os.access(path, os.X_OK)

    return [n for n in names if not present(n)]


def _build_running() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", "build-bins.sh"], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def ensure_binaries(targets: Sequence[str] = tuple(BUILD_TARGETS)) -> Path:
    """Return the bin directory, building what is missing with hack/build-bins.sh.

    Builds are serialised: a build already running (started by anyone) is waited
    for rather than raced, and a lock keeps two callers from starting two.
    """
    bin_dir = bin_dir_for_versions()
    wanted = [b for t in targets for b in BUILD_TARGETS.get(t, ())]
    if not _missing(bin_dir, wanted):
        return bin_dir
    CACHE.mkdir(parents=True, exist_ok=True)
    with _file_lock(CACHE / "build-bins.lock"):
        waited = 0.0
        while _missing(bin_dir, wanted) and _build_running():
            if waited % 60 == 0:
                log(f"a build is running; waiting for {', '.join(_missing(bin_dir, wanted))}")
            time.sleep(5)
            waited += 5
        for target in targets:
            if not _missing(bin_dir, BUILD_TARGETS.get(target, ())):
                continue
            log(f"building {target} binaries (cold builds take minutes; progress below)")
            proc = subprocess.run(
                [str(HACK / "build-bins.sh"), target],
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise ClusterError(f"hack/build-bins.sh {target} failed (exit {proc.returncode})")
            bin_dir = Path(lines[-1])
    missing = _missing(bin_dir, wanted)
    if missing:
        raise ClusterError(f"binaries still missing in {bin_dir}: {', '.join(missing)}")
    return bin_dir


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"`{' '.join(str(a) for a in argv)}` exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
        )
    return proc


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.5,
) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    An exception inside the predicate counts as "not yet" but is reported if the
    wait times out, so a failing wait says what it last saw.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the predicate's own failure is only "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            if last_error is not None:
                text += f" (last error: {last_error})"
            raise TimeoutError(f"{text} — gave up after {timeout:.0f}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where its kubeconfig and binaries are, and how to talk to it."""

    name: str
    kubeconfig: Path
    bin_dir: Path
    created: bool = field(default=False, compare=False)  # False when an existing one was reused

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        kc = kubeconfig or self.kubeconfig
        return _run(
            [self.bin_dir / "kubectl", f"--kubeconfig={kc}", *args],
            env=self.env,
            input=input,
            check=check,
            timeout=timeout,
        )

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply_yaml(
        self,
        text_or_path: str | Path,
        server_side: bool = True,
        namespace: str | None = None,
        field_manager: str = "smallfleet-tests",
    ) -> subprocess.CompletedProcess[str]:
        """Apply manifests from a file, a directory or YAML text."""
        args = ["apply"]
        if server_side:
            args += ["--server-side", "--force-conflicts", f"--field-manager={field_manager}"]
        if namespace:
            args += ["-n", namespace]
        is_path = isinstance(text_or_path, Path) or (
            "\n" not in text_or_path and Path(text_or_path).exists()
        )
        if is_path:
            return self.kubectl(*args, "-f", str(text_or_path))
        return self.kubectl(*args, "-f", "-", input=str(text_or_path))

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        if not os.access(self.bin_dir / "helm", os.X_OK):
            ensure_binaries(("helm",))
        return _run(
            [self.bin_dir / "helm", f"--kubeconfig={self.kubeconfig}", *args],
            env=self.env,
            check=check,
            timeout=timeout,
        )

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float,
        message: str | Callable[[], str],
        interval: float = 0.5,
    ) -> T:
        return wait_for(predicate, timeout, message, interval)

    def healthy(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        proc = self.kubectl("get", "--raw", "/readyz", check=False, timeout=15)
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    def assert_loopback(self) -> None:
        """Fail loudly if any node, Service or pod address is outside 127.0.0.0/8."""
        bad = non_loopback_addresses(
            self.kubectl_json("get", "nodes")["items"],
            self.kubectl_json("get", "services", "-A")["items"],
            self.kubectl_json("get", "pods", "-A")["items"],
        )
        if bad:
            raise ClusterError(
                "cluster addresses outside 127.0.0.0/8 (refusing to send traffic to them; "
                f"check {KWOKCTL_CONFIG}):\n  " + "\n  ".join(bad)
            )

    def assert_listening_on_loopback(self) -> list[Listener]:
        """Fail, naming process and address, if a component listens beyond 127.0.0.0/8.

        Returns the listeners seen (etcd, kube-apiserver, controller-manager,
        scheduler, kwok-controller).
        """
        pids = _cluster_pids(self.name)
        if not pids:
            raise ClusterError(
                f"no process of cluster {self.name!r} found (kwokctl workdir {KWOK_HOME})"
            )
        try:
            return assert_listening_on_loopback(pids, f"processes of cluster {self.name!r}")
        except ClusterError as exc:
            raise ClusterError(
                f"{exc}\n(bindAddress comes from {KWOKCTL_CONFIG}; a cluster created before it "
                f"was set must be recreated: python -m hack.cluster down --name {self.name})"
            ) from None

    def ensure_local_node(self, timeout: float = LOCAL_NODE_START_TIMEOUT_S) -> LocalNode:
        """Start the real node's agent for this cluster unless it runs; wait until it is Ready."""
        return ensure_local_node(self, timeout)

    def server_and_ca(self) -> tuple[str, str]:
        """The API server URL and its CA (base64), from the admin kubeconfig."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca = cluster.get("certificate-authority-data")
        if ca is None:
            ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        return cluster["server"], ca

    def token_kubeconfig(
        self, service_account: str, namespace: str, path: Path, duration: str = "24h"
    ) -> Path:
        """Write a kubeconfig that authenticates as a ServiceAccount (a bound token)."""
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        server, ca = self.server_and_ca()
        user = f"system:serviceaccount:{namespace}:{service_account}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": self.name, "cluster": {"server": server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": user,
                    "context": {"cluster": self.name, "user": user, "namespace": namespace},
                }
            ],
            "current-context": user,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def non_loopback_addresses(
    nodes: Sequence[dict[str, Any]],
    services: Sequence[dict[str, Any]],
    pods: Sequence[dict[str, Any]],
) -> list[str]:
    """Every node, Service and pod address that is not in 127.0.0.0/8, described."""
    bad: list[str] = []
    for node in nodes:
        for addr in node.get("status", {}).get("addresses", []):
            if addr["type"] in ("InternalIP", "ExternalIP") and not _is_loopback(addr["address"]):
                bad.append(f"node {node['metadata']['name']} {addr['type']} {addr['address']}")
    for svc in services:
        spec = svc.get("spec", {})
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None" and not _is_loopback(ip):
                meta = svc["metadata"]
                bad.append(f"service {meta['namespace']}/{meta['name']} ClusterIP {ip}")
    for pod in pods:
        for entry in pod.get("status", {}).get("podIPs") or []:
            if not _is_loopback(entry["ip"]):
                meta = pod["metadata"]
                bad.append(f"pod {meta['namespace']}/{meta['name']} IP {entry['ip']}")
    return bad


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in LOOPBACK
    except ValueError:
        return False


# --------------------------------------------------------------------------- listening sockets


@dataclass(frozen=True)
class Listener:
    """A TCP socket in LISTEN state and the process that holds it."""

    pid: int
    process: str
    address: str  # "0.0.0.0" and "::" are the wildcards
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.process} (pid {self.pid}) listens on {host}:{self.port}"


def _proc_address(text: str) -> str:
    """An address as /proc/net/tcp{,6} prints it (host-order 32-bit words), IPv4-mapped unwrapped."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    addr = ipaddress.IPv6Address(words)
    return str(addr.ipv4_mapped or addr)


def listen_is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1; a wildcard (0.0.0.0, ::) or any other address is not."""
    addr = ipaddress.ip_address(address)
    return addr in LOOPBACK or addr == ipaddress.IPv6Address("::1")


def process_tree(pids: Iterable[int]) -> list[int]:
    """The given processes and all their descendants (children run servers too)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children.get(pid, [])
    return seen


def listeners(pids: Iterable[int]) -> list[Listener]:
    """Every TCP socket in LISTEN state held by these processes (read from /proc, no `ss`)."""
    found: list[Listener] = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            inodes = set()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:  # gone meanwhile
            continue
        for table in ("tcp", "tcp6"):
            try:
                text = Path(f"/proc/{pid}/net/{table}").read_text()
            except OSError:
                continue
            found += [Listener(pid, name, a, p) for a, p in listening_in(text, inodes)]
    return found


def listening_in(table: str, inodes: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """(address, port) of the LISTEN rows of a /proc/net/tcp{,6} table, of these socket inodes."""
    wanted = None if inodes is None else set(inodes)
    found = []
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != "0A":  # 0A: LISTEN
            continue
        if wanted is not None and cols[9] not in wanted:
            continue
        address, port = cols[1].split(":")
        found.append((_proc_address(address), int(port, 16)))
    return found


def assert_listening_on_loopback(pids: Iterable[int], what: str) -> list[Listener]:
    """Fail, naming each process and address, if any of them listens beyond loopback.

    Returns every listener seen, so a caller can also check that there were some.
    """
    tree = process_tree(pids)
    seen = listeners(tree)
    bad = [lst for lst in seen if not listen_is_loopback(lst.address)]
    if bad:
        raise ClusterError(
            f"{what} listen beyond loopback (every local process must listen on "
            "127.0.0.0/8 only):\n  " + "\n  ".join(str(b) for b in bad)
        )
    return seen


# --------------------------------------------------------------------------- chart and operator

CHART: Final = REPO / "charts" / "smallfleet"
CRDS: Final = REPO / "crds"
OPERATOR_RELEASE: Final = "smallfleet"
OPERATOR_NAMESPACE: Final = "smallfleet-system"


@dataclass(frozen=True)
class ChartRelease:
    release: str
    namespace: str
    service_account: str
    deployment: str


def install_crds(cluster: Cluster) -> list[str]:
    """Apply crds/ server-side and wait until every CRD is Established."""
    files = sorted(CRDS.glob("*.yaml"))
    if not files:
        raise ClusterError(f"no CRDs in {CRDS}: the API definitions are missing")
    cluster.apply_yaml(CRDS)
    names = [f.name.removesuffix(".yaml") for f in files]
    wait_established(cluster, names)
    return names


def wait_established(cluster: Cluster, names: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until each CRD is Established (`kubectl wait` fails while status is still empty)."""

    def established(name: str) -> bool:
        crd = cluster.kubectl_json("get", "crd", name)
        conditions = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    for name in names:
        cluster.wait_for(
            functools.partial(established, name), timeout, f"CRD {name} never became Established"
        )


def install_keda_crds(cluster: Cluster) -> None:
    """KEDA's CRDs (from its Go module), so ScaledObjects can be applied without KEDA running."""
    crds = ensure_binaries(("keda",)) / "crds" / "keda"
    cluster.apply_yaml(crds)
    wait_established(cluster, ["scaledobjects.keda.sh"])


def install_prometheus_crds(cluster: Cluster) -> None:
    """The Prometheus Operator's ServiceMonitor and PodMonitor CRDs (from its Go module).

    The chart's monitoring objects are only accepted by an API server that
    serves these kinds; no Prometheus Operator runs.
    """
    crds = ensure_binaries(("prometheus",)) / "crds" / "prometheus"
    wanted = [crds.parent.parent / f for f in BUILD_TARGETS["prometheus"]]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        raise ClusterError(
            "the Prometheus Operator CRDs are missing (hack/build-bins.sh prometheus fetches "
            f"them from the Go module proxy): {', '.join(missing)}"
        )
    cluster.apply_yaml(crds)
    wait_established(
        cluster, ["servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com"]
    )


def install_gateway_api_crds(cluster: Cluster) -> None:
    """The Gateway API's standard CRDs (from its Go module), for spec.expose's routes.

    The API server then validates the HTTPRoutes and GRPCRoutes the operator
    renders against the real schema; no gateway controller runs, so a test
    writes a route's status itself, as one would.
    """
    crds = ensure_binaries(("gateway-api",)) / "crds" / "gateway-api"
    wanted = [crds.parent.parent / f for f in BUILD_TARGETS["gateway-api"]]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        raise ClusterError(
            "the Gateway API CRDs are missing (hack/build-bins.sh gateway-api fetches them "
            f"from the Go module proxy): {', '.join(missing)}"
        )
    cluster.apply_yaml(crds)
    wait_established(
        cluster,
        ["httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"],
    )


def install_chart(
    cluster: Cluster,
    release: str = OPERATOR_RELEASE,
    namespace: str = OPERATOR_NAMESPACE,
    values: Sequence[str] = (),
    *,
    crds: bool = False,
) -> ChartRelease:
    """`helm upgrade --install` the chart with the operator Deployment scaled to zero.

    Pods are simulated here, so the operator runs as a local process instead,
    with the chart's ServiceAccount and environment (see `operator_command`).
    The CRDs come from `install_crds` (crds/ itself) unless `crds` is set: a
    CRD belongs to the one release that rendered it, and the harness installs
    several releases into one cluster.
    """
    cluster.helm(
        "upgrade",
        "--install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        "replicas=0",
        "--set",
        f"crds.enabled={'true' if crds else 'false'}",
        *values,
        "--wait",
        "--timeout=2m",
    )
    found = cluster.kubectl_json(
        "get",
        "deployments",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
    )["items"]
    if len(found) != 1:
        raise ClusterError(
            f"expected one operator Deployment of release {release}, found {len(found)}"
        )
    return ChartRelease(
        release=release,
        namespace=namespace,
        service_account=found[0]["spec"]["template"]["spec"]["serviceAccountName"],
        deployment=found[0]["metadata"]["name"],
    )


def deployment_env(cluster: Cluster, chart: ChartRelease) -> dict[str, str]:
    """The environment the chart's operator Deployment sets, resolved as the kubelet would."""
    deployment = cluster.kubectl_json("get", "deployment", chart.deployment, "-n", chart.namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            # A local process's "pod IP" is loopback: it listens where the kubelet would dial.
            env[var["name"]] = {
                "metadata.name": f"{chart.deployment}-local",
                "metadata.namespace": chart.namespace,
                "status.podIP": "127.0.0.1",
            }.get(source["fieldRef"]["fieldPath"], "")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            proc = cluster.kubectl(
                "get", "secret", ref["name"], "-n", chart.namespace, "-o", "json", check=False
            )
            data = json.loads(proc.stdout).get("data", {}) if proc.returncode == 0 else {}
            if ref["key"] in data:
                env[var["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise ClusterError(f"secret {ref['name']} lacks key {ref['key']} for {var['name']}")
    return env


def operator_command(
    cluster: Cluster,
    chart: ChartRelease,
    kubeconfig: Path,
    metrics_port: int,
    health_port: int,
    namespace: str | None = None,
    extra_args: Sequence[str] = (),
    smallfleet: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `smallfleet run` as the chart's Deployment would run it.

    `kubeconfig` is written here and authenticates with a token of the chart's
    ServiceAccount, so the chart's RBAC is what the operator gets. None as
    namespace watches all namespaces.
    """
    cluster.token_kubeconfig(chart.service_account, chart.namespace, kubeconfig)
    exe = smallfleet or Path(sys.executable).parent / "smallfleet"
    if not exe.exists():
        raise ClusterError(f"{exe} is missing: install the project (make venv)")
    argv = [str(exe), "run"]
    argv += ["--all-namespaces"] if namespace is None else ["--namespace", namespace]
    argv += ["--metrics-port", str(metrics_port), "--health-port", str(health_port), *extra_args]
    chart_env = deployment_env(cluster, chart)
    chart_env["SMALLFLEET_METRICS_PORT"] = str(metrics_port)
    chart_env["SMALLFLEET_HEALTH_PORT"] = str(health_port)
    if namespace is None:
        chart_env.pop("SMALLFLEET_NAMESPACE", None)
    else:
        chart_env["SMALLFLEET_NAMESPACE"] = namespace
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMALLFLEET_")}
    env.update(chart_env)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PYTHONUNBUFFERED"] = "1"
    return argv, env


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: each socket stays bound until all are chosen, so none repeats."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


# --------------------------------------------------------------------------- lifecycle


def _kwokctl(
    bin_dir: Path, *args: str, check: bool = True, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return _run([bin_dir / "kwokctl", *args], env=env, check=check, timeout=timeout)


def exists(name: str, bin_dir: Path | None = None) -> bool:
    bin_dir = bin_dir or bin_dir_for_versions()
    if not os.access(bin_dir / "kwokctl", os.X_OK):
        return (KWOK_HOME / "clusters" / name).is_dir()
    out = _kwokctl(bin_dir, "get", "clusters", check=False).stdout
    return name in out.split()


def _component_log_tail(name: str, lines: int = 30) -> str:
    logs = KWOK_HOME / "clusters" / name / "logs"
    if not logs.is_dir():
        return "(no component logs)"
    parts = []
    for f in sorted(logs.glob("*.log")):
        tail = f.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {f.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def up(
    name: str,
    kubeconfig: Path,
    bin_dir: Path | None = None,
    *,
    config: Path | None = None,
    real_node: bool = False,
) -> Cluster:
    """Start the cluster NAME (or reuse a healthy one), add the nodes, write KUBECONFIG.

    `config` replaces hack/kwok/kwokctl.yaml for a cluster created now (the
    benchmarks raise the control plane's limits and turn on an audit log).
    `real_node` also starts the local node agent (see `ensure_local_node`).
    """
    bin_dir = bin_dir or ensure_binaries(("k8s", "kwok"))
    kubeconfig = kubeconfig.resolve()
    with _file_lock(CACHE / "clusters" / f"{name}.lock"):
        created = False
        if exists(name, bin_dir):
            _write_kubeconfig(name, bin_dir, kubeconfig)
            cluster = Cluster(name, kubeconfig, bin_dir)
            if cluster.healthy():
                log(f"reusing cluster {name!r}")
            else:
                log(f"cluster {name!r} exists but does not answer; recreating it")
                _delete(name, bin_dir)
        if not exists(name, bin_dir):
            _create(name, bin_dir, config or KWOKCTL_CONFIG)
            created = True
            _write_kubeconfig(name, bin_dir, kubeconfig)
        cluster = Cluster(name, kubeconfig, bin_dir, created=created)
        try:
            wait_for(
                cluster.healthy, START_TIMEOUT_S, f"kube-apiserver of {name!r} never became ready"
            )
            _add_nodes(cluster)
            cluster.assert_loopback()
            cluster.assert_listening_on_loopback()
        except (ClusterError, TimeoutError) as exc:
            raise ClusterError(f"{exc}\n{_component_log_tail(name)}") from exc
    if real_node:
        cluster.ensure_local_node()
    return cluster


def _create(name: str, bin_dir: Path, config: Path) -> None:
    log(f"creating cluster {name!r} (kwokctl, binary runtime, nothing downloaded)")
    # kwokctl has no --kubectl-binary flag: it finds kubectl on PATH, which
    # _kwokctl points at the bin directory so it never downloads one.
    # kwokctl records the new context in this kubeconfig; a throwaway one keeps
    # the user's ~/.kube/config untouched. The real one is written afterwards.
    scratch = CACHE / "clusters" / f"{name}.kwokctl-kubeconfig"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "create",
        "cluster",
        f"--name={name}",
        "--runtime=binary",
        f"--config={_kwokctl_config(name, config)}",
        f"--kubeconfig={scratch}",
        f"--kube-apiserver-binary={bin_dir / 'kube-apiserver'}",
        f"--kube-controller-manager-binary={bin_dir / 'kube-controller-manager'}",
        f"--kube-scheduler-binary={bin_dir / 'kube-scheduler'}",
        f"--etcd-binary={bin_dir / 'etcd'}",
        f"--kwok-controller-binary={bin_dir / 'kwok'}",
        "--kube-authorization=true",
        "--wait=2m",
    ]
    proc = _kwokctl(bin_dir, *args, check=False, timeout=300)
    if proc.returncode != 0:
        detail = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}\n{_component_log_tail(name)}"
        _kwokctl(bin_dir, "delete", "cluster", f"--name={name}", check=False)
        raise ClusterError(
            f"kwokctl create cluster {name!r} failed (exit {proc.returncode})\n{detail}"
        )


def _kwokctl_config(name: str, config: Path) -> Path:
    """`config` plus the kwok-controller flags that keep KWOK off nodes not annotated fake.

    kwokctl's binary runtime starts kwok-controller with --manage-all-nodes=true,
    which would fake the status of the local node's pods too. Extra args are
    appended after kwokctl's own, and the last value of a flag wins. Added here
    rather than in each config, so a benchmark's own config gets them as well.
    """
    docs = [d for d in yaml.safe_load_all(config.read_text()) if d]
    kwokctl = next((d for d in docs if d.get("kind") == "KwokctlConfiguration"), None)
    if kwokctl is None:
        kwokctl = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration"}
        docs.insert(0, kwokctl)
    patches = kwokctl.setdefault("componentsPatches", [])
    patch = next((p for p in patches if p.get("name") == "kwok-controller"), None)
    if patch is None:
        patch = {"name": "kwok-controller"}
        patches.append(patch)
    extra = patch.setdefault("extraArgs", [])
    present = {a.get("key") for a in extra}
    for key, value in (
        ("manage-all-nodes", "false"),
        ("manage-nodes-with-annotation-selector", KWOK_NODE_ANNOTATION),
    ):
        if key not in present:
            extra.append({"key": key, "value": value})
    out = CACHE / "clusters" / f"{name}.kwokctl.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def _write_kubeconfig(name: str, bin_dir: Path, kubeconfig: Path) -> None:
    text = _kwokctl(bin_dir, "get", "kubeconfig", f"--name={name}").stdout
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=kubeconfig.parent, prefix=".kubeconfig-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, kubeconfig)


def _add_nodes(cluster: Cluster) -> None:
    cluster.apply_yaml(NODES_MANIFEST, server_side=False)
    expected = {
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(NODES_MANIFEST.read_text())
        if doc and doc.get("kind") == "Node"
    }

    def all_ready() -> bool:
        items = cluster.kubectl_json("get", "nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return expected <= ready

    cluster.wait_for(all_ready, 60, f"KWOK never marked the nodes Ready: {sorted(expected)}")


def _cluster_pids(name: str) -> list[int]:
    """Processes whose command line points into this cluster's kwokctl directory."""
    marker = str(KWOK_HOME / "clusters" / name) + "/"
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (
                (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if marker in cmdline and int(proc_dir.name) != os.getpid():
            pids.append(int(proc_dir.name))
    return pids


def _delete(name: str, bin_dir: Path) -> None:
    # First, so the agent ends its pods' processes (not all carry the cluster's path).
    stop_local_node(name)
    _kwokctl(bin_dir, "delete", "cluster", f"--name={name}", check=False)
    deadline = time.monotonic() + 15
    while _cluster_pids(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    stray = _cluster_pids(name)
    for pid in stray:
        log(f"stopping stray process {pid} of cluster {name!r}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (CACHE / "clusters" / f"{name}.kwokctl-kubeconfig").unlink(missing_ok=True)
    (CACHE / "clusters" / f"{name}.kwokctl.yaml").unlink(missing_ok=True)
    leftover = KWOK_HOME / "clusters" / name
    if leftover.exists():
        shutil.rmtree(leftover, ignore_errors=True)


def down(name: str) -> None:
    """Delete the cluster NAME and make sure none of its processes survive."""
    bin_dir = bin_dir_for_versions()
    with _file_lock(CACHE / "clusters" / f"{name}.lock"):
        if not exists(name, bin_dir) and not _cluster_pids(name):
            stop_local_node(name)
            log(f"no cluster {name!r}")
            return
        log(f"deleting cluster {name!r}")
        _delete(name, bin_dir)
        stray = _cluster_pids(name)
        if stray:
            raise ClusterError(f"processes of cluster {name!r} survived deletion: {stray}")
        (CACHE / "clusters" / f"{name}.persistent").unlink(missing_ok=True)


# --------------------------------------------------------------------------- the local node


@dataclass(frozen=True)
class LocalNode:
    """The agent of the real node (hack/localnode.py) running for a cluster."""

    name: str
    pid: int
    workdir: Path

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """Where a pod's volumes and container logs (<container>.log) are."""
        return self.workdir / f"{namespace}_{pod}"

    def running(self) -> bool:
        return _agent_alive(self.pid)


def local_node_dir(name: str) -> Path:
    """The agent's directory: inside kwokctl's cluster directory, so it goes with the cluster."""
    return KWOK_HOME / "clusters" / name / "localnode"


def _agent_alive(pid: int) -> bool:
    """True while `pid` is a live (not zombie) hack.localnode process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z" and b"hack.localnode" in cmdline


def _local_node_pid(name: str) -> int | None:
    pidfile = local_node_dir(name) / "agent.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _agent_alive(pid) else None


def _kwok_manages_all_nodes(name: str) -> bool:
    """True if the cluster's kwok-controller was started to take every node (older clusters)."""
    for pid in _cluster_pids(name):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if Path(argv[0]).name not in ("kwok", "kwok-controller"):
            continue
        values = [a.split("=", 1)[1] for a in argv if a.startswith("--manage-all-nodes=")]
        return bool(values) and values[-1] == "true"
    return False


def ensure_local_node(cluster: Cluster, timeout: float = LOCAL_NODE_START_TIMEOUT_S) -> LocalNode:
    """Start hack/localnode.py for `cluster` unless it runs; return once its node is Ready.

    The agent runs in the background (its own session, a pidfile and log in
    `local_node_dir`), outlives the caller like the cluster does, and is
    stopped by `down`. Fails with the agent's log when it does not come up.
    """
    workdir = local_node_dir(cluster.name)
    with _file_lock(CACHE / "clusters" / f"{cluster.name}.localnode.lock"):
        if _kwok_manages_all_nodes(cluster.name):
            raise ClusterError(
                f"the kwok-controller of cluster {cluster.name!r} manages all nodes, so it would "
                "fake the local node's pods (the cluster predates the local node); recreate it: "
                f"python -m hack.cluster down --name {cluster.name}"
            )
        pid = _local_node_pid(cluster.name)
        started = time.time()
        if pid is None:
            workdir.mkdir(parents=True, exist_ok=True)
            kubeconfig = workdir / "kubeconfig"
            _write_kubeconfig(cluster.name, cluster.bin_dir, kubeconfig)
            env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
            env["PYTHONUNBUFFERED"] = "1"
            log_path = workdir / "agent.log"
            argv = [sys.executable, "-m", "hack.localnode", "--kubeconfig", str(kubeconfig)]
            argv += ["--node", LOCAL_NODE_NAME, "--workdir", str(workdir)]
            log(f"starting the local node agent ({LOCAL_NODE_NAME}; log {log_path})")
            with log_path.open("ab") as log_file:
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            pid = proc.pid
            (workdir / "agent.pid").write_text(f"{pid}\n")
        else:
            started = 0.0
        node = LocalNode(LOCAL_NODE_NAME, pid, workdir)

        def ready() -> bool:
            if not node.running():
                raise ClusterError(f"the local node agent (pid {pid}) exited")
            got = cluster.kubectl("get", "node", node.name, "-o", "json", check=False, timeout=15)
            if got.returncode != 0:
                return False
            for c in json.loads(got.stdout).get("status", {}).get("conditions", []):
                if c["type"] == "Ready":
                    beat = calendar.timegm(
                        time.strptime(c["lastHeartbeatTime"], "%Y-%m-%dT%H:%M:%SZ")
                    )
                    # A node left Ready by an earlier agent does not count: a fresh heartbeat does.
                    fresh = beat >= int(started) - 1
                    return bool(c["status"] == "True" and fresh)
            return False

        try:
            wait_for(ready, timeout, f"local node {node.name} never became Ready")
        except (ClusterError, TimeoutError) as exc:
            stop_local_node(cluster.name)
            raise ClusterError(
                f"{exc}\n--- local node agent log ({node.log_path})\n{node.log()}"
            ) from exc
        return node


def stop_local_node(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the cluster's local node agent (it ends its pods' processes); True if one ran."""
    pid = _local_node_pid(name)
    pidfile = local_node_dir(name) / "agent.pid"
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    log(f"stopping the local node agent (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _agent_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _agent_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------------- shared use


def _users_dir(name: str) -> Path:
    return CACHE / "clusters" / f"{name}.users"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def shared(name: str, kubeconfig: Path, keep: bool = False) -> Iterator[Cluster]:
    """Use cluster NAME for the duration of the block, sharing it with other users.

    Each user registers its pid; the last one out deletes the cluster, unless it
    was started by `python -m hack.cluster up` (meant to outlive test runs) or
    `keep` is set.
    """
    users = _users_dir(name)
    users.mkdir(parents=True, exist_ok=True)
    me = users / str(os.getpid())
    me.touch()
    try:
        yield up(name, kubeconfig)
    finally:
        me.unlink(missing_ok=True)
        with _file_lock(CACHE / "clusters" / f"{name}.lock"):
            alive = [p for p in users.iterdir() if p.name.isdigit() and pid_alive(int(p.name))]
            for p in users.iterdir():
                if p not in alive:
                    p.unlink(missing_ok=True)
            persistent = (CACHE / "clusters" / f"{name}.persistent").exists()
        if not alive and not persistent and not keep:
            down(name)


# --------------------------------------------------------------------------- command line


def status(name: str, kubeconfig: Path) -> int:
    bin_dir = bin_dir_for_versions()
    if not exists(name, bin_dir):
        print(f"cluster {name!r}: absent")
        return 1
    cluster = Cluster(name, kubeconfig.resolve(), bin_dir)
    if not cluster.kubeconfig.exists():
        _write_kubeconfig(name, bin_dir, cluster.kubeconfig)
    if not cluster.healthy():
        print(f"cluster {name!r}: present but not answering")
        return 1
    print(f"cluster {name!r}: ready (kubeconfig {cluster.kubeconfig})")
    print(
        cluster.kubectl(
            "get", "nodes", "-L", "topology.kubernetes.io/region,nvidia.com/gpu.product"
        ).stdout,
        end="",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig"])
    parser.add_argument("--name", default=cluster_name(), help=f"cluster name (env {NAME_ENV})")
    parser.add_argument(
        "--kubeconfig", type=Path, default=Path("kubeconfig"), help="where to write the kubeconfig"
    )
    parser.add_argument(
        "--real-node",
        action="store_true",
        help=f"with up: also run the local node {LOCAL_NODE_NAME} (pods as real processes)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = up(args.name, args.kubeconfig, real_node=args.real_node)
            (CACHE / "clusters" / f"{args.name}.persistent").touch()
            nodes = cluster.kubectl(
                "get", "nodes", "-L", "topology.kubernetes.io/region,nvidia.com/gpu.product"
            )
            print(nodes.stdout, end="")
            print(
                f"\ncluster {args.name!r} is up.\n  export KUBECONFIG={cluster.kubeconfig}\n  make cluster-down   # to stop it"
            )
            return 0
        if args.command == "down":
            down(args.name)
            return 0
        if args.command == "status":
            return status(args.name, args.kubeconfig)
        bin_dir = bin_dir_for_versions()
        print(_kwokctl(bin_dir, "get", "kubeconfig", f"--name={args.name}").stdout, end="")
        return 0
    except (ClusterError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
