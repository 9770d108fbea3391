"""Building blocks of the end-to-end fixtures: the chart release and the operator process.

The operator runs as a local process (KWOK simulates pods, so an in-cluster
operator pod could never really start), but under the identity the Helm chart
gives it: the chart is installed with its Deployment scaled to zero, a token
is minted for the chart's ServiceAccount, and `smallfleet run` gets a
kubeconfig holding only that token and the environment the chart's Deployment
sets. Anything the operator needs and the chart's RBAC lacks fails here, as it
would in a real cluster. The cluster-side helpers live in hack/cluster.py,
shared with `make cluster` and `make demo`; this module re-exports them.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hack.cluster import (
    CHART,
    CRDS,
    LOCAL_NODE_NAME,
    LOCAL_NODE_REGION,
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    LOCAL_NODE_ZONE,
    LOCAL_POD_CIDR,
    OPERATOR_NAMESPACE,
    OPERATOR_RELEASE,
    ChartRelease,
    Cluster,
    ClusterError,
    LocalNode,
    cluster_name,
    deployment_env,
    free_port,
    free_ports,
    install_chart,
    install_crds,
    operator_command,
    shared,
    wait_for,
)

__all__ = [
    "CHART",
    "CRDS",
    "LOCAL_NODE_NAME",
    "LOCAL_NODE_REGION",
    "LOCAL_NODE_SELECTOR",
    "LOCAL_NODE_TOLERATION",
    "LOCAL_NODE_ZONE",
    "LOCAL_POD_CIDR",
    "OPERATOR_NAMESPACE",
    "OPERATOR_RELEASE",
    "ChartRelease",
    "Cluster",
    "ClusterError",
    "LocalNode",
    "OperatorFactory",
    "OperatorProcess",
    "cluster_name",
    "deployment_env",
    "free_port",
    "free_ports",
    "install_chart",
    "install_crds",
    "shared",
    "start_operator",
    "wait_for",
    "wait_ready",
]

START_TIMEOUT_S: Final = 60.0


@dataclass
class OperatorProcess:
    """`smallfleet run` as a local process; stop() ends it, log() shows what it said."""

    argv: list[str]
    log_path: Path
    kubeconfig: Path
    metrics_port: int
    health_port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str, port: int | None = None, timeout: float = 5.0) -> tuple[int, str]:
        """GET http://127.0.0.1:PORT/PATH (the health port by default): status and body."""
        url = f"http://127.0.0.1:{port or self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def metrics(self) -> str:
        status, body = self.get("/metrics", port=self.metrics_port)
        if status != 200:
            raise ClusterError(f"operator metrics answered {status}: {body[:500]}")
        return body

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        def healthy() -> bool:
            if not self.running():
                raise ClusterError(
                    f"`{' '.join(self.argv)}` exited with {self.proc.returncode}\n--- log\n{self.log()}"
                )
            with contextlib.suppress(OSError):
                return self.get("/healthz", timeout=2)[0] == 200
            return False

        try:
            wait_for(
                healthy,
                timeout,
                f"operator health endpoint 127.0.0.1:{self.health_port}/healthz never answered 200",
            )
        except (TimeoutError, ClusterError) as exc:
            raise ClusterError(f"{exc}\n--- operator log\n{self.log()}") from exc

    def stop(self, timeout: float = 20.0) -> int:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


# What the `operator_process` fixture yields: call it with namespace= or all_namespaces=True.
OperatorFactory = Callable[..., "OperatorProcess"]


def start_operator(
    cluster: Cluster,
    chart: ChartRelease,
    workdir: Path,
    *,
    namespace: str | None = None,
    all_namespaces: bool = False,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    wait: bool = True,
) -> OperatorProcess:
    """Start `smallfleet run` as the chart's ServiceAccount; wait for its health endpoint."""
    if (namespace is None) == (not all_namespaces):
        raise ValueError("give exactly one of namespace= or all_namespaces=True")
    workdir.mkdir(parents=True, exist_ok=True)
    metrics_port, health_port = free_ports(2)
    kubeconfig = workdir / "operator.kubeconfig"
    argv, full_env = operator_command(
        cluster, chart, kubeconfig, metrics_port, health_port, namespace, extra_args
    )
    full_env.update(env or {})
    log_path = workdir / f"operator-{health_port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    operator = OperatorProcess(
        argv=argv,
        log_path=log_path,
        kubeconfig=kubeconfig,
        metrics_port=metrics_port,
        health_port=health_port,
        env=full_env,
        proc=proc,
    )
    if wait:
        try:
            operator.wait_healthy()
        except BaseException:
            operator.stop()
            raise
    return operator


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """A status condition of a resource by type; empty when it has none of that type."""
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def wait_ready(
    cluster: Cluster, kind: str, name: str, namespace: str, timeout: float = 120.0
) -> None:
    """Wait for condition Ready=True on a resource, failing with its status if it never comes."""
    proc = cluster.kubectl(
        "wait",
        f"{kind}/{name}",
        "-n",
        namespace,
        "--for=condition=Ready",
        f"--timeout={int(timeout)}s",
        check=False,
        timeout=timeout + 30,
    )
    if proc.returncode != 0:
        detail = cluster.kubectl(
            "get", kind, name, "-n", namespace, "-o", "yaml", check=False
        ).stdout
        raise ClusterError(f"{kind}/{name} never became Ready: {proc.stderr.strip()}\n{detail}")
