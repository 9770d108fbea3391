"""What the benchmarks that run an operator on a local cluster share.

`operator_throughput.py` and `fleet.py` both start a cluster of their own
(`hack/cluster.py`), apply a fleet of SmallModels and of the plain kopf
baseline's PlainApps, watch them reach their goals, and read the operator's
memory and CPU from /proc. The objects, the watch, the process figures, the
baseline operator and the cluster's life cycle live here, once.

Not a benchmark itself: `bench/run.py` skips modules whose name starts with `_`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Final, cast

import kubernetes
import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "operator"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Benchmarks import the cluster helpers from here, so this module puts the
# repository on sys.path first (also when a benchmark runs as a script).
import hack.cluster  # noqa: E402
from hack.cluster import (  # noqa: E402
    KWOK_HOME,
    NODES_MANIFEST,
    OPERATOR_NAMESPACE,
    Cluster,
    down,
    exists,
    install_chart,
    install_crds,
    up,
    wait_established,
)
from tests.e2e.cluster import OperatorProcess, free_port, start_operator  # noqa: E402

__all__ = [
    "KWOK_HOME",
    "OPERATOR_NAMESPACE",
    "Cluster",
    "OperatorProcess",
    "install_chart",
    "install_crds",
    "start_operator",
    "wait_established",
]

BASELINE_DIR: Final = Path(__file__).resolve().parent / "baseline"
PYTHON: Final = ROOT / ".venv" / "bin" / "python"

SM: Final = ("serving.smallfleet.io", "v1alpha1", "smallmodels")
PLAIN: Final = ("bench.smallfleet.io", "v1", "plainapps")

# Where the baseline runs when it needs an identity of its own (fleet.py
# attributes API requests by user): a ServiceAccount bound to cluster-admin.
BASELINE_NAMESPACE: Final = "bench-baseline"
BASELINE_ACCOUNT: Final = "plain-kopf"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- objects


def small_model(
    i: int, namespace: str, max_batch_size: int = 8, description: str | None = None
) -> dict[str, Any]:
    """A CPU SmallModel with one replica: a ConfigMap, Service, Deployment and PDB each."""
    name = f"bench-model-{i:05d}"
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "uri": f"https://models.example.com/bench/{name}.tar.gz",
                "digest": "sha256:" + f"{i:064x}",
                "format": "python",
            },
            "triton": {
                "maxBatchSize": max_batch_size,
                "inputs": [{"name": "text", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "dims": [1]}],
            },
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
            "scaling": {"mode": "none", "minReplicas": 1, "maxReplicas": 1},
            "card": {
                "owner": "bench@example.com",
                "license": "MIT",
                "description": description or "A throughput benchmark model.",
            },
        },
    }


def plain_app(i: int, namespace: str, image: str = "app:latest") -> dict[str, Any]:
    """The baseline's object: one Deployment of one replica."""
    return {
        "apiVersion": "bench.smallfleet.io/v1",
        "kind": "PlainApp",
        "metadata": {"name": f"bench-app-{i:05d}", "namespace": namespace},
        "spec": {"replicas": 1, "image": image},
    }


def bench_nodes(count: int, pods: int) -> list[dict[str, Any]]:
    """Copies of the cluster's CPU node (named cpu-bench-K) with room for `pods` pods each."""
    template = next(
        doc
        for doc in yaml.safe_load_all(NODES_MANIFEST.read_text())
        if doc
        and doc.get("kind") == "Node"
        and "nvidia.com/gpu.product" not in doc["metadata"].get("labels", {})
    )
    nodes = []
    for k in range(count):
        node = copy.deepcopy(template)
        name = f"cpu-bench-{k}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        for key in ("capacity", "allocatable"):
            node["status"][key].update(cpu="1024", memory="4Ti", pods=str(pods))
        nodes.append(node)
    return nodes


def namespaces_manifest(names: Sequence[str]) -> str:
    return yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    )


# --------------------------------------------------------------------------- tests on objects


def handled(obj: Mapping[str, Any]) -> bool:
    """smallfleet: the status describes the current generation."""
    status = obj.get("status") or {}
    return bool(status.get("observedGeneration") == obj.get("metadata", {}).get("generation"))


def ready(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def owner_key(obj: Mapping[str, Any]) -> str:
    """namespace/name of the object's controller (its own when it has none)."""
    meta = obj.get("metadata", {})
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    return f"{meta.get('namespace')}/{refs[0]['name'] if refs else meta.get('name')}"


def deployment_available(obj: Mapping[str, Any]) -> bool:
    """A Deployment whose current generation has rolled out with every replica available."""
    meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
    want = int(spec.get("replicas", 1))
    return (
        status.get("observedGeneration") == meta.get("generation")
        and int(status.get("updatedReplicas") or 0) >= want
        and int(status.get("availableReplicas") or 0) >= max(want, 1)
    )


def plain_handled(obj: Mapping[str, Any]) -> bool:
    """plain kopf: its create handler's result is in status."""
    return bool(((obj.get("status") or {}).get("create") or {}).get("deployment"))


def plain_updated(obj: Mapping[str, Any]) -> bool:
    """plain kopf: its update handler's result names the object's current generation."""
    result = (obj.get("status") or {}).get("update") or {}
    return bool(result.get("generation") == obj.get("metadata", {}).get("generation"))


# --------------------------------------------------------------------------- observation


class Watcher:
    """Watches one custom kind in every namespace; notes when each object first meets each test.

    A watch, not polling: each object's time is when its event arrived, and
    the bench does not load the API server with lists of the whole fleet.
    With `gone=True` it also notes when each object was deleted (test "gone").
    Any kind of a named API group works (("apps", "v1", "deployments") too);
    `label_selector` narrows the watch on the server.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        resource: tuple[str, str, str],
        tests: Mapping[str, Callable[[Mapping[str, Any]], bool]],
        gone: bool = False,
        label_selector: str | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
    ) -> None:
        self.api = kubernetes.client.CustomObjectsApi(api)
        self.resource = resource
        self.selector = {"label_selector": label_selector} if label_selector else {}
        self._key = key or object_key
        self.tests = dict(tests)
        self.seen: dict[str, dict[str, float]] = {t: {} for t in tests}
        if gone:
            self.seen["gone"] = {}
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

    def times(self, test: str) -> dict[str, float]:
        with self._lock:
            return dict(self.seen[test])

    def _see(self, obj: Mapping[str, Any]) -> None:
        now = time.monotonic()
        key = self._key(obj)
        with self._lock:
            for name, test in self.tests.items():
                if key not in self.seen[name] and test(obj):
                    self.seen[name][key] = now

    def _gone(self, obj: Mapping[str, Any]) -> None:
        if "gone" in self.seen:
            with self._lock:
                self.seen["gone"].setdefault(self._key(obj), time.monotonic())

    def _run(self) -> None:
        group, version, plural = self.resource
        version_seen: str | None = None
        while not self._stop.is_set():
            try:
                if version_seen is None:
                    listing = cast(
                        dict[str, Any],
                        self.api.list_cluster_custom_object(
                            group, version, plural, **self.selector
                        ),
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
                    **self.selector,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":  # usually 410 Gone: list again
                        version_seen = None
                        break
                    version_seen = str(obj["metadata"]["resourceVersion"])
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._see(obj)
                    elif event["type"] == "DELETED":
                        self._gone(obj)
            except Exception as exc:  # a dropped watch is listed again; the last error is kept
                self.error = exc
                version_seen = None
                self._stop.wait(0.5)


def wait_count(
    watcher: Watcher,
    test: str,
    n: int,
    alive: Callable[[], str | None],
    started: float,
    limit_s: float,
) -> float | None:
    """Seconds from `started` until `n` objects met `test`, or None after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while watcher.count(test) < n:
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return watcher.last(test) - started


# --------------------------------------------------------------------------- the operator process


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User plus system CPU time the process has used so far (and its waited-for children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    """The process's resident set now (VmRSS), in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def baseline_account(cluster: Cluster, kubeconfig: Path) -> str:
    """A ServiceAccount for the baseline (cluster-admin), its token kubeconfig written; its user."""
    cluster.apply_yaml(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BASELINE_NAMESPACE}},
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": BASELINE_ACCOUNT, "namespace": BASELINE_NAMESPACE},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"{BASELINE_NAMESPACE}-{BASELINE_ACCOUNT}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "name": BASELINE_ACCOUNT,
                            "namespace": BASELINE_NAMESPACE,
                        }
                    ],
                },
            ]
        )
    )
    cluster.token_kubeconfig(BASELINE_ACCOUNT, BASELINE_NAMESPACE, kubeconfig)
    return f"system:serviceaccount:{BASELINE_NAMESPACE}:{BASELINE_ACCOUNT}"


@contextlib.contextmanager
def baseline_operator(
    cluster: Cluster,
    workdir: Path,
    kubeconfig: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`kopf run` of bench/baseline/operator.py (admin kubeconfig unless one is given).

    `env` adds to its environment (the children it makes: see its docstring).
    """
    port = free_port()
    argv = [
        str(PYTHON), "-m", "kopf", "run", "--standalone", "--all-namespaces",
        f"--liveness=http://127.0.0.1:{port}/healthz", str(BASELINE_DIR / "operator.py"),
    ]  # fmt: skip
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig or cluster.kubeconfig),
        PYTHONUNBUFFERED="1",
        **(env or {}),
    )
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
        stop_process(proc)


# --------------------------------------------------------------------------- applying


def apply_all(
    cluster: Cluster,
    docs: Sequence[Mapping[str, Any]],
    workers: int = 8,
    chunk: int = 0,
    timeout: float = 600.0,
) -> None:
    """Apply the objects with `workers` parallel `kubectl apply --server-side` runs.

    With `chunk` 0 each worker gets one run of every `workers`-th object (the
    throughput bench's burst); otherwise runs of at most `chunk` objects, so
    each kubectl stays well within `timeout`.
    """
    if chunk:
        parts = [docs[k : k + chunk] for k in range(0, len(docs), chunk)]
    else:
        parts = [docs[k::workers] for k in range(workers)]
    texts = [yaml.safe_dump_all(part) for part in parts if part]

    def apply(text: str) -> None:
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=bench", "-f", "-",
            input=text, timeout=timeout,
        )  # fmt: skip

    pool = ThreadPoolExecutor(workers)
    try:
        list(pool.map(apply, texts))
    except BaseException:  # Ctrl-C: do not wait for the running applies (the cluster goes next)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


# --------------------------------------------------------------------------- the cluster


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so `finally` blocks delete what the bench started."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kwokctl_config(patches: Mapping[str, Sequence[tuple[str, str]]], path: Path) -> Path:
    """hack/kwok/kwokctl.yaml with more extraArgs per component (a later key wins), written to path."""
    base = yaml.safe_load(hack.cluster.KWOKCTL_CONFIG.read_text()) or {}
    components: list[dict[str, Any]] = base.setdefault("componentsPatches", [])
    for name, args in patches.items():
        entry = next((c for c in components if c.get("name") == name), None)
        if entry is None:
            entry = {"name": name}
            components.append(entry)
        extra: list[dict[str, str]] = entry.setdefault("extraArgs", [])
        keys = {key for key, _ in args}
        extra[:] = [a for a in extra if a.get("key") not in keys]
        extra.extend({"key": key, "value": value} for key, value in args)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


@contextlib.contextmanager
def fresh_cluster(name: str, workdir: Path, config: Path | None = None) -> Iterator[Cluster]:
    """A new cluster NAME (one a previous run left is deleted first), deleted again on exit.

    `config` replaces hack/kwok/kwokctl.yaml for this cluster only (build it
    with kwokctl_config, which keeps what that file says).
    """
    if exists(name):
        log(f"deleting the cluster {name!r} a previous run left behind")
        down(name)
    try:
        yield up(name, workdir / "kubeconfig", config=config)
    finally:
        down(name)


@contextlib.contextmanager
def workdir(prefix: str = "sf-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
