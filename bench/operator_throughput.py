"""How fast the operator turns a burst of SmallModels into children and status, against plain kopf.

A fleet arrives at once (a GitOps sync, a restore, a new cluster), so the
figures that matter are how long until every object is handled and Ready,
counted from the first apply, the memory the operator needs for it and the
API writes it spends per object. A number alone says little: the baseline is
the plainest kopf operator (`bench/baseline/operator.py`: one Deployment per
object, adopted, status returned from the handler) measured in the same run,
on the same cluster, with the same number of objects applied the same way,
so the difference is what smallfleet does more (parse, plan, render four
children, diff, apply, derive and write status, follow readiness).

Everything runs on a local cluster of its own (`sf-bench`: kube-apiserver,
etcd, controller-manager and scheduler, KWOK for nodes and pods), created
fresh and deleted at the end, also on failure or Ctrl-C. The models are CPU
models with one replica each: the GPU nodes hold 28 GPUs in all, so extra
KWOK CPU nodes give the fleet's pods somewhere to run, and KWOK marks them
Ready. smallfleet runs as `smallfleet run --all-namespaces` under the Helm
chart's ServiceAccount, as in the end-to-end tests.

Environment: SMALLFLEET_BENCH_OBJECTS (default 500 per side),
SMALLFLEET_BENCH_LIMIT_S (default 900: how long each wait may take before the
run gives up and prints what it reached).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml

from _kube import (
    BASELINE_DIR,
    PLAIN,
    SM,
    Cluster,
    OperatorProcess,
    Watcher,
    baseline_operator,
    bench_nodes,
    cpu_seconds,
    fresh_cluster,
    handled,
    install_chart,
    install_crds,
    log,
    namespaces_manifest,
    peak_rss_mib,
    plain_app,
    plain_handled,
    ready,
    sigterm_interrupts,
    small_model,
    start_operator,
    wait_count,
    wait_established,
    workdir,
)
from _kube import apply_all as _apply_all

CLUSTER_NAME: Final = "sf-bench"
OBJECTS: Final = int(os.environ.get("SMALLFLEET_BENCH_OBJECTS", "500"))
LIMIT_S: Final = float(os.environ.get("SMALLFLEET_BENCH_LIMIT_S", "900"))
WORKERS: Final = 8
NAMESPACES: Final = 4
WRITE_VERBS: Final = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Kinds an operator writes for its objects; the bench's own applies (verb APPLY
# on the custom kind) are left out, and so are the controllers' writes, which
# go to status subresources, ReplicaSets, pods and bindings.
CHILD_RESOURCES: Final = frozenset(
    {"deployments", "services", "configmaps", "poddisruptionbudgets"}
)

# KWOK CPU nodes added for the bench, so a fleet of CPU models has room (the
# cluster's one CPU node takes 110 pods).
BENCH_NODES: Final = 4
BENCH_NODE_PODS: Final = 300


# --------------------------------------------------------------------------- objects


def namespace_of(side: str, i: int) -> str:
    return f"bench-{side}-{i % NAMESPACES}"


# --------------------------------------------------------------------------- observation


RequestKey = tuple[str, str, str, str]  # verb, group, resource, subresource


@dataclass(frozen=True)
class ApiSnapshot:
    """The API server's request counters at one moment."""

    requests: Counter[RequestKey]
    seconds: float  # summed duration of every request but WATCH (long-lived by design)

    def __sub__(self, earlier: ApiSnapshot) -> ApiSnapshot:
        return ApiSnapshot(self.requests - earlier.requests, self.seconds - earlier.seconds)


def api_snapshot(cluster: Cluster) -> ApiSnapshot:
    """apiserver_request_total and request durations by (verb, group, resource, subresource)."""
    text = cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    totals: Counter[RequestKey] = Counter()
    seconds = 0.0
    for line in text.splitlines():
        total = line.startswith("apiserver_request_total{")
        if not total and not line.startswith("apiserver_request_duration_seconds_sum{"):
            continue
        labels_text, value = line.rsplit(" ", 1)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        if total:
            key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""))
            totals[(*key, labels.get("subresource", ""))] += int(float(value))
        elif labels.get("verb") != "WATCH":
            seconds += float(value)
    return ApiSnapshot(totals, seconds)


def operator_writes(requests: Counter[RequestKey], plural: str) -> Counter[RequestKey]:
    """The write requests an operator makes for its objects (see CHILD_RESOURCES)."""
    return Counter(
        {
            key: n
            for key, n in requests.items()
            if n > 0
            and key[0] in WRITE_VERBS
            and (
                (key[2] == plural and key[0] != "APPLY")
                or (key[2] in CHILD_RESOURCES and key[3] == "")
                or key[2] == "events"
            )
        }
    )


def reads(requests: Counter[RequestKey]) -> Counter[str]:
    """GET and LIST requests by resource (from every client: the controllers mostly watch)."""
    out: Counter[str] = Counter()
    for (verb, _, resource, sub), n in requests.items():
        if verb in ("GET", "LIST") and n > 0:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] += n
    return out


# --------------------------------------------------------------------------- one side


@dataclass
class Result:
    side: str
    objects: int
    handled: int = 0
    handled_s: float | None = None
    ready: int | None = None
    ready_s: float | None = None
    rss_mib: float = float("nan")
    cpu_s: float = float("nan")
    reads: Counter[str] = field(default_factory=Counter)
    writes: Counter[RequestKey] = field(default_factory=Counter)
    api: ApiSnapshot = field(default_factory=lambda: ApiSnapshot(Counter(), 0.0))
    api_handled: ApiSnapshot | None = None  # from the first apply until every one was handled
    note: str = ""


def apply_all(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    """Apply the objects with WORKERS parallel `kubectl apply --server-side` runs."""
    _apply_all(cluster, docs, workers=WORKERS, timeout=LIMIT_S)


def create_namespaces(cluster: Cluster, side: str) -> None:
    cluster.apply_yaml(namespaces_manifest([f"bench-{side}-{k}" for k in range(NAMESPACES)]))


def delete_namespaces(cluster: Cluster, side: str) -> None:
    """Delete one side's namespaces and wait until they are gone, so the next side starts clean."""
    names = [f"bench-{side}-{k}" for k in range(NAMESPACES)]
    cluster.kubectl(
        "delete", "namespace", *names, "--wait=false", "--ignore-not-found", check=False
    )
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        left = cluster.kubectl(
            "get", "namespaces", *names, "--ignore-not-found", "-o", "name", check=False
        )
        if not left.stdout.strip():
            return
        time.sleep(2)
    log(f"namespaces of {side} still terminating after {LIMIT_S:.0f}s; going on")


def run_baseline(cluster: Cluster, api: kubernetes.client.ApiClient, workdir: Path) -> Result:
    result = Result("plain kopf", OBJECTS)
    cluster.apply_yaml(BASELINE_DIR / "crd.yaml")
    wait_established(cluster, ["plainapps.bench.smallfleet.io"])
    create_namespaces(cluster, "plain")
    with (
        baseline_operator(cluster, workdir) as proc,
        Watcher(api, PLAIN, {"handled": plain_handled}) as watcher,
    ):

        def alive() -> str | None:
            return None if proc.poll() is None else f"plain kopf exited {proc.returncode}"

        before, cpu = api_snapshot(cluster), cpu_seconds(proc.pid)
        started = time.monotonic()
        apply_all(cluster, [plain_app(i, namespace_of("plain", i)) for i in range(OBJECTS)])
        result.handled_s = wait_count(watcher, "handled", OBJECTS, alive, started, LIMIT_S)
        result.handled = watcher.count("handled")
        result.rss_mib = peak_rss_mib(proc.pid)
        result.cpu_s = cpu_seconds(proc.pid) - cpu
        result.api = result.api_handled = api_snapshot(cluster) - before
        result.writes = operator_writes(result.api.requests, PLAIN[2])
        result.reads = reads(result.api.requests)
        if watcher.error is not None and result.handled_s is None:
            result.note = f"last watch error: {watcher.error}"
    return result


def run_smallfleet(cluster: Cluster, api: kubernetes.client.ApiClient, workdir: Path) -> Result:
    result = Result("smallfleet", OBJECTS)
    chart = install_chart(cluster)
    create_namespaces(cluster, "sf")
    operator: OperatorProcess = start_operator(
        cluster, chart, workdir / "smallfleet", all_namespaces=True
    )
    try:
        with Watcher(api, SM, {"handled": handled, "ready": ready}) as watcher:

            def alive() -> str | None:
                if operator.running():
                    return None
                return f"smallfleet exited {operator.proc.returncode}:\n{operator.log()[-3000:]}"

            before, cpu = api_snapshot(cluster), cpu_seconds(operator.pid)
            started = time.monotonic()
            apply_all(cluster, [small_model(i, namespace_of("sf", i)) for i in range(OBJECTS)])
            result.handled_s = wait_count(watcher, "handled", OBJECTS, alive, started, LIMIT_S)
            result.handled = watcher.count("handled")
            if result.handled_s is not None:
                result.api_handled = api_snapshot(cluster) - before
                missing = missing_children(cluster)
                if missing:
                    result.note = f"handled, but children missing: {missing}"
                result.ready_s = wait_count(watcher, "ready", OBJECTS, alive, started, LIMIT_S)
            result.ready = watcher.count("ready")
            result.rss_mib = peak_rss_mib(operator.pid)
            result.cpu_s = cpu_seconds(operator.pid) - cpu
            result.api = api_snapshot(cluster) - before
            result.writes = operator_writes(result.api.requests, SM[2])
            result.reads = reads(result.api.requests)
            if watcher.error is not None and result.ready_s is None:
                result.note += f" last watch error: {watcher.error}"
    finally:
        operator.stop()
    return result


def missing_children(cluster: Cluster) -> dict[str, int]:
    """Per child kind, how many of the fleet's children are not there."""
    missing = {}
    for kind in ("configmaps", "services", "deployments", "poddisruptionbudgets"):
        out = cluster.kubectl(
            "get",
            kind,
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=smallfleet",
            "-o",
            "name",
            timeout=120,
        ).stdout
        found = len(out.split())
        if found < OBJECTS:
            missing[kind] = OBJECTS - found
    return missing


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result]) -> None:
    print(
        f"\nOperator throughput: {OBJECTS} objects per side in {NAMESPACES} namespaces, "
        f"applied by {WORKERS} parallel `kubectl apply --server-side`; times from the first apply"
    )
    print(
        f"{'operator':<12}{'objects':>8}{'handled':>9}{'handled s':>11}{'handled/s':>11}"
        f"{'Ready':>7}{'Ready s':>9}{'Ready/s':>9}{'peak RSS MiB':>14}{'CPU ms/obj':>12}"
        f"{'writes/obj':>12}"
    )
    for r in results:
        child_writes = sum(n for k, n in r.writes.items() if k[2] != "events")
        print(
            f"{r.side:<12}{r.objects:>8}{r.handled:>9}{_fmt(r.handled_s, '.1f'):>11}"
            f"{_fmt(r.objects / r.handled_s if r.handled_s else None, '.1f'):>11}"
            f"{_fmt(r.ready, 'd'):>7}{_fmt(r.ready_s, '.1f'):>9}"
            f"{_fmt(r.objects / r.ready_s if r.ready_s else None, '.1f'):>9}"
            f"{r.rss_mib:>14.0f}{1000 * r.cpu_s / r.objects:>12.1f}"
            f"{child_writes / r.objects:>12.2f}"
        )
    print(
        "handled: status written for the current generation (plain kopf: the handler's result; "
        "smallfleet: observedGeneration, children applied). Ready: condition Ready=True "
        "(smallfleet only). CPU, writes and the breakdowns below count from the first apply "
        "until the last wait ended (plain kopf: handled; smallfleet: Ready); CPU is the operator "
        "process's user+system time. writes/obj: write requests on the custom kind (the bench's "
        "own applies left out) "
        "and on Deployments, Services, ConfigMaps and PDBs."
    )
    print(
        "\nAPI server from the first apply (every client, WATCH left out): what one object costs "
        "the cluster, and how long a request took on average"
    )
    print(f"{'operator':<12}{'until':<9}{'requests/obj':>14}{'mean request ms':>17}")
    for r in results:
        windows = [("handled", r.api_handled), ("Ready", r.api if r.ready_s else None)]
        for until, snapshot in windows:
            if snapshot is None or (until == "Ready" and snapshot is r.api_handled):
                continue
            count = sum(n for k, n in snapshot.requests.items() if k[0] != "WATCH" and n > 0)
            mean_ms = 1000 * snapshot.seconds / count if count else float("nan")
            print(f"{r.side:<12}{until:<9}{count / r.objects:>14.1f}{mean_ms:>17.0f}")
    _breakdown(
        "API write requests per object by verb and resource (Events include the controllers')",
        results,
        lambda r: Counter(
            {
                f"{v} {res}{'/' + sub if sub else ''}{' (' + g + ')' if g else ''}": n
                for (v, g, res, sub), n in r.writes.items()
            }
        ),
    )
    _breakdown(
        "API reads per object (every client; controllers mostly watch instead)",
        results,
        lambda r: r.reads,
    )
    for r in results:
        if r.note:
            print(f"{r.side}: {r.note.strip()}")


def _breakdown(title: str, results: list[Result], counts: Callable[[Result], Counter[str]]) -> None:
    table = [(r, counts(r)) for r in results]
    print(f"\n{title}:")
    print(f"  {'':<52}" + "".join(f"{r.side:>12}" for r in results))
    for key in sorted({k for _, c in table for k in c}):
        print(f"  {key:<52}" + "".join(f"{c[key] / r.objects:>12.2f}" for r, c in table))


# --------------------------------------------------------------------------- main


def main() -> int:
    with (
        sigterm_interrupts(),
        workdir() as work,
        fresh_cluster(CLUSTER_NAME, work) as cluster,
    ):
        return _measure(cluster, work)


def _measure(cluster: Cluster, workdir: Path) -> int:
    nodes = bench_nodes(BENCH_NODES, BENCH_NODE_PODS)
    cluster.apply_yaml(yaml.safe_dump_all(nodes), server_side=False)
    install_crds(cluster)
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    results = []
    log(f"plain kopf: {OBJECTS} PlainApps")
    results.append(run_baseline(cluster, api, workdir))
    delete_namespaces(cluster, "plain")
    log(f"smallfleet: {OBJECTS} SmallModels")
    results.append(run_smallfleet(cluster, api, workdir))
    report(results)
    complete = all(r.handled == r.objects and r.ready in (None, r.objects) for r in results)
    if not complete:
        print(f"incomplete: gave up after {LIMIT_S:.0f}s per wait (SMALLFLEET_BENCH_LIMIT_S)")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
