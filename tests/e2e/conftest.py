"""Shared fixtures of the end-to-end tests: a real cluster, the CRDs, the chart, the operator.

The cluster is started once per test session (or reused, when one of the same
name is already up: SMALLFLEET_CLUSTER_NAME, default `smallfleet-e2e`) and is
deleted by the last session using it, unless SMALLFLEET_KEEP_CLUSTER=1 or it
was started by `make cluster`. A component that cannot start fails the test
with that component's log; nothing is skipped.

Fixtures:
  cluster            session  hack.cluster.Cluster (kubeconfig, bin_dir, kubectl, kubectl_json,
                              apply_yaml, helm, wait_for, assert_loopback, token_kubeconfig)
  crds_installed     session  names of the CRDs from crds/, Established
  chart_installed    session  ChartRelease of the chart installed with the operator scaled to 0
  operator_process   function factory: operator_process(namespace=NS | all_namespaces=True,
                              env={...}, extra_args=[...]) -> OperatorProcess (stopped after the test;
                              its log is printed when the test fails)
  namespace          function a fresh namespace, deleted after the test
  local_node         session  hack.cluster.LocalNode: the real node `triton-local` (hack/localnode.py)
                              running, Ready; pods with LOCAL_NODE_SELECTOR and LOCAL_NODE_TOLERATION
                              run there as local processes on 127.3.x.y (fails with its log if it
                              cannot start)
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.cluster import (
    ChartRelease,
    Cluster,
    ClusterError,
    LocalNode,
    OperatorFactory,
    OperatorProcess,
    cluster_name,
    install_chart,
    install_crds,
    shared,
    start_operator,
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = cluster_name("smallfleet-e2e")
    kubeconfig = tmp_path_factory.mktemp("cluster") / "kubeconfig"
    keep = os.environ.get("SMALLFLEET_KEEP_CLUSTER") == "1"
    with shared(name, kubeconfig, keep=keep) as c:
        yield c


@pytest.fixture(scope="session")
def local_node(cluster: Cluster) -> LocalNode:
    """The real node's agent, started once (it outlives the session like the cluster does)."""
    try:
        return cluster.ensure_local_node()
    except (ClusterError, TimeoutError) as exc:
        pytest.fail(f"the local node could not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def crds_installed(cluster: Cluster) -> list[str]:
    return install_crds(cluster)


@pytest.fixture(scope="session")
def chart_installed(cluster: Cluster, crds_installed: list[str]) -> ChartRelease:
    return install_chart(cluster)


@pytest.fixture
def operator_process(
    cluster: Cluster,
    chart_installed: ChartRelease,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorFactory]:
    started: list[OperatorProcess] = []

    def start(
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        wait: bool = True,
    ) -> OperatorProcess:
        operator = start_operator(
            cluster,
            chart_installed,
            tmp_path / f"operator-{len(started)}",
            namespace=namespace,
            all_namespaces=all_namespaces,
            env=env,
            extra_args=extra_args,
            wait=wait,
        )
        started.append(operator)
        return operator

    yield start
    for operator in started:
        code = operator.stop()
        if _failed(request):
            print(
                f"\n===== operator log ({' '.join(operator.argv)}; exit {code}) =====\n{operator.log()}",
                file=sys.stderr,
            )


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{base}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        30,
        f"namespace {name} never got its default ServiceAccount",
    )
    yield name
    # Wait until it is gone: its pods hold GPUs, and the next test must not see them.
    cluster.kubectl(
        "delete",
        "namespace",
        name,
        "--ignore-not-found",
        "--timeout=120s",
        check=False,
        timeout=150,
    )
