"""A fleet's whole life against plain kopf: create, quiet, restart, update, unrelated, delete.

`operator_throughput.py` asks how fast a burst of new objects is handled.
This benchmark asks what a fleet costs while it lives, per object, so the
operator can be sized: for each fleet size N (SMALLFLEET_FLEET_SIZES, default
100,1000,5000) and for each side on a fresh local cluster of its own — the
plain kopf baseline (`bench/baseline/operator.py`, one Deployment per object),
the same plain kopf making the children smallfleet renders for a bench
SmallModel instead (ConfigMap, Service, Deployment, PodDisruptionBudget: what
any operator serving such a model makes, and what the cluster does in answer,
without smallfleet's own work), and smallfleet; SMALLFLEET_FLEET_SIDES picks
some (default `plain,children,smallfleet`) — it

1. **creates** N objects (8 parallel `kubectl apply --server-side`) and times
   them until all are handled and Ready (smallfleet: status.observedGeneration
   and condition Ready=True; plain kopf: its handler's result in status, its
   only notion), with p50/p99 per object from the object's first watch event
   to Ready;
2. keeps **quiet** for SMALLFLEET_FLEET_QUIET_S seconds (default 600) with
   nothing changing, and counts what the operator asks of the API server
   meanwhile (the goal: no writes, under one request per model per 10 minutes
   beyond its watches);
3. **restarts** the operator with every object in place (SIGTERM, then a new
   process; SMALLFLEET_FLEET_RESTART=0 skips it) and waits until the new one
   has listed and resumed them all, which is when its CPU falls quiet (under
   10% of a core for 5 s): its writes (the goal: none, nothing changed), CPU
   and peak memory are the cost of an upgrade or a leader change at that size;
4. **updates** every object's spec (smallfleet: maxBatchSize, which changes
   the rendered config.pbtxt; plain kopf: the image, which its update handler
   patches into the Deployment) and times them until every one has handled the
   new generation and is Ready;
5. adds **unrelated objects** — SMALLFLEET_FLEET_UNRELATED (default 10,000),
   half Deployments with zero replicas and half bare Pods that KWOK runs, in a
   namespace of their own, not managed by either operator — and compares the
   operator's resident memory before and after;
6. **deletes** every object at once (one deletecollection per namespace) and
   times them until all are gone, and until their Deployments are gone too.

The API requests are attributed to the operator alone through the API
server's audit log (level Metadata, only for the operators' ServiceAccounts:
smallfleet runs with the Helm chart's, the baseline with one of its own) and
split by phase on the request's receive time: reads (get, list), watches
(counted apart: each is one long request) and writes (create, update, patch,
delete, deletecollection), with the largest verb/resource lines. Memory is the
operator's VmHWM/VmRSS and CPU its utime+stime (with waited-for children) from
/proc.

The cluster's limits are raised for fleets of thousands (API server
in-flight requests, controller-manager and scheduler client QPS, KWOK node
pod capacity); the run prints each limit as the components were started with
it. Every wait gives up after SMALLFLEET_BENCH_LIMIT_S seconds (default 900):
the side's remaining phases are skipped, the table shows what was reached and
the run exits 1. The cluster (named SMALLFLEET_CLUSTER_NAME, default
sf-bench-fleet) is deleted at the end of each side, also on failure, Ctrl-C
or SIGTERM. Everything listens on 127.0.0.1. The machine's core count and
its load average at create and delete are printed with each table: other
work on the machine slows both sides, so compare them within one run.

    make bench-fleet
    SMALLFLEET_FLEET_SIZES=50 SMALLFLEET_FLEET_QUIET_S=30 SMALLFLEET_FLEET_UNRELATED=500 \\
        .venv/bin/python bench/run.py fleet

SMALLFLEET_FLEET_CREATE_ONLY=1 stops each side after the create (a burst's time and
memory only, for a quick comparison); SMALLFLEET_FLEET_UNTIL=restart after the restart.
SMALLFLEET_FLEET_PYSPY=PREFIX samples the restarted operator with py-spy (40 Hz, until
its CPU is quiet, only the thread that holds the GIL: with 32 reconcile threads most
others wait for it) into PREFIX-<side>.txt, one collapsed stack per
line with its count (py-spy's raw format), for `sort -k2 -n` or a flame graph; py-spy
must be installed in the Python environment that runs the bench (`pip install py-spy`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml

from _kube import (
    BASELINE_DIR,
    BASELINE_NAMESPACE,
    KWOK_HOME,
    OPERATOR_NAMESPACE,
    PLAIN,
    SM,
    Cluster,
    Watcher,
    apply_all,
    baseline_account,
    baseline_operator,
    bench_nodes,
    cpu_seconds,
    deployment_available,
    fresh_cluster,
    handled,
    install_chart,
    install_crds,
    kwokctl_config,
    log,
    namespaces_manifest,
    owner_key,
    peak_rss_mib,
    plain_app,
    plain_handled,
    plain_updated,
    ready,
    rss_mib,
    sigterm_interrupts,
    small_model,
    start_operator,
    wait_count,
    wait_established,
    workdir,
)

# Not part of `make bench` (bench/run.py without names): it runs for hours at
# the default sizes. `make bench-fleet` runs it.
IN_MAKE_BENCH: Final = False

CLUSTER_NAME: Final = os.environ.get("SMALLFLEET_CLUSTER_NAME", "sf-bench-fleet")
SIZES: Final = [
    int(n) for n in os.environ.get("SMALLFLEET_FLEET_SIZES", "100,1000,5000").split(",") if n
]
QUIET_S: Final = float(os.environ.get("SMALLFLEET_FLEET_QUIET_S", "600"))
UNRELATED: Final = int(os.environ.get("SMALLFLEET_FLEET_UNRELATED", "10000"))
LIMIT_S: Final = float(os.environ.get("SMALLFLEET_BENCH_LIMIT_S", "1800"))
# Only the create phase: a burst's time and memory, for a quick comparison.
CREATE_ONLY: Final = os.environ.get("SMALLFLEET_FLEET_CREATE_ONLY") == "1"
RESTART: Final = os.environ.get("SMALLFLEET_FLEET_RESTART", "1") == "1"
# "restart" stops each side after the restart: a large fleet's restart without the update
# and delete that follow.
UNTIL: Final = os.environ.get("SMALLFLEET_FLEET_UNTIL", "")
PYSPY: Final = os.environ.get("SMALLFLEET_FLEET_PYSPY", "")
# A restarted operator has resumed every object once its CPU stays under this share of a
# core for QUIET_WINDOW_S (a settled operator's periodic passes use about 2%).
QUIET_CPU: Final = 0.10
QUIET_WINDOW_S: Final = 5.0

WORKERS: Final = 8
CHUNK: Final = 250  # objects per kubectl apply
NAMESPACES: Final = 4
UNRELATED_NAMESPACE: Final = "bench-unrelated"
SETTLE_S: Final = 10.0  # after each goal, before the next phase: late requests count to the phase
BENCH_NODES: Final = 4
PHASES: Final = ("create", "quiet", "restart", "update", "unrelated", "delete")
OPERATOR_NAMESPACE_GROUPS: Final = (  # audited users: the operators' ServiceAccounts
    f"system:serviceaccounts:{OPERATOR_NAMESPACE}",
    f"system:serviceaccounts:{BASELINE_NAMESPACE}",
)

READ_VERBS: Final = frozenset({"get", "list"})
WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})

# (component, flag, the component's default, the value for this benchmark)
LIMITS: Final = (
    ("kube-apiserver", "max-requests-inflight", "400", "1600"),
    ("kube-apiserver", "max-mutating-requests-inflight", "200", "800"),
    ("kube-controller-manager", "kube-api-qps", "20", "500"),
    ("kube-controller-manager", "kube-api-burst", "30", "1000"),
    ("kube-controller-manager", "concurrent-deployment-syncs", "5", "20"),
    ("kube-controller-manager", "concurrent-replicaset-syncs", "5", "20"),
    ("kube-scheduler", "kube-api-qps", "50", "500"),
    ("kube-scheduler", "kube-api-burst", "100", "1000"),
)


def node_pods(n: int) -> int:
    """Pods per bench node: the fleet twice over (a rollout surges) plus the unrelated pods."""
    return max(300, math.ceil(1.2 * (2 * n + UNRELATED // 2) / BENCH_NODES))


# --------------------------------------------------------------------------- the sides


@dataclass(frozen=True)
class Side:
    """What differs between the operators: their kind, objects and tests."""

    name: str
    resource: tuple[str, str, str]
    short: str  # namespace prefix
    managed_by: str  # label value on their Deployments
    make: Callable[[int, str, bool], dict[str, Any]]  # (i, namespace, updated) -> object
    handled: Callable[[Mapping[str, Any]], bool]
    ready: Callable[[Mapping[str, Any]], bool]
    updated: Callable[[Mapping[str, Any]], bool]
    children: bool = False  # plain kopf making smallfleet's children instead of its own

    def namespace(self, i: int) -> str:
        return f"bench-{self.short}-{i % NAMESPACES}"

    def namespaces(self) -> list[str]:
        return [f"bench-{self.short}-{k}" for k in range(NAMESPACES)]


def _sm(i: int, namespace: str, updated: bool) -> dict[str, Any]:
    return small_model(i, namespace, max_batch_size=16 if updated else 8)


def _plain(i: int, namespace: str, updated: bool) -> dict[str, Any]:
    return plain_app(i, namespace, image="app:v2" if updated else "app:latest")


def _sm_updated(obj: Mapping[str, Any]) -> bool:
    return int(obj.get("metadata", {}).get("generation", 0)) >= 2 and handled(obj) and ready(obj)


def _plain_updated(obj: Mapping[str, Any]) -> bool:
    return int(obj.get("metadata", {}).get("generation", 0)) >= 2 and plain_updated(obj)


BASELINE: Final = Side(
    "plain kopf", PLAIN, "plain", "plain-kopf", _plain, plain_handled, plain_handled, _plain_updated
)
CHILDREN: Final = Side(
    "plain kopf, smallfleet's children",
    PLAIN,
    "kids",
    "smallfleet",
    _plain,
    plain_handled,
    plain_handled,
    _plain_updated,
    children=True,
)
SMALLFLEET: Final = Side("smallfleet", SM, "sf", "smallfleet", _sm, handled, ready, _sm_updated)
SIDE_KEYS: Final = {"plain": BASELINE, "children": CHILDREN, "smallfleet": SMALLFLEET}


def _sides(text: str) -> tuple[Side, ...]:
    unknown = [k for k in text.split(",") if k and k not in SIDE_KEYS]
    if unknown:
        raise SystemExit(
            f"SMALLFLEET_FLEET_SIDES: unknown side(s) {', '.join(unknown)}; "
            f"choose from {','.join(SIDE_KEYS)}"
        )
    return tuple(SIDE_KEYS[k] for k in text.split(",") if k)


SIDES: Final = _sides(os.environ.get("SMALLFLEET_FLEET_SIDES", "plain,children,smallfleet"))
# The bench SmallModel whose rendered children the CHILDREN side makes, by placeholders.
TEMPLATE_INDEX: Final = 0
TEMPLATE_NAMESPACE: Final = "bench-template-namespace"


def children_template(path: Path) -> dict[str, str]:
    """smallfleet's children for one bench SmallModel, written for the baseline; its env.

    They come from smallfleet's own render (`smallfleet render`'s code path),
    with the model's name and namespace left as placeholders that the
    baseline replaces with each PlainApp's.
    """
    from smallfleet.core.render.cli import render_documents
    from smallfleet.settings import Settings

    model = small_model(TEMPLATE_INDEX, TEMPLATE_NAMESPACE)
    objects, ok = render_documents([model], Settings(), None, sys.stderr)
    if not ok or not objects:
        raise RuntimeError("smallfleet rendered no children for the bench SmallModel")
    path.write_text(json.dumps(objects))
    return {
        "SMALLFLEET_BASELINE_CHILDREN": str(path),
        "SMALLFLEET_BASELINE_NAME": str(model["metadata"]["name"]),
        "SMALLFLEET_BASELINE_NAMESPACE": TEMPLATE_NAMESPACE,
    }


# --------------------------------------------------------------------------- audit log

RequestKey = tuple[str, str]  # verb, resource[/subresource] (group)


@dataclass(frozen=True)
class Request:
    at: float  # when the API server received it, seconds since the epoch
    verb: str
    what: str
    code: int
    took: float = 0.0  # seconds from received to answered (0 for watches)


def audit_policy(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                # One event per request (a watch: when it starts and when it ends).
                "omitStages": ["RequestReceived"],
                "rules": [
                    {"level": "Metadata", "userGroups": list(OPERATOR_NAMESPACE_GROUPS)},
                    {"level": "None"},
                ],
            }
        )
    )
    return path


def read_audit(path: Path, user: str) -> list[Request]:
    """The requests of one user: non-watch requests once complete, watches when they start."""
    out: list[Request] = []
    if not path.exists():
        return out
    with path.open() as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line still being written
                continue
            if event.get("user", {}).get("username") != user:
                continue
            verb = event.get("verb", "")
            stage = event.get("stage")
            counted = ("ResponseStarted",) if verb == "watch" else ("ResponseComplete", "Panic")
            if stage not in counted:
                continue
            ref = event.get("objectRef") or {}
            what = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
            if ref.get("subresource"):
                what += "/" + ref["subresource"]
            if ref.get("apiGroup"):
                what += f" ({ref['apiGroup']})"
            at = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            took = 0.0
            if verb != "watch" and event.get("stageTimestamp"):
                took = datetime.fromisoformat(event["stageTimestamp"]).timestamp() - at
            out.append(Request(at, verb, what, code, took))
    return out


@dataclass
class Requests:
    """One phase's requests by (verb, what)."""

    counts: Counter[RequestKey] = field(default_factory=Counter)
    codes: Counter[tuple[RequestKey, int]] = field(default_factory=Counter)  # 4xx/5xx answers
    write_took: list[float] = field(default_factory=list)  # seconds, sorted once split

    def failed_writes(self) -> int:
        return sum(n for ((verb, _), _), n in self.codes.items() if verb in WRITE_VERBS)

    def refused_watches(self) -> int:
        """Watches answered 4xx/5xx: kopf lists the whole kind again after one (429 among them)."""
        return sum(n for ((verb, _), _), n in self.codes.items() if verb == "watch")

    def total(self, verbs: frozenset[str] | None = None) -> int:
        return sum(n for (v, _), n in self.counts.items() if verbs is None or v in verbs)

    @property
    def reads(self) -> int:
        return self.total(READ_VERBS)

    @property
    def lists(self) -> int:
        """Lists in all: each is one request, but one of a whole kind (a watch's re-list)."""
        return self.total(frozenset({"list"}))

    @property
    def writes(self) -> int:
        return self.total(WRITE_VERBS)

    @property
    def watches(self) -> int:
        return self.total(frozenset({"watch"}))


def split_by_phase(
    requests: Sequence[Request], windows: Mapping[str, tuple[float, float]]
) -> dict[str, Requests]:
    """Requests by phase; "start" before the first phase, "stop" after the last."""
    out = {"start": Requests(), **{name: Requests() for name in windows}, "stop": Requests()}
    first = min((t0 for t0, _ in windows.values()), default=math.inf)
    for r in requests:
        phase = next((p for p, (t0, t1) in windows.items() if t0 <= r.at < t1), None)
        if phase is None:
            phase = "start" if r.at < first else "stop"
        out[phase].counts[(r.verb, r.what)] += 1
        if r.code >= 400:
            out[phase].codes[((r.verb, r.what), r.code)] += 1
        if r.verb in WRITE_VERBS:
            out[phase].write_took.append(r.took)
    for reqs in out.values():
        reqs.write_took.sort()
    return out


# --------------------------------------------------------------------------- one side


@dataclass
class Result:
    side: str
    n: int
    user: str = ""  # the operator's ServiceAccount user
    complete: bool = True
    idle_rss: float = float("nan")  # MiB, after start, before the first apply
    peak_rss: float = float("nan")  # MiB, VmHWM at the end
    create_peak_rss: float = float("nan")  # MiB, VmHWM when every object was Ready
    handled: int = 0
    handled_s: float | None = None
    ready: int = 0
    ready_s: float | None = None
    latency: list[float] = field(default_factory=list)  # first event -> Ready, per object
    available: int = 0  # objects whose Deployment has every replica available
    available_s: float | None = None
    # Per object: first event -> its Deployment available; that -> Ready (smallfleet).
    available_latency: list[float] = field(default_factory=list)
    ready_lag: list[float] = field(default_factory=list)
    # The API server's writes during the create, by every client, per (resource, verb).
    cluster_writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    updated: int = 0
    updated_s: float | None = None
    unrelated: int = 0
    unrelated_rss: tuple[float, float] | None = None  # VmRSS before, after
    gone: int = 0
    gone_s: float | None = None
    children_gone_s: float | None = None
    quiet_s: float = 0.0
    restart_s: float | None = None  # restart -> the new process's CPU quiet
    restart_rss: tuple[float, float] | None = None  # the new process: VmRSS settled, VmHWM
    load: tuple[float, float] | None = None  # the machine's 1-min load average: create, delete
    cpu: dict[str, float] = field(default_factory=dict)  # per phase, seconds
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    requests: dict[str, Requests] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Phases:
    """Contiguous phases: each starts where the last ended; notes wall time and operator CPU."""

    def __init__(self, result: Result, op: Running) -> None:
        self.result, self.op = result, op
        self.current: str | None = None
        self.t0 = 0.0
        self.cpu0 = 0.0

    def start(self, name: str) -> None:
        self.end()
        self.current, self.t0, self.cpu0 = name, time.time(), cpu_seconds(self.op.pid, True)

    def restarted(self) -> None:
        """The phase's CPU is the new process's, all of it since it started."""
        self.cpu0 = 0.0

    def end(self) -> None:
        if self.current is not None:
            self.result.windows[self.current] = (self.t0, time.time())
            with contextlib.suppress(OSError):
                self.result.cpu[self.current] = cpu_seconds(self.op.pid, True) - self.cpu0
            self.current = None


Starter = Callable[[contextlib.ExitStack], tuple[int, Callable[[], str | None]]]


class Running:
    """A side's operator process now; `restart` stops it and starts another the same way.

    `starter` starts one in the given stack (which stops it when closed) and
    returns its pid and a check that says why it is gone (None while it runs).
    """

    def __init__(self, starter: Starter) -> None:
        self.starter = starter
        self.stack = contextlib.ExitStack()
        self.pid, self._alive = starter(self.stack)
        self.earlier_peaks: list[float] = []  # VmHWM of the processes a restart stopped

    def alive(self) -> str | None:
        return self._alive()

    def restart(self) -> None:
        with contextlib.suppress(OSError):
            self.earlier_peaks.append(peak_rss_mib(self.pid))
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.pid, self._alive = self.starter(self.stack)

    def peak_rss(self) -> float:
        """The highest VmHWM of every process so far (the current one must still run)."""
        return max([*self.earlier_peaks, peak_rss_mib(self.pid)])

    def close(self) -> None:
        self.stack.close()


@contextlib.contextmanager
def py_spy(pid: int, side: str) -> Iterator[None]:
    """Sample the process with py-spy while the block runs, if SMALLFLEET_FLEET_PYSPY asks."""
    if not PYSPY:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        raise RuntimeError(
            f"SMALLFLEET_FLEET_PYSPY is set but {spy} is missing: pip install py-spy"
        )
    out = Path(f"{PYSPY}-{side.replace(' ', '-')}.txt")
    command = [str(spy), "record", "-p", str(pid), "-r", "40", "--gil", "-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        _, err = proc.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
        log(f"{side}: py-spy profile of the restart in {out}")


def wait_cpu_quiet(op: Running, started: float) -> float | None:
    """Seconds from `started` until the process's CPU fell quiet (None: not within LIMIT_S)."""
    samples: list[tuple[float, float]] = []  # (monotonic, CPU seconds)
    while time.monotonic() - started < LIMIT_S:
        problem = op.alive()
        if problem:
            raise RuntimeError(problem)
        samples.append((time.monotonic(), cpu_seconds(op.pid, True)))
        old = [x for x in samples if x[0] <= samples[-1][0] - QUIET_WINDOW_S]
        if old:
            (t0, c0), (t1, c1) = old[-1], samples[-1]
            if (c1 - c0) / (t1 - t0) < QUIET_CPU:
                return t0 - started
        time.sleep(1.0)
    return None


def run_side(
    side: Side, result: Result, cluster: Cluster, api: kubernetes.client.ApiClient, work: Path
) -> None:
    """All phases of one side; `result` fills as they go (also when a phase fails)."""
    try:
        _run_side(side, result, cluster, api, work)
    finally:
        if result.user:  # the requests of the phases that ran, also after a failure
            audited = read_audit(work / "audit.log", result.user)
            result.requests = split_by_phase(audited, result.windows)
            if not audited:
                result.notes.append(f"no audited requests from {result.user}: no audit log?")


def _run_side(
    side: Side, result: Result, cluster: Cluster, api: kubernetes.client.ApiClient, work: Path
) -> None:
    cluster.apply_yaml(namespaces_manifest(side.namespaces()))
    if side is SMALLFLEET:
        install_crds(cluster)
        chart = install_chart(cluster)
        result.user = f"system:serviceaccount:{chart.namespace}:{chart.service_account}"

        def starter(stack: contextlib.ExitStack) -> tuple[int, Callable[[], str | None]]:
            operator = start_operator(cluster, chart, work / "smallfleet", all_namespaces=True)
            stack.callback(operator.stop)

            def alive() -> str | None:
                if operator.running():
                    return None
                return f"smallfleet exited {operator.proc.returncode}:\n{operator.log()[-3000:]}"

            return operator.pid, alive

    else:
        cluster.apply_yaml(BASELINE_DIR / "crd.yaml")
        wait_established(cluster, ["plainapps.bench.smallfleet.io"])
        result.user = baseline_account(cluster, work / "baseline.kubeconfig")
        env = children_template(work / "children.json") if side.children else {}

        def starter(stack: contextlib.ExitStack) -> tuple[int, Callable[[], str | None]]:
            proc = stack.enter_context(
                baseline_operator(cluster, work, work / "baseline.kubeconfig", env)
            )

            def alive() -> str | None:
                return None if proc.poll() is None else f"plain kopf exited {proc.returncode}"

            return proc.pid, alive

    op = Running(starter)
    try:
        _lifecycle(side, result, cluster, api, op)
    finally:
        op.close()


def _lifecycle(
    side: Side,
    result: Result,
    cluster: Cluster,
    api: kubernetes.client.ApiClient,
    op: Running,
) -> None:
    n = result.n
    time.sleep(2)  # let the operator list and watch before measuring its idle memory
    result.idle_rss = rss_mib(op.pid)
    phases = Phases(result, op)
    alive = op.alive
    try:
        _create(side, result, cluster, api, op.pid, alive, phases)
        if not result.complete or CREATE_ONLY:
            return
        phases.start("quiet")
        log(f"{side.name}: quiet for {QUIET_S:.0f}s")
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            problem = alive()
            if problem:
                raise RuntimeError(problem)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        result.quiet_s = QUIET_S
        if RESTART:
            phases.start("restart")
            log(f"{side.name}: restarting with {n} in place")
            started = time.monotonic()
            op.restart()
            phases.restarted()
            with py_spy(op.pid, side.name):
                result.restart_s = wait_cpu_quiet(op, started)
            if result.restart_s is None:
                result.notes.append("the restarted operator's CPU never fell quiet")
                result.complete = False
                return
            result.restart_rss = (rss_mib(op.pid), peak_rss_mib(op.pid))
            time.sleep(SETTLE_S)
            if UNTIL == "restart":
                return
        phases.start("update")
        log(f"{side.name}: updating {n}")
        with Watcher(api, side.resource, {"updated": side.updated}) as watcher:
            started = time.monotonic()
            apply_all(cluster, _objects(side, n, updated=True), WORKERS, CHUNK, LIMIT_S)
            result.updated_s = wait_count(watcher, "updated", n, alive, started, LIMIT_S)
            result.updated = watcher.count("updated")
        if result.updated_s is None:
            result.complete = False
            return
        time.sleep(SETTLE_S)
        if UNRELATED:
            phases.start("unrelated")
            _unrelated(result, cluster, op.pid, alive)
            if not result.complete:
                return
        phases.start("delete")
        if result.load is not None:
            result.load = (result.load[0], os.getloadavg()[0])
        _delete(side, result, cluster, api, alive)
        time.sleep(SETTLE_S)
    finally:
        phases.end()
        with contextlib.suppress(OSError, ValueError):  # an exited one has no /proc entry
            result.peak_rss = op.peak_rss()


def _objects(side: Side, n: int, updated: bool = False) -> list[dict[str, Any]]:
    return [side.make(i, side.namespace(i), updated) for i in range(n)]


def _create(
    side: Side,
    result: Result,
    cluster: Cluster,
    api: kubernetes.client.ApiClient,
    pid: int,
    alive: Callable[[], str | None],
    phases: Phases,
) -> None:
    n = result.n
    tests = {"seen": lambda _: True, "handled": side.handled, "ready": side.ready}
    children = Watcher(
        api,
        ("apps", "v1", "deployments"),
        {"available": deployment_available},
        label_selector=f"app.kubernetes.io/managed-by={side.managed_by}",
        key=owner_key,
    )
    with Watcher(api, side.resource, tests) as watcher, children:
        phases.start("create")
        result.load = (os.getloadavg()[0], math.nan)
        log(f"{side.name}: creating {n}")
        writes_before = apiserver_writes(cluster)
        started = time.monotonic()
        apply_all(cluster, _objects(side, n), WORKERS, CHUNK, LIMIT_S)
        result.handled_s = wait_count(watcher, "handled", n, alive, started, LIMIT_S)
        result.handled = watcher.count("handled")
        if result.handled_s is not None:
            result.ready_s = wait_count(watcher, "ready", n, alive, started, LIMIT_S)
        result.ready = watcher.count("ready")
        result.create_peak_rss = peak_rss_mib(pid)
        if result.ready_s is not None:
            # The cluster's own pace: plain kopf is done before its pods run.
            result.available_s = wait_count(children, "available", n, alive, started, LIMIT_S)
        result.available = children.count("available")
        result.cluster_writes = apiserver_writes(cluster) - writes_before
        seen, done = watcher.times("seen"), watcher.times("ready")
        up = children.times("available")
        result.latency = sorted(done[k] - seen[k] for k in done if k in seen)
        result.available_latency = sorted(up[k] - seen[k] for k in up if k in seen)
        if side.ready is not side.handled:
            result.ready_lag = sorted(done[k] - up[k] for k in done if k in up)
        if watcher.error is not None and result.ready_s is None:
            result.notes.append(f"last watch error: {watcher.error}")
    if result.ready_s is None:
        result.complete = False
        return
    time.sleep(SETTLE_S)


METRIC_WRITE_VERBS: Final = frozenset(
    {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
)


def apiserver_writes(cluster: Cluster) -> Counter[tuple[str, str]]:
    """Writes the API server has served so far, by every client, per (resource, verb).

    From its own `apiserver_request_total`: what the whole cluster did for
    the objects (the operator's writes, and the controllers', the
    scheduler's and KWOK's in answer), where the audit log has the operator's
    alone.
    """
    out: Counter[tuple[str, str]] = Counter()
    text = cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(
            part.split("=", 1) for part in labels_text.split("{", 1)[1].split(",") if "=" in part
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in METRIC_WRITE_VERBS:
            continue
        what = labels.get("resource", "?")
        if labels.get("subresource"):
            what += "/" + labels["subresource"]
        out[(what, labels["verb"].lower())] += int(float(value))
    return out


def _unrelated(result: Result, cluster: Cluster, pid: int, alive: Callable[[], str | None]) -> None:
    """Add UNRELATED objects nobody here manages; the operator's memory before and after."""
    deployments, pods = UNRELATED // 2, UNRELATED - UNRELATED // 2
    log(f"{result.side}: adding {deployments} Deployments and {pods} Pods, unrelated")
    labels = {"app.kubernetes.io/name": "unrelated", "app.kubernetes.io/part-of": "bench"}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": UNRELATED_NAMESPACE}}
    ]
    for i in range(deployments):
        selector = {**labels, "app.kubernetes.io/instance": f"unrelated-{i:05d}"}
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"unrelated-{i:05d}", "namespace": UNRELATED_NAMESPACE},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": selector},
                        "spec": {"containers": [{"name": "app", "image": "unrelated:latest"}]},
                    },
                },
            }
        )
    for i in range(pods):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"unrelated-pod-{i:05d}",
                    "namespace": UNRELATED_NAMESPACE,
                    "labels": labels,
                },
                "spec": {
                    # Bound directly to a KWOK node, which runs it: no scheduling load.
                    "nodeName": f"cpu-bench-{i % BENCH_NODES}",
                    "containers": [{"name": "app", "image": "unrelated:latest"}],
                },
            }
        )
    before = rss_mib(pid)
    apply_all(cluster, docs[:1], 1, CHUNK, LIMIT_S)
    apply_all(cluster, docs[1:], WORKERS, CHUNK, LIMIT_S)

    def settled() -> bool:
        running = cluster.kubectl(
            "get", "pods", "-n", UNRELATED_NAMESPACE, "--field-selector=status.phase=Running",
            "-o", "name", timeout=LIMIT_S,
        ).stdout.split()  # fmt: skip
        sets = cluster.kubectl(
            "get", "replicasets", "-n", UNRELATED_NAMESPACE, "-o", "name", timeout=LIMIT_S
        ).stdout.split()
        return len(running) >= pods and len(sets) >= deployments

    deadline = time.monotonic() + LIMIT_S
    while not settled():
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            result.notes.append("unrelated objects did not settle (pods Running, ReplicaSets)")
            result.complete = False
            break
        time.sleep(3)
    time.sleep(SETTLE_S)
    result.unrelated = UNRELATED
    result.unrelated_rss = (before, rss_mib(pid))


def _delete(
    side: Side,
    result: Result,
    cluster: Cluster,
    api: kubernetes.client.ApiClient,
    alive: Callable[[], str | None],
) -> None:
    group, version, plural = side.resource
    log(f"{side.name}: deleting {result.n}")
    with Watcher(api, side.resource, {}, gone=True) as watcher:
        time.sleep(1)  # the watch is open before the deletes
        started = time.monotonic()
        for ns in side.namespaces():
            cluster.kubectl(
                "delete", "--raw", f"/apis/{group}/{version}/namespaces/{ns}/{plural}",
                timeout=LIMIT_S,
            )  # fmt: skip
        result.gone_s = wait_count(watcher, "gone", result.n, alive, started, LIMIT_S)
        result.gone = watcher.count("gone")
    if result.gone_s is None:
        result.complete = False
        return
    deadline = started + LIMIT_S
    while time.monotonic() < deadline:
        left = cluster.kubectl(
            "get", "deployments", "-A", "-l", f"app.kubernetes.io/managed-by={side.managed_by}",
            "-o", "name", timeout=LIMIT_S,
        ).stdout.split()  # fmt: skip
        if not left:
            result.children_gone_s = time.monotonic() - started
            return
        time.sleep(1)
    result.notes.append("child Deployments still there after the limit")
    result.complete = False


# --------------------------------------------------------------------------- the cluster


def cluster_config(work: Path) -> Path:
    """hack/kwok/kwokctl.yaml plus the audit log and the raised limits."""
    patches: dict[str, list[tuple[str, str]]] = {}
    for component, flag, _, value in LIMITS:
        patches.setdefault(component, []).append((flag, value))
    patches["kube-apiserver"] += [
        ("audit-policy-file", str(audit_policy(work / "audit-policy.yaml"))),
        ("audit-log-path", str(work / "audit.log")),
        ("audit-log-maxsize", "0"),  # never rotate: the whole run is read back
    ]
    return kwokctl_config(patches, work / "kwokctl.yaml")


def component_flags(name: str) -> dict[str, dict[str, str]]:
    """The flags each running component of cluster NAME was started with (last one wins)."""
    marker = str(KWOK_HOME / "clusters" / name) + "/"
    out: dict[str, dict[str, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(marker in a for a in argv) or not argv[0]:
            continue
        flags: dict[str, str] = {}
        for k, arg in enumerate(argv[1:], 1):
            if not arg.startswith("--"):
                continue
            key, eq, value = arg[2:].partition("=")
            if not eq and k + 1 < len(argv) and not argv[k + 1].startswith("--"):
                value = argv[k + 1]
            flags[key] = value
        out[Path(argv[0]).name] = flags
    return out


def limits_report(flags: Mapping[str, Mapping[str, str]], pods: int) -> list[str]:
    lines = []
    for component, flag, default, _ in LIMITS:
        now = flags.get(component, {}).get(flag)
        shown = now if now is not None else f"{default} (not set: default)"
        lines.append(f"- {component} `--{flag}`: {default} → {shown}")
    lines.append(f"- KWOK: {BENCH_NODES} extra CPU nodes, pods capacity 110 → {pods} each")
    return lines


@dataclass
class Run:
    results: dict[int, list[Result]] = field(default_factory=dict)
    limits: list[str] = field(default_factory=list)


def measure(run: Run) -> None:
    for n in SIZES:
        run.results[n] = []
        for side in SIDES:
            log(f"N={n}: {side.name}")
            with workdir("sf-fleet-") as work:
                config = cluster_config(work)
                with fresh_cluster(CLUSTER_NAME, work, config) as cluster:
                    flags = component_flags(CLUSTER_NAME)
                    if "audit-log-path" not in flags.get("kube-apiserver", {}):
                        raise RuntimeError(f"kube-apiserver runs without the audit log ({flags})")
                    if not run.limits:
                        run.limits = limits_report(flags, node_pods(max(SIZES)))
                    pods = node_pods(n)
                    nodes = bench_nodes(BENCH_NODES, pods)
                    cluster.apply_yaml(yaml.safe_dump_all(nodes), server_side=False)
                    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=str(cluster.kubeconfig)
                    )
                    result = Result(side.name, n)
                    run.results[n].append(result)
                    try:
                        run_side(side, result, cluster, api, work)
                    except Exception as exc:  # the other sides and sizes still run
                        log(f"N={n} {side.name} failed: {exc}")
                        result.complete = False
                        result.notes.append(f"failed: {exc}")
                    except BaseException:
                        result.complete = False
                        result.notes.append("interrupted")
                        raise


# --------------------------------------------------------------------------- report


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _p50_p99(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_f(_percentile(values, 0.5), '.2f')} / {_f(_percentile(values, 0.99), '.2f')}"


def _rwx(r: Result, phase: str) -> str:
    """reads / writes per object, lists and watches in all."""
    reqs = r.requests.get(phase)
    if reqs is None or phase not in r.windows:
        return "-"
    failed = reqs.failed_writes()
    text = f"{reqs.reads / r.n:.2f} / {reqs.writes / r.n:.2f} / {reqs.lists} / {reqs.watches}"
    refused = reqs.refused_watches()
    notes = [f"{failed} writes failed"] if failed else []
    notes += [f"{refused} watches refused"] if refused else []
    return text + (f" ({', '.join(notes)})" if notes else "")


def table(n: int, results: Sequence[Result]) -> list[str]:
    def row(label: str, cell: Callable[[Result], str]) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in results) + " |"

    def quiet(r: Result) -> str:
        reqs = r.requests.get("quiet")
        if reqs is None or "quiet" not in r.windows:
            return "-"
        other = reqs.total() - reqs.watches
        return f"{other} / {reqs.writes} / {reqs.watches}"

    def quiet_rate(r: Result) -> str:
        reqs = r.requests.get("quiet")
        if reqs is None or "quiet" not in r.windows or not r.quiet_s:
            return "-"
        rate = (reqs.total() - reqs.watches) / r.n * 600 / r.quiet_s
        met = "met" if rate < 1 and reqs.writes == 0 else "missed"
        return f"{rate:.3f} ({met})"

    def growth(r: Result) -> str:
        if r.unrelated_rss is None:
            return "-"
        before, after = r.unrelated_rss
        return f"{before:.0f} → {after:.0f} ({100 * (after - before) / before:+.1f}%)"

    def cpu(r: Result) -> str:
        return " / ".join(_f(r.cpu.get(p), ".1f") for p in PHASES)

    return [
        f"### {n} objects per side",
        "",
        "| | " + " | ".join(r.side for r in results) + " |",
        "|---|" + "---:|" * len(results),
        row("create: all handled (s)", lambda r: f"{_f(r.handled_s)} ({r.handled}/{r.n})"),
        row("create: all Ready (s)", lambda r: f"{_f(r.ready_s)} ({r.ready}/{r.n})"),
        row(
            "create: first event → Ready per object, p50 / p99 (s)",
            lambda r: (
                f"{_f(_percentile(r.latency, 0.5), '.2f')} / "
                f"{_f(_percentile(r.latency, 0.99), '.2f')}"
            ),
        ),
        row(
            "create: their Deployments all available (s)",
            lambda r: f"{_f(r.available_s)} ({r.available}/{r.n})",
        ),
        row(
            "create: first event → its Deployment available, p50 / p99 (s)",
            lambda r: _p50_p99(r.available_latency),
        ),
        row(
            "create: Deployment available → Ready, p50 / p99 (s)",
            lambda r: _p50_p99(r.ready_lag),
        ),
        row(
            "create: reads / writes per object, lists / watches opened (in all)",
            lambda r: _rwx(r, "create"),
        ),
        row(
            "create: the API server's writes per object, every client",
            lambda r: _f(sum(r.cluster_writes.values()) / r.n, ".1f") if r.cluster_writes else "-",
        ),
        row(
            "create: the operator's writes in the API server, p50 / p99 (s)",
            lambda r: _p50_p99(r.requests["create"].write_took if "create" in r.requests else []),
        ),
        row(
            "operator RSS idle → peak after create → peak (MiB)",
            lambda r: (
                f"{_f(r.idle_rss, '.0f')} → {_f(r.create_peak_rss, '.0f')} → "
                f"{_f(r.peak_rss, '.0f')}"
            ),
        ),
        row(f"quiet {QUIET_S:.0f} s: requests / writes / watches opened (in all)", quiet),
        row(
            "quiet: requests per object per 10 min, watches left out (goal < 1, 0 writes)",
            quiet_rate,
        ),
        row("restart: the new process's CPU quiet after (s)", lambda r: _f(r.restart_s)),
        row(
            "restart: reads / writes per object, lists / watches opened (in all)",
            lambda r: _rwx(r, "restart"),
        ),
        row(
            "restart: the new process's RSS settled / peak (MiB)",
            lambda r: (
                "-" if r.restart_rss is None else " / ".join(f"{x:.0f}" for x in r.restart_rss)
            ),
        ),
        row(
            "update: all handled and Ready (s)", lambda r: f"{_f(r.updated_s)} ({r.updated}/{r.n})"
        ),
        row(
            "update: reads / writes per object, lists / watches opened (in all)",
            lambda r: _rwx(r, "update"),
        ),
        row(f"unrelated: RSS before → after {UNRELATED:,} objects (MiB)", growth),
        row(
            "unrelated: reads / writes per object, lists / watches opened (in all)",
            lambda r: _rwx(r, "unrelated"),
        ),
        row(
            "delete: all gone / their Deployments gone (s)",
            lambda r: f"{_f(r.gone_s)} / {_f(r.children_gone_s)} ({r.gone}/{r.n})",
        ),
        row(
            "delete: reads / writes per object, lists / watches opened (in all)",
            lambda r: _rwx(r, "delete"),
        ),
        row("operator CPU s: " + " / ".join(PHASES), cpu),
        row(
            f"machine load average (1 min, {os.cpu_count()} cores) at create / at delete",
            lambda r: "-" if r.load is None else f"{_f(r.load[0])} / {_f(r.load[1])}",
        ),
        "",
        *ratios(results),
        *cluster_breakdown(results),
        *breakdown(results),
        *(f"- {r.side}: {note}" for r in results for note in r.notes),
    ]


def ratios(results: Sequence[Result]) -> list[str]:
    """smallfleet's time to all Ready against plain kopf's two finishing lines."""
    sides = {r.side: r for r in results}
    sf, plain = sides.get(SMALLFLEET.name), sides.get(BASELINE.name)
    kids = sides.get(CHILDREN.name)
    if sf is None or sf.ready_s is None:
        return []
    parts = []
    if plain is not None and plain.ready_s:
        parts.append(f"{sf.ready_s / plain.ready_s:.1f}x plain kopf's all handled (goal 2x)")
    if plain is not None and plain.available_s:
        parts.append(
            f"{sf.ready_s / plain.available_s:.1f}x the time until plain kopf's Deployments "
            "were all available (its pods running: the cluster's pace for one Deployment per "
            "object)"
        )
    if kids is not None and kids.ready_s:
        parts.append(
            f"{sf.ready_s / kids.ready_s:.1f}x plain kopf's all handled when it makes "
            "smallfleet's children"
        )
    if kids is not None and kids.available_s:
        parts.append(
            f"{sf.ready_s / kids.available_s:.1f}x the time until those children's "
            "Deployments were all available (the cluster's pace for what a served model needs)"
        )
    if plain is not None and kids is not None and plain.ready_s and kids.ready_s:
        parts.append(
            f"plain kopf itself took {kids.ready_s / plain.ready_s:.1f}x as long with "
            "smallfleet's children as with its one Deployment"
        )
    if not parts:
        return []
    return [f"**smallfleet's time to all Ready:** {'; '.join(parts)}.", ""]


def _head(title: str, keys: Sequence[str], results: Sequence[Result]) -> list[str]:
    """A titled Markdown table's first rows: the key columns, then one column per side."""
    return [
        title,
        "",
        "| " + " | ".join([*keys, *(r.side for r in results)]) + " |",
        "|" + "---|" * len(keys) + "---:|" * len(results),
    ]


def cluster_breakdown(results: Sequence[Result], top: int = 20) -> list[str]:
    """The create's writes by every client, per resource and verb, largest first."""
    totals: Counter[tuple[str, str]] = Counter()
    for r in results:
        totals.update({k: v / r.n for k, v in r.cluster_writes.items()})
    if not totals:
        return []
    lines = _head(
        "The create's writes in the API server per object, by every client "
        "(apiserver_request_total), largest first:",
        ("resource", "verb"),
        results,
    )
    for (what, verb), _ in totals.most_common(top):
        cells = [f"{r.cluster_writes[(what, verb)] / r.n:.2f}" for r in results]
        lines.append(f"| {what} | {verb} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def breakdown(results: Sequence[Result], top: int = 8) -> list[str]:
    """The largest verb/resource lines per phase, per object (watches: in all)."""
    lines = _head(
        "Requests per object by verb and resource, largest first (in all: watches opened, "
        "and before the first and after the last phase):",
        ("phase", "request"),
        results,
    )
    for phase in ("start", *PHASES, "stop"):
        totals: Counter[RequestKey] = Counter()
        for r in results:
            if phase in r.requests:
                totals.update({k: v / r.n for k, v in r.requests[phase].counts.items()})
        for key, _ in totals.most_common(top):
            cells = []
            for r in results:
                count = r.requests[phase].counts[key] if phase in r.requests else 0
                codes = r.requests[phase].codes if phase in r.requests else Counter()
                answers = ", ".join(
                    f"{n} answered {code}" for (k, code), n in codes.items() if k == key
                )
                in_all = key[0] == "watch" or phase in ("start", "stop")
                cell = str(count) if in_all else f"{count / r.n:.2f}"
                cells.append(cell + (f" ({answers})" if answers else ""))
            lines.append(f"| {phase} | {key[0]} {key[1]} | " + " | ".join(cells) + " |")
    return lines


def sizing(run: Run) -> list[str]:
    """MiB and requests per SmallModel: memory as the slope over sizes (or above idle)."""
    sf = [r for rs in run.results.values() for r in rs if r.side == SMALLFLEET.name]
    if not sf:
        return []
    ok = [r for r in sf if r.create_peak_rss == r.create_peak_rss]
    if len(ok) >= 2:
        xs, ys = [r.n for r in ok], [r.peak_rss for r in ok]
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mean_x) ** 2 for x in xs
        )
        base = mean_y - slope * mean_x
        memory = f"{base:.0f} MiB + {slope:.3f} MiB per SmallModel (peak RSS over N={xs})"
    elif ok:
        r = ok[0]
        memory = (
            f"{r.idle_rss:.0f} MiB idle + {(r.peak_rss - r.idle_rss) / r.n:.3f} MiB per "
            f"SmallModel (peak RSS at N={r.n})"
        )
    else:
        memory = "memory unknown"
    big = max(sf, key=lambda r: r.n)

    def per(phase: str) -> str:
        reqs = big.requests.get(phase)
        if reqs is None or phase not in big.windows:
            return "-"
        return f"{(reqs.total() - reqs.watches) / big.n:.1f}"

    quiet = big.requests.get("quiet")
    quiet_text = (
        f"{(quiet.total() - quiet.watches) / big.n * 600 / big.quiet_s:.3f} per 10 min quiet"
        if quiet is not None and big.quiet_s
        else "quiet not measured"
    )
    return [
        f"**Sizing (smallfleet):** {memory}; requests per SmallModel at N={big.n} "
        f"(watches left out): {per('create')} to create, {per('update')} to update, "
        f"{per('delete')} to delete, {quiet_text}."
    ]


def report(run: Run) -> None:
    print(
        f"\n## Fleet: sizes {', '.join(str(n) for n in run.results)}; quiet {QUIET_S:.0f} s; "
        f"{UNRELATED:,} unrelated objects; each side on a fresh cluster; "
        f"{os.cpu_count()} cores\n"
    )
    print("Cluster limits raised (as the components were started):\n")
    print("\n".join(run.limits) + "\n")
    for n, results in run.results.items():
        if results:
            print("\n".join(table(n, results)) + "\n")
    print(
        "Requests are the operator's own (audit log by ServiceAccount); reads = get+list, "
        "writes = create+update+patch+delete+deletecollection, watches counted when opened. "
        "Each phase runs until its goal plus "
        f"{SETTLE_S:.0f} s; `start` is before the first apply, `stop` after the last phase. "
        "plain kopf's Ready is its handler's result (it has no notion of readiness); its update handler patches the "
        "Deployment and returns the generation.\n"
    )
    print("\n".join(sizing(run)))


# --------------------------------------------------------------------------- main


def main() -> int:
    run = Run()
    try:
        with sigterm_interrupts():
            measure(run)
    finally:
        if any(run.results.values()):
            report(run)
    complete = all(r.complete for rs in run.results.values() for r in rs)
    if not complete:
        print(
            f"incomplete: see the notes; each wait gives up after {LIMIT_S:.0f}s "
            "(SMALLFLEET_BENCH_LIMIT_S)"
        )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
