"""What pools buy: N small models packed in a ServingPool against one Triton server each.

DESIGN.md claims pools are how hundreds of small models become cheap to
serve: a dedicated server per model pays a whole Triton process (and, on a
GPU, a CUDA context) per model, a pool pays it once per server. This
benchmark measures both on this machine, with real servers and the real
`hashed-ngrams` python-backend artifact from `make triton-env` (the model of
tests/e2e/test_pools.py), for N = 10, 50 and 200 models
(SMALLFLEET_DENSITY_SIZES), growing each arm from one size to the next:

- **pooled**: through the real operator on a local cluster of its own
  (`sf-density`, hack/cluster.py) with the real-Triton node `triton-local`
  (hack/localnode.py runs the pool's server pods as local processes on
  127.3.x.y). The CRDs and the chart are installed, `smallfleet run` runs as
  a process under the chart's ServiceAccount, and one ServingPool
  (`modelsPerServer` 70, servers of 4500Mi and 500m CPU, so that 200 models
  and the extra ones fit in three servers that all schedule on the node's
  2 CPUs and 16Gi) receives the SmallModels;
- **dedicated**: SmallModels cannot tolerate the local node's taint yet, so
  each model's rendered pod runs directly as local processes, the way
  tests/triton/test_rendered_pod.py does: `smallfleet render` of the
  SmallModels, then per model the init containers (`smallfleet fetch` from
  the local store, the config copy) and the Triton container's own command
  and args, with only the listen address (127.0.0.1), the ports and the
  backend directory swapped for local ones.

Per arm and N: servers and processes; the sum of VmRSS (and of PSS, which
counts shared pages once) of every tritonserver and its python-stub children
from /proc; p50/p99 latency of batch-1 requests from a few closed-loop
clients going round-robin over all models for SMALLFLEET_DENSITY_LOAD_S
seconds (tritonclient HTTP); the time to bring the arm up to N; the time to
load one more model (pooled: create the SmallModel → Ready=True in its
status; dedicated: process start → the model answers ready); and, pooled
only, the time until a load failure shows in status (a SmallModel with a
wrong digest → Stalled=True).

An arm stops before a size whose estimated memory (PSS per model measured
at the previous size, times N: the RSS sum counts the libraries every
server maps once per process) exceeds SMALLFLEET_DENSITY_BUDGET_GIB (default
12, half this 24 GiB machine: the cluster, the operator, the clients and
whatever else runs here need the rest); the table says "not run: would need
~X GiB" for it, and the summary says how many models the budget holds.

Everything listens on 127.0.0.0/8. The cluster and every process are
stopped at the end, also on failure, Ctrl-C or SIGTERM. The table is printed
and written to bench/results/density.md.

    make bench-density
    SMALLFLEET_DENSITY_SIZES=3,6 SMALLFLEET_DENSITY_LOAD_S=5 .venv/bin/python bench/run.py density
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml

from _kube import (
    ROOT,
    Cluster,
    OperatorProcess,
    fresh_cluster,
    install_chart,
    install_crds,
    log,
    sigterm_interrupts,
    start_operator,
    workdir,
)

sys.path.insert(0, str(ROOT / "tests" / "triton"))

import numpy as np
import tritonclient.http as httpclient
from hack.cluster import (
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    local_node_dir,
    process_tree,
)
from hack.localnode import localize
from triton_harness import (
    TritonEnv,
    free_port,
    local_args,
    prepare_env,
    serve_directory,
    server_environment,
)

# Not part of `make bench` (bench/run.py without names): it takes ~20 minutes
# and a cluster with a real node. `make bench-density` runs it.
IN_MAKE_BENCH: Final = False

CLUSTER_NAME: Final = "sf-density"
NAMESPACE: Final = "density"
POOL: Final = "density"
SIZES: Final = [
    int(n) for n in os.environ.get("SMALLFLEET_DENSITY_SIZES", "10,50,200").split(",") if n
]
BUDGET_GIB: Final = float(os.environ.get("SMALLFLEET_DENSITY_BUDGET_GIB", "12"))
LOAD_S: Final = float(os.environ.get("SMALLFLEET_DENSITY_LOAD_S", "20"))
LIMIT_S: Final = float(os.environ.get("SMALLFLEET_BENCH_LIMIT_S", "900"))
CLIENTS: Final = 4
STARTERS: Final = 4  # dedicated servers brought up at once (init containers, then Triton)
POLL_S: Final = 0.05  # how often a timed wait looks (model ready, status condition)
RESULTS: Final = Path(__file__).resolve().parent / "results" / "density.md"

# The pool: 70 models of 64Mi fit one 4500Mi server, so 200 models and the
# two extra ones fit three servers; 3 x (500m + the agent's 50m) CPU and
# 3 x (4500Mi + 64Mi) memory fit the local node's 2 CPUs and 16Gi.
MODELS_PER_SERVER: Final = 70
MAX_SERVERS: Final = 3
SERVER_CPU: Final = "500m"
SERVER_MEMORY: Final = "4500Mi"
MODEL_MEMORY: Final = "64Mi"

DIM: Final = 128
MIB: Final = 1 << 20
GIB: Final = 1 << 30
WRONG_DIGEST: Final = "sha256:" + "0" * 64


def artifact_index(env: TritonEnv) -> Mapping[str, Any]:
    found: Mapping[str, Any] = env.index["hashed-ngrams"]
    return found


def small_model(
    name: str, env: TritonEnv, store: str, *, pool: str | None, digest: str = ""
) -> dict[str, Any]:
    """The e2e pool test's SmallModel: hashed character trigrams, 64Mi, batching up to 8."""
    artifact = artifact_index(env)
    spec: dict[str, Any] = {
        "model": {
            "uri": f"{store}/{artifact['file']}",
            "digest": digest or artifact["digest"],
            "format": "python",
        },
        "triton": {
            "maxBatchSize": 8,
            "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
            "outputs": [{"name": "VECTOR", "datatype": "FP32", "dims": [DIM]}],
            "parameters": {"EXECUTION_ENV_PATH": str(env.execution_env_path)},
        },
        "resources": {"gpus": 0, "cpu": "50m", "memory": MODEL_MEMORY},
        "card": {
            "owner": "bench@example.com",
            "license": "Apache-2.0",
            "description": "hashed character trigrams (density benchmark)",
        },
    }
    if pool:
        spec["serving"] = {"pool": pool}
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def pool_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "ServingPool",
        "metadata": {"name": POOL, "namespace": NAMESPACE},
        "spec": {
            "minServers": 1,
            "maxServers": MAX_SERVERS,
            "modelsPerServer": MODELS_PER_SERVER,
            "backends": ["python"],
            "server": {"cpu": SERVER_CPU, "memory": SERVER_MEMORY},
            "nodeSelector": dict(LOCAL_NODE_SELECTOR),
            "tolerations": [dict(LOCAL_NODE_TOLERATION)],
        },
    }


# --------------------------------------------------------------------------- figures


@dataclass
class Memory:
    servers: int
    processes: int
    rss: float  # bytes, sum of VmRSS
    pss: float  # bytes, sum of Pss (shared pages split between their users)


@dataclass
class Load:
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


@dataclass
class Row:
    arm: str
    n: int
    skipped: str = ""
    memory: Memory | None = None
    load: Load | None = None
    bring_up_s: float | None = None  # from the previous size (or nothing) to N ready
    one_more_s: float | None = None
    failure_s: float | None = None
    failure: str = ""
    loadavg: float | None = None  # 1-min load average after the latency run: others' CPU use
    notes: list[str] = field(default_factory=list)


def _status_bytes(pid: int, key: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    return 0.0


def _pss_bytes(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1]) * 1024
    return 0.0


def memory_of(servers: Sequence[int]) -> Memory:
    """RSS and PSS of the tritonserver processes and all their children (the python stubs)."""
    pids = process_tree(servers)
    return Memory(
        servers=len(servers),
        processes=len(pids),
        rss=sum(_status_bytes(p, "VmRSS") for p in pids),
        pss=sum(_pss_bytes(p) for p in pids),
    )


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def local_node_processes(marker: str, predicate: Callable[[list[str]], bool]) -> list[int]:
    """Processes the local node agent started (their argv points into its directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _argv(int(entry.name))
        if argv and argv[0] and any(marker in a for a in argv) and predicate(argv):
            found.append(int(entry.name))
    return found


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def drive(targets: Sequence[tuple[str, str]], seconds: float, clients: int = CLIENTS) -> Load:
    """Closed-loop batch-1 requests, each client round-robin over every (host:port, model).

    Each model answers one request first (not timed): its first inference
    may import numpy in the stub, which is start-up, not serving.
    """
    text = np.array([[b"a cat sleeps on the warm windowsill"]], dtype=object)

    def tensor() -> Any:
        t = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        t.set_data_from_numpy(text)
        return t

    warm: dict[str, Any] = {}
    try:
        for url, model in targets:
            client = warm.setdefault(url, httpclient.InferenceServerClient(url, network_timeout=60))
            client.infer(model, [tensor()])
    finally:
        for client in warm.values():
            client.close()

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        own: dict[str, Any] = {}
        inputs = [tensor()]
        k = i * max(1, len(targets) // clients)
        try:
            while time.monotonic() < deadline:
                url, model = targets[k % len(targets)]
                k += 1
                client = own.get(url)
                if client is None:
                    client = own[url] = httpclient.InferenceServerClient(url, network_timeout=60)
                t0 = time.perf_counter()
                try:
                    client.infer(model, inputs)
                except Exception as exc:  # counted and shown, the load goes on
                    with lock:
                        errors.append(f"{model}: {exc}")
                    continue
                latencies[i].append(time.perf_counter() - t0)
        finally:
            for client in own.values():
                client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    took = time.monotonic() - started
    values = sorted(v for per in latencies for v in per)
    return Load(
        requests=len(values),
        errors=len(errors),
        first_error=errors[0][:300] if errors else "",
        seconds=took,
        p50_ms=_percentile(values, 0.50) * 1000,
        p99_ms=_percentile(values, 0.99) * 1000,
    )


def over_budget(n: int, previous: Row | None) -> str:
    """ "not run: ..." when N models would need more memory than the budget.

    The estimate is PSS, not the RSS sum: every dedicated server maps the
    same Triton and Python libraries, and RSS counts those pages once per
    process, so the RSS sum overstates what N servers take from the machine
    (measured here: 72 MiB RSS but 23 MiB PSS per dedicated server).
    """
    if previous is None or previous.memory is None:
        return ""
    per = previous.memory.pss / previous.n
    need = per * n
    if need <= BUDGET_GIB * GIB:
        return ""
    return (
        f"not run: would need ~{need / GIB:.1f} GiB PSS "
        f"({per / MIB:.0f} MiB per model at N={previous.n}, times {n}; "
        f"budget {BUDGET_GIB:g} GiB)"
    )


# --------------------------------------------------------------------------- dedicated arm


@dataclass
class DedicatedServer:
    name: str
    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path
    ready_s: float  # process start -> model ready

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"


class Dedicated:
    """One rendered pod per model, played out as local processes (no kubelet takes them yet)."""

    def __init__(self, env: TritonEnv, store: str, work: Path, names: Sequence[str]) -> None:
        self.env = env
        self.work = work
        self.servers: dict[str, DedicatedServer] = {}
        self.fetch_s: list[float] = []
        self._lock = threading.Lock()
        self.pods = self._render([small_model(n, env, store, pool=None) for n in names])
        limits = {
            c["resources"]["limits"].get("memory")
            for pod in self.pods.values()
            for c in pod["spec"]["containers"]
        }
        self.memory_limits = sorted(str(x) for x in limits if x)

    def _render(self, docs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """`smallfleet render` of every SmallModel at once: each one's ConfigMap and pod spec."""
        manifest = self.work / "dedicated.yaml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(yaml.safe_dump_all(docs))
        done = subprocess.run(
            [sys.executable, "-m", "smallfleet.cli", "render", str(manifest)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"smallfleet render failed: {done.stderr[-3000:]}")
        pods: dict[str, dict[str, Any]] = {}
        config_maps: dict[str, dict[str, Any]] = {}
        for doc in yaml.safe_load_all(done.stdout):
            if not doc:
                continue
            owner = doc["metadata"]["labels"]["serving.smallfleet.io/owner-name"]
            if doc["kind"] == "ConfigMap":
                config_maps[doc["metadata"]["name"]] = doc
            elif doc["kind"] == "Deployment":
                pods[owner] = {"spec": doc["spec"]["template"]["spec"]}
        for pod in pods.values():
            (name,) = [v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v]
            pod["config_map"] = config_maps[name]
        return pods

    def start(self, name: str) -> DedicatedServer:
        """Init containers in order, then the Triton container; returns once the model is ready."""
        pod = self.pods[name]
        spec = pod["spec"]
        root = self.work / "pods" / name
        volumes = {v["name"]: root / "volumes" / v["name"] for v in spec["volumes"]}
        for path in volumes.values():
            path.mkdir(parents=True, exist_ok=True)
        (config_volume,) = [v["name"] for v in spec["volumes"] if "configMap" in v]
        for key, text in pod["config_map"]["data"].items():
            (volumes[config_volume] / key).write_text(text)
        t0 = time.monotonic()
        for init in spec["initContainers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in init["volumeMounts"]}
            command = [localize(c, mounts) for c in init["command"]]
            if command[0] == "smallfleet":
                command = [sys.executable, "-m", "smallfleet.cli", *command[1:]]
                command += ["--termination-log", str(root / f"{init['name']}.termination-log")]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{name}: init container {init['name']}: {done.stderr[-2000:]}")
        with self._lock:
            self.fetch_s.append(time.monotonic() - t0)

        (triton,) = spec["containers"]
        if triton["command"] != ["tritonserver"]:
            raise RuntimeError(f"{name}: unexpected Triton command {triton['command']}")
        mounts = {m["mountPath"]: volumes[m["name"]] for m in triton["volumeMounts"]}
        args = [localize(a, mounts) for a in triton["args"]]
        ports = {flag: free_port() for flag in ("--http-port", "--grpc-port", "--metrics-port")}
        command = [str(self.env.tritonserver), *local_args(args, self.env, ports)]
        environ = server_environment(os.environ)
        environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*self.env.ld_library_path, *filter(None, [environ.get("LD_LIBRARY_PATH")])]
        )
        log_path = root / "triton.log"
        with log_path.open("wb") as out:
            started = time.monotonic()
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=environ, start_new_session=True
            )
        server = DedicatedServer(name, process, ports["--http-port"], log_path, math.nan)
        with self._lock:
            self.servers[name] = server
        url = f"http://{server.url}/v2/models/{name}/ready"
        deadline = started + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name}: tritonserver exited {process.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.HTTPError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name}: not ready after 300 s:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(POLL_S)
        server.ready_s = time.monotonic() - started
        return server

    def start_many(self, names: Sequence[str]) -> float:
        """Bring these up, STARTERS at a time; seconds until all are ready."""
        t0 = time.monotonic()
        done = 0
        with concurrent.futures.ThreadPoolExecutor(STARTERS) as pool:
            futures = [pool.submit(self.start, n) for n in names]
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += 1
                if done % 10 == 0 or done == len(names):
                    log(f"dedicated: {done}/{len(names)} new servers ready")
        return time.monotonic() - t0

    def memory(self) -> Memory:
        return memory_of([s.process.pid for s in self.servers.values()])

    def targets(self) -> list[tuple[str, str]]:
        return [(s.url, s.name) for s in self.servers.values()]

    def stop(self) -> None:
        """SIGTERM every server, then SIGKILL each one's whole group (the stubs too)."""
        servers = list(self.servers.values())
        for s in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for s in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.process.wait(max(0.1, deadline - time.monotonic()))
        for s in servers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(s.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.process.wait(10)
        self.servers.clear()


def dedicated_arm(env: TritonEnv, store: str, work: Path, rows: list[Row]) -> None:
    names = [f"ded-{i:03d}" for i in range(max(SIZES) + 1)]
    log(f"dedicated: rendering {len(names)} SmallModels with `smallfleet render`")
    arm = Dedicated(env, store, work / "dedicated", names)
    try:
        previous: Row | None = None
        for n in SIZES:
            row = Row("dedicated", n)
            rows.append(row)
            row.skipped = over_budget(n, previous)
            if row.skipped:
                log(f"dedicated N={n}: {row.skipped}")
                break
            missing = [x for x in names[:n] if x not in arm.servers]
            log(f"dedicated N={n}: starting {len(missing)} servers, {STARTERS} at a time")
            row.bring_up_s = arm.start_many(missing)
            row.memory = arm.memory()
            log(f"dedicated N={n}: {row.memory.rss / GIB:.2f} GiB resident; load for {LOAD_S:g} s")
            row.load = drive(arm.targets(), LOAD_S)
            row.loadavg = os.getloadavg()[0]
            # The extra model stays: it is the first of the next size's models.
            row.one_more_s = arm.start(names[n]).ready_s
            previous = row
            log(
                f"dedicated N={n}: p50 {row.load.p50_ms:.1f} ms, p99 {row.load.p99_ms:.1f} ms; "
                f"one more {row.one_more_s:.1f} s"
            )
    finally:
        ran = [r for r in rows if r.arm == "dedicated" and r.memory]
        if arm.fetch_s and ran:
            ran[-1].notes.append(
                f"init containers (fetch + config copy) per model: median "
                f"{sorted(arm.fetch_s)[len(arm.fetch_s) // 2]:.1f} s, not counted in one more"
            )
        log(f"dedicated: stopping {len(arm.servers)} servers")
        arm.stop()
    if arm.memory_limits:
        for row in rows:
            if row.arm == "dedicated" and row.memory:
                per = row.memory.rss / max(1, row.memory.servers) / MIB
                row.notes.append(
                    f"each rendered pod's Triton container has memory limit "
                    f"{', '.join(arm.memory_limits)}; measured {per:.0f} MiB RSS per server with "
                    "its stub, over that limit (not enforced here; in a cluster it risks an OOM kill)"
                )
                break


# --------------------------------------------------------------------------- pooled arm


class Pooled:
    """The operator, a cluster with the real node, and one ServingPool."""

    def __init__(self, cluster: Cluster, operator: OperatorProcess, env: TritonEnv, store: str):
        self.cluster = cluster
        self.operator = operator
        self.env = env
        self.store = store
        api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig)
        )
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.marker = str(local_node_dir(cluster.name))
        self.names: list[str] = []

    def alive(self) -> None:
        if not self.operator.running():
            raise RuntimeError(f"the operator exited:\n{self.operator.log()[-4000:]}")

    def create(self, name: str, digest: str = "") -> None:
        self.custom.create_namespaced_custom_object(
            "serving.smallfleet.io",
            "v1alpha1",
            NAMESPACE,
            "smallmodels",
            small_model(name, self.env, self.store, pool=POOL, digest=digest),
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            "serving.smallfleet.io", "v1alpha1", NAMESPACE, "smallmodels", name
        )

    def get(self, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(
            "serving.smallfleet.io", "v1alpha1", NAMESPACE, "smallmodels", name
        )
        return dict(obj)

    def models(self) -> dict[str, dict[str, Any]]:
        listing: Any = self.custom.list_namespaced_custom_object(
            "serving.smallfleet.io", "v1alpha1", NAMESPACE, "smallmodels"
        )
        return {m["metadata"]["name"]: m for m in listing["items"]}

    def wait_condition(self, name: str, type_: str, limit_s: float) -> tuple[float, dict[str, Any]]:
        """Seconds until condition TYPE is True on the model (from the call), and that condition."""
        t0 = time.monotonic()
        while True:
            cond = condition(self.get(name), type_)
            if cond.get("status") == "True":
                return time.monotonic() - t0, cond
            if time.monotonic() - t0 > limit_s:
                raise TimeoutError(f"{name}: no {type_}=True after {limit_s:.0f} s")
            self.alive()
            time.sleep(POLL_S)

    def grow(self, n: int) -> float:
        """Create models until N name the pool; seconds until all of them are Ready."""
        t0 = time.monotonic()
        while len(self.names) < n:
            name = f"pool-{len(self.names):03d}"
            self.create(name)
            self.names.append(name)
        last_log = 0.0
        while True:
            got = self.models()
            ready = [
                x for x in self.names if condition(got.get(x, {}), "Ready").get("status") == "True"
            ]
            stalled = [
                f"{x}: {condition(got[x], 'Stalled').get('message')}"
                for x in self.names
                if x in got and condition(got[x], "Stalled").get("status") == "True"
            ]
            if stalled:
                raise RuntimeError("models stalled: " + "; ".join(stalled[:5]))
            if len(ready) == len(self.names):
                return time.monotonic() - t0
            if time.monotonic() - last_log > 10:
                log(
                    f"pooled: {len(ready)}/{len(self.names)} Ready "
                    f"after {time.monotonic() - t0:.0f} s"
                )
                last_log = time.monotonic()
            if time.monotonic() - t0 > LIMIT_S:
                raise TimeoutError(
                    f"only {len(ready)}/{len(self.names)} Ready after {LIMIT_S:.0f} s"
                )
            self.alive()
            time.sleep(1.0)

    def targets(self) -> list[tuple[str, str]]:
        pods = self.cluster.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
        ips = {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods}
        got = self.models()
        return [(f"{ips[got[x]['status']['pool']['server']]}:8000", x) for x in self.names]

    def memory(self) -> tuple[Memory, float]:
        """The servers' Triton processes with their stubs; and the agents' RSS in bytes."""
        servers = local_node_processes(self.marker, lambda a: Path(a[0]).name == "tritonserver")
        agents = local_node_processes(self.marker, lambda a: "smallfleet.cli" in a and "agent" in a)
        return memory_of(servers), sum(_status_bytes(p, "VmRSS") for p in agents)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def pooled_arm(env: TritonEnv, store: str, work: Path, rows: list[Row]) -> None:
    log(f"pooled: starting cluster {CLUSTER_NAME!r} with the local node")
    with fresh_cluster(CLUSTER_NAME, work) as cluster:
        cluster.ensure_local_node()
        install_crds(cluster)
        chart = install_chart(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", "-n", NAMESPACE, check=False
                ).returncode
                == 0
            ),
            60,
            f"namespace {NAMESPACE} never got its default ServiceAccount",
        )
        operator = start_operator(cluster, chart, work / "operator", namespace=NAMESPACE)
        try:
            arm = Pooled(cluster, operator, env, store)
            cluster.apply_yaml(json.dumps(pool_manifest()), namespace=NAMESPACE)
            previous: Row | None = None
            for n in SIZES:
                row = Row("pooled", n)
                rows.append(row)
                row.skipped = over_budget(n, previous)
                if row.skipped:
                    log(f"pooled N={n}: {row.skipped}")
                    break
                log(f"pooled N={n}: creating {n - len(arm.names)} SmallModels")
                row.bring_up_s = arm.grow(n)
                row.memory, agents = arm.memory()
                row.notes.append(
                    f"pool agents (`smallfleet agent` sidecars, not counted): "
                    f"{agents / MIB:.0f} MiB RSS; "
                    f"operator {operator_rss(operator) / MIB:.0f} MiB RSS"
                )
                log(f"pooled N={n}: {row.memory.rss / GIB:.2f} GiB resident; load for {LOAD_S:g} s")
                row.load = drive(arm.targets(), LOAD_S)
                row.loadavg = os.getloadavg()[0]

                extra = f"pool-{len(arm.names):03d}"
                t0 = time.monotonic()
                arm.create(extra)
                arm.names.append(extra)  # it stays: one of the next size's models
                arm.wait_condition(extra, "Ready", 300)
                row.one_more_s = time.monotonic() - t0

                bad = f"tampered-{n}"
                t0 = time.monotonic()
                arm.create(bad, digest=WRONG_DIGEST)
                _, cond = arm.wait_condition(bad, "Stalled", 300)
                row.failure_s = time.monotonic() - t0
                row.failure = f"{cond.get('reason')}: {str(cond.get('message'))[:160]}"
                arm.delete(bad)
                previous = row
                log(
                    f"pooled N={n}: p50 {row.load.p50_ms:.1f} ms, p99 {row.load.p99_ms:.1f} ms; "
                    f"one more {row.one_more_s:.1f} s; failure in status {row.failure_s:.1f} s"
                )
        finally:
            code = operator.stop()
            if code not in (0, -signal.SIGTERM):
                log(f"operator exited {code}:\n{operator.log()[-3000:]}")


def operator_rss(operator: OperatorProcess) -> float:
    return _status_bytes(operator.pid, "VmRSS") if operator.running() else 0.0


# --------------------------------------------------------------------------- report


def _num(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def table(rows: Sequence[Row]) -> list[str]:
    header = (
        "| N | arm | servers (processes) | RSS total | RSS per model | PSS total | PSS per model | "
        "p50 / p99 latency | requests/s (errors) | bring up to N | one more model | "
        "load failure → status |"
    )
    lines = [header, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in sorted(rows, key=lambda r: (r.n, r.arm != "pooled")):
        if row.skipped:
            lines.append(f"| {row.n} | {row.arm} | {row.skipped} |" + " |" * 9)
            continue
        m, ld = row.memory, row.load
        mem = (
            (
                f"{m.servers} ({m.processes})",
                f"{m.rss / GIB:.2f} GiB",
                f"{m.rss / row.n / MIB:.0f} MiB",
                f"{m.pss / GIB:.2f} GiB",
                f"{m.pss / row.n / MIB:.0f} MiB",
            )
            if m
            else ("-",) * 5
        )
        lat = f"{_num(ld.p50_ms)} / {_num(ld.p99_ms)} ms" if ld else "-"
        rate = f"{_num(ld.rate, '.0f')} ({ld.errors})" if ld else "-"
        failure = (
            f"{row.failure_s:.1f} s ({row.failure.split(':', 1)[0]})"
            if row.failure_s is not None
            else "-"
        )
        lines.append(
            f"| {row.n} | {row.arm} | {' | '.join(mem)} | {lat} | {rate} | "
            f"{_num(row.bring_up_s)} s | {_num(row.one_more_s)} s | {failure} |"
        )
    return lines


def comparison(rows: Sequence[Row]) -> list[str]:
    """One line per N where both arms ran: what the pool saves."""
    by = {(r.arm, r.n): r for r in rows if r.memory and not r.skipped}
    lines = []
    for n in SIZES:
        pooled, dedicated = by.get(("pooled", n)), by.get(("dedicated", n))
        if pooled is None or dedicated is None or pooled.memory is None or not dedicated.memory:
            continue
        pm, dm = pooled.memory, dedicated.memory
        lines.append(
            f"- N={n}: the pool serves the models with {pm.servers} server(s) instead of "
            f"{dm.servers}, in {pm.rss / GIB:.2f} GiB instead of {dm.rss / GIB:.2f} GiB RSS "
            f"({dm.rss / pm.rss:.1f}x less; PSS {dm.pss / pm.pss:.1f}x less)."
        )
    for arm in ("pooled", "dedicated"):
        ran = [r for r in rows if r.arm == arm and r.memory and not r.skipped]
        skipped = [r for r in rows if r.arm == arm and r.skipped]
        if not ran or ran[-1].memory is None:
            continue
        last = ran[-1]
        per = last.memory.pss / last.n if last.memory else math.nan
        fits = int(BUDGET_GIB * GIB / per) if per > 0 else 0
        stop = f"stopped before N={skipped[0].n}" if skipped else f"ran to N={last.n}"
        lines.append(
            f"- {arm}: {stop}; at {per / MIB:.0f} MiB PSS per model (N={last.n}) the "
            f"{BUDGET_GIB:g} GiB budget holds ~{fits} models."
        )
    if lines:
        lines.insert(0, "What the pool buys, and where each arm stops:")
        lines.insert(1, "")
    return lines


def report(rows: Sequence[Row], started: float, problems: Sequence[str]) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    out = [
        "# Density: models in a ServingPool against one Triton server each",
        "",
        f"`make bench-density`, {when}, on this machine ({cores} cores, {total:.0f} GiB); "
        f"run took {(time.monotonic() - started) / 60:.1f} min. Model: `hashed-ngrams` "
        "(python backend, 64Mi declared, maxBatchSize 8). Each arm grows from one N to the "
        "next; the extra model of one N counts toward the next.",
        "",
        *table(rows),
        "",
        f"- **pooled**: the operator (`smallfleet run`, the chart's ServiceAccount) on cluster "
        f"`{CLUSTER_NAME}` with the real node `triton-local`; one ServingPool, modelsPerServer "
        f"{MODELS_PER_SERVER}, maxServers {MAX_SERVERS}, server cpu {SERVER_CPU} / memory "
        f"{SERVER_MEMORY}. One more = create the SmallModel → Ready=True in its status; load "
        "failure = a SmallModel with a wrong digest → Stalled=True in its status.",
        "- **dedicated**: SmallModels cannot yet tolerate the local node's taint, so each "
        "model's rendered pod (`smallfleet render`: init containers, then the Triton "
        "container's command and args) runs directly as local processes on 127.0.0.1, "
        f"{STARTERS} brought up at a time. One more = tritonserver process start → the model "
        "answers ready (its fetch excluded). No operator runs it, so no status shows a load "
        "failure (the pod would just never turn ready).",
        "- servers (processes): tritonserver processes (with their python-stub children). "
        "RSS/PSS: sums over those processes from /proc. RSS counts a shared page (the Triton "
        "and Python libraries every process maps) once in every process; PSS splits it between "
        "them, so PSS is what the processes take from the machine.",
        f"- latency: {CLIENTS} closed-loop clients, batch-1 HTTP requests (tritonclient), "
        f"round-robin over all N models for {LOAD_S:g} s, after one untimed request per "
        "model; p50/p99 over all requests. The clients share the 2 cores with the servers.",
        f"- memory budget {BUDGET_GIB:g} GiB (SMALLFLEET_DENSITY_BUDGET_GIB): an arm stops "
        "before the N whose estimate (PSS per model at the previous N, times N) exceeds it.",
    ]
    summary = comparison(rows)
    if summary:
        out += ["", *summary]
    notes = [f"- {r.arm} N={r.n}: {note}" for r in rows for note in r.notes]
    notes += [
        f"- {r.arm} N={r.n}: load errors, first: {r.load.first_error}"
        for r in rows
        if r.load and r.load.errors
    ]
    loads = [f"{r.arm} N={r.n} {r.loadavg:.1f}" for r in rows if r.loadavg is not None]
    if loads:
        notes.append(
            f"- 1-min load average right after each latency run ({os.cpu_count()} cores; "
            f"above that, something else competed for the CPUs): {', '.join(loads)}"
        )
    failed = [r for r in rows if r.failure]
    if failed:
        notes.append(f"- pooled N={failed[-1].n}: the load failure's status: {failed[-1].failure}")
    if notes:
        out += ["", "Notes:", "", *notes]
    if problems:
        out += ["", "**Incomplete:**", "", *(f"- {p}" for p in problems)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def main() -> int:
    started = time.monotonic()
    rows: list[Row] = []
    problems: list[str] = []
    log("preparing the Triton environment (hack/triton_env.py)")
    env = prepare_env()
    try:
        with (
            sigterm_interrupts(),
            serve_directory(env.artifacts) as store,
            workdir("sf-density-") as work,
        ):
            for name, arm in (("dedicated", dedicated_arm), ("pooled", pooled_arm)):
                try:
                    arm(env, store, work / name, rows)
                except Exception as exc:  # the other arm still runs; the report says what failed
                    log(f"{name} arm failed: {exc}")
                    problems.append(f"{name}: {str(exc)[:2000]}")
    finally:
        text = report(rows, started, problems)
        print("\n" + text)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        log(f"written to {RESULTS.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
