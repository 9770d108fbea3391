"""Two operator replicas in kopf peering: exactly one acts, and the other takes over.

The chart, installed with `replicas=2`, brings kopf's peering CRDs, the
peering object and the RBAC to read and patch it. Two `smallfleet run
--peering` processes then run under that release's ServiceAccount, as its
two pods would. kopf pauses a replica while a peer of higher *or equal*
priority lives, so each replica takes a random priority; the operator's own
background work (resync, placement, autoscaling) follows the same records.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.cluster import (
    OPERATOR_NAMESPACE,
    ChartRelease,
    Cluster,
    OperatorProcess,
    install_chart,
    start_operator,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
PEERING = "smallfleet"
READY_TIMEOUT = 120.0


@pytest.fixture
def peering_release(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> Iterator[ChartRelease]:
    release = f"sf-peering-{secrets.token_hex(3)}"
    chart = install_chart(
        cluster,
        release=release,
        values=("--set", "replicas=2", "--set", f"watchNamespace={namespace}"),
    )
    try:
        yield chart
    finally:
        cluster.helm("uninstall", release, "-n", OPERATOR_NAMESPACE, "--wait", check=False)


def _model(name: str) -> str:
    doc = yaml.safe_load((ROOT / "examples" / "cpu-classifier.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["metadata"].pop("namespace", None)
    return yaml.safe_dump(doc)


def _peers(cluster: Cluster, namespace: str) -> dict[str, Any]:
    obj = cluster.kubectl_json("get", "kopfpeerings.kopf.dev", PEERING, "-n", namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def _leadership(operator: OperatorProcess) -> tuple[str, str] | None:
    """What the replica's background work last said: (its identity, 'leads' or 'stands by')."""
    said: list[tuple[str, str]] = re.findall(r"replica (\S+) (leads|stands by)", operator.log())
    return said[-1] if said else None


def _kopf_paused(operator: OperatorProcess) -> bool:
    """kopf starts paused in peering and logs each change."""
    said = re.findall(r"(Pausing|Resuming) operations", operator.log())
    return not said or said[-1] == "Pausing"


def _reconciled(operator: OperatorProcess, name: str) -> bool:
    return f"create Deployment/{name}" in operator.log()


def test_two_replicas_one_acts_and_the_other_takes_over(
    cluster: Cluster,
    namespace: str,
    peering_release: ChartRelease,
    tmp_path: Path,
) -> None:
    operators: list[OperatorProcess] = []
    try:
        for i in range(2):
            operators.append(
                start_operator(
                    cluster,
                    peering_release,
                    tmp_path / f"replica-{i}",
                    namespace=namespace,
                    extra_args=("--peering", PEERING),
                )
            )
        cluster.wait_for(
            lambda: len(_peers(cluster, namespace)) == 2,
            60,
            "the peering object never listed both replicas",
        )
        peers = _peers(cluster, namespace)
        priorities = {identity: int(r["priority"]) for identity, r in peers.items()}
        assert len(set(priorities.values())) == 2, f"replicas share a priority: {priorities}"
        top = max(priorities, key=lambda identity: priorities[identity])

        # kopf settles on the higher priority (the other pauses on the next peering event);
        # the background work follows the same records.
        def settled() -> tuple[OperatorProcess, OperatorProcess] | None:
            states = [(_leadership(op), _kopf_paused(op), op) for op in operators]
            leaders = [op for said, paused, op in states if said == (top, "leads") and not paused]
            waiting = [
                op for said, paused, op in states if said and said[1] == "stands by" and paused
            ]
            return (leaders[0], waiting[0]) if len(leaders) == 1 and len(waiting) == 1 else None

        leader, follower = cluster.wait_for(
            settled, 30, f"the replicas never settled on {top} leading"
        )
        cluster.apply_yaml(_model("first"), namespace=namespace)
        wait_ready(cluster, "sm", "first", namespace, timeout=READY_TIMEOUT)
        assert _reconciled(leader, "first"), leader.log()[-3000:]
        assert not _reconciled(follower, "first"), follower.log()[-3000:]
        assert (_leadership(follower) or ("", ""))[1] == "stands by", follower.log()[-3000:]

        # The leader goes (a rolling update, a drained node): the other replica takes over,
        # handlers and background work alike.
        leader.stop()
        cluster.wait_for(
            lambda: len(_peers(cluster, namespace)) == 1,
            60,
            "the stopped replica's peering record never went",
        )
        cluster.apply_yaml(_model("second"), namespace=namespace)
        wait_ready(cluster, "sm", "second", namespace, timeout=READY_TIMEOUT)
        assert _reconciled(follower, "second"), follower.log()[-3000:]
        cluster.wait_for(
            lambda: (
                (_leadership(follower) or ("", ""))[1] == "leads" and not _kopf_paused(follower)
            ),
            30,
            "the remaining replica's background work never started",
        )
    finally:
        for op in operators:
            op.stop()
