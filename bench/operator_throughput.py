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

import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, cast

import kubernetes
import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "operator"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from hack.cluster import (  # noqa: E402
    NODES_MANIFEST,
    Cluster,
    down,
    exists,
    install_chart,
    install_crds,
    up,
    wait_established,
)
from tests.e2e.cluster import OperatorProcess, free_port, start_operator  # noqa: E402

CLUSTER_NAME: Final = "sf-bench"
OBJECTS: Final = int(os.environ.get("SMALLFLEET_BENCH_OBJECTS", "500"))
LIMIT_S: Final = float(os.environ.get("SMALLFLEET_BENCH_LIMIT_S", "900"))
WORKERS: Final = 8
NAMESPACES: Final = 4
BASELINE_DIR: Final = Path(__file__).resolve().parent / "baseline"
PYTHON: Final = ROOT / ".venv" / "bin" / "python"

SM: Final = ("serving.smallfleet.io", "v1alpha1", "smallmodels")
PLAIN: Final = ("bench.smallfleet.io", "v1", "plainapps")
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


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- objects


def small_model(i: int) -> dict[str, Any]:
    name = f"bench-model-{i:05d}"
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name, "namespace": namespace_of("sf", i)},
        "spec": {
            "model": {
                "uri": f"https://models.example.com/bench/{name}.tar.gz",
                "digest": "sha256:" + f"{i:064x}",
                "format": "python",
            },
            "triton": {
                "maxBatchSize": 8,
                "inputs": [{"name": "text", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "dims": [1]}],
            },
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
            "scaling": {"mode": "none", "minReplicas": 1, "maxReplicas": 1},
            "card": {
                "owner": "bench@example.com",
                "license": "MIT",
                "description": "A throughput benchmark model.",
            },
        },
    }


def plain_app(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "bench.smallfleet.io/v1",
        "kind": "PlainApp",
        "metadata": {"name": f"bench-app-{i:05d}", "namespace": namespace_of("plain", i)},
        "spec": {"replicas": 1, "image": "app:latest"},
    }


def namespace_of(side: str, i: int) -> str:
    return f"bench-{side}-{i % NAMESPACES}"


def bench_nodes() -> list[dict[str, Any]]:
    """Copies of the cluster's CPU node with room for the fleet's pods."""
    template = next(
        doc
        for doc in yaml.safe_load_all(NODES_MANIFEST.read_text())
        if doc
        and doc.get("kind") == "Node"
        and "nvidia.com/gpu.product" not in doc["metadata"].get("labels", {})
    )
    nodes = []
    for k in range(BENCH_NODES):
        node = copy.deepcopy(template)
        name = f"cpu-bench-{k}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        for key in ("capacity", "allocatable"):
            node["status"][key].update(cpu="256", memory="1Ti", pods=str(BENCH_NODE_PODS))
        nodes.append(node)
    return nodes


# --------------------------------------------------------------------------- observation


class Watcher:
    """Watches one custom kind in every namespace; notes when each object first meets each test.

    A watch, not polling: each object's time is when its event arrived, and
    the bench does not load the API server with lists of the whole fleet.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        resource: tuple[str, str, str],
        tests: Mapping[str, Callable[[Mapping[str, Any]], bool]],
    ) -> None:
        self.api = kubernetes.client.CustomObjectsApi(api)
        self.resource = resource
        self.tests = dict(tests)
        self.seen: dict[str, dict[str, float]] = {t: {} for t in tests}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def count(self, test: str) -> int:
        with self._lock:
            return len(self.seen[test])

    def last(self, test: str) -> float:
        with self._lock:
            return max(self.seen[test].values(), default=0.0)

    def _see(self, obj: Mapping[str, Any]) -> None:
        now = time.monotonic()
        meta = obj.get("metadata", {})
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._lock:
            for name, test in self.tests.items():
                if key not in self.seen[name] and test(obj):
                    self.seen[name][key] = now

    def _run(self) -> None:
        group, version, plural = self.resource
        version_seen: str | None = None
        while not self._stop.is_set():
            try:
                if version_seen is None:
                    listing = cast(
                        dict[str, Any], self.api.list_cluster_custom_object(group, version, plural)
                    )
                    for item in listing.get("items", []):
                        self._see(item)
                    version_seen = str(listing["metadata"]["resourceVersion"])
                stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.api.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    resource_version=version_seen,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":  # usually 410 Gone: list again
                        version_seen = None
                        break
                    version_seen = str(obj["metadata"]["resourceVersion"])
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._see(obj)
            except Exception as exc:  # a dropped watch is listed again; the last error is kept
                self.error = exc
                version_seen = None
                self._stop.wait(0.5)


def handled(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(status.get("observedGeneration") == obj.get("metadata", {}).get("generation"))


def ready(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def plain_handled(obj: Mapping[str, Any]) -> bool:
    return bool(((obj.get("status") or {}).get("create") or {}).get("deployment"))


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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reads(requests: Counter[RequestKey]) -> Counter[str]:
    """GET and LIST requests by resource (from every client: the controllers mostly watch)."""
    out: Counter[str] = Counter()
    for (verb, _, resource, sub), n in requests.items():
        if verb in ("GET", "LIST") and n > 0:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] += n
    return out


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    chunks = [yaml.safe_dump_all(docs[k::WORKERS]) for k in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda text: cluster.apply_yaml(text, field_manager="bench"), chunks))


def wait_count(
    watcher: Watcher, test: str, n: int, alive: Callable[[], str | None], started: float
) -> float | None:
    """Seconds from `started` until `n` objects met `test`, or None after LIMIT_S."""
    deadline = time.monotonic() + LIMIT_S
    while watcher.count(test) < n:
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return watcher.last(test) - started


def create_namespaces(cluster: Cluster, side: str) -> None:
    names = [f"bench-{side}-{k}" for k in range(NAMESPACES)]
    cluster.apply_yaml(
        yaml.safe_dump_all(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
        )
    )


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


@contextlib.contextmanager
def baseline_operator(cluster: Cluster, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    argv = [
        str(PYTHON), "-m", "kopf", "run", "--standalone", "--all-namespaces",
        f"--liveness=http://127.0.0.1:{port}/healthz", str(BASELINE_DIR / "operator.py"),
    ]  # fmt: skip
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), PYTHONUNBUFFERED="1")
    log_path = workdir / "baseline.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"plain kopf exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"plain kopf never answered /healthz:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


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
        apply_all(cluster, [plain_app(i) for i in range(OBJECTS)])
        result.handled_s = wait_count(watcher, "handled", OBJECTS, alive, started)
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
            apply_all(cluster, [small_model(i) for i in range(OBJECTS)])
            result.handled_s = wait_count(watcher, "handled", OBJECTS, alive, started)
            result.handled = watcher.count("handled")
            if result.handled_s is not None:
                result.api_handled = api_snapshot(cluster) - before
                missing = missing_children(cluster)
                if missing:
                    result.note = f"handled, but children missing: {missing}"
                result.ready_s = wait_count(watcher, "ready", OBJECTS, alive, started)
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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
            workdir = Path(tmp)
            if exists(CLUSTER_NAME):
                log(f"deleting the cluster {CLUSTER_NAME!r} a previous run left behind")
                down(CLUSTER_NAME)
            try:
                cluster = up(CLUSTER_NAME, workdir / "kubeconfig")
                return _measure(cluster, workdir)
            finally:
                down(CLUSTER_NAME)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _measure(cluster: Cluster, workdir: Path) -> int:
    cluster.apply_yaml(yaml.safe_dump_all(bench_nodes()), server_side=False)
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
