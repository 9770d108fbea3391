"""`make demo`: a fleet of small models on a cluster, shown as one table.

The demo should take one command and be safe to repeat. With a reachable
cluster (KUBECONFIG, or ~/.kube/config) it uses that; otherwise it starts the
local multi-region cluster (`smallfleet-demo`, fake GPU nodes by KWOK). Either
way it installs the CRDs and the chart with the operator Deployment scaled to
zero, and runs the operator as a local background process under the chart's
ServiceAccount (pid file and log in .smallfleet/), so the demo exercises the
same RBAC a real install gets. It applies examples/*.yaml, waits for them to
become Ready while showing progress, and prints every model and pipeline with
its region, replicas and estimated emissions, read from their status.

Usage: python -m hack.demo [up] [--local] [--timeout S] | python -m hack.demo down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hack.cluster import (
    CACHE,
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    REPO,
    Cluster,
    ClusterError,
    cluster_name,
    down,
    ensure_binaries,
    exists,
    free_ports,
    install_chart,
    install_crds,
    install_keda_crds,
    operator_command,
    pid_alive,
    up,
    wait_for,
)

STATE: Final = REPO / ".smallfleet"
STORE_PID_FILE: Final = STATE / "store.pid"
STORE_PORT_FILE: Final = STATE / "store.port"
POOL: Final = "demo-pool"
POOLED_MODELS: Final = ("ngrams-tickets", "ngrams-search", "ngrams-faq")
VECTOR_DIM: Final = 128
PID_FILE: Final = STATE / "operator.pid"
INFO_FILE: Final = STATE / "operator.json"
LOG_FILE: Final = STATE / "operator.log"
LOCAL_KUBECONFIG: Final = STATE / "demo.kubeconfig"
EXAMPLES: Final = REPO / "examples"
KINDS: Final = ("smallmodels.serving.smallfleet.io", "modelpipelines.serving.smallfleet.io")
DEFAULT_NAME: Final = "smallfleet-demo"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


# --------------------------------------------------------------------------- which cluster


def external_kubeconfig(bin_dir: Path) -> Path | None:
    """The user's kubeconfig if it names a cluster that answers; None otherwise."""
    candidates = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(Path.home() / ".kube" / "config")
    for path in candidates:
        if not path.is_file():
            continue
        proc = subprocess.run(
            [str(bin_dir / "kubectl"), f"--kubeconfig={path}", "version", "--request-timeout=5s"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if proc.returncode == 0:
            return path.resolve()
    return None


def choose_cluster(local: bool) -> tuple[Cluster, bool]:
    """The cluster to use, and whether it is the local demo cluster."""
    bin_dir = ensure_binaries()
    if not local:
        kubeconfig = external_kubeconfig(bin_dir)
        if kubeconfig is not None:
            say(f"using your cluster (kubeconfig {kubeconfig})")
            return Cluster("external", kubeconfig, bin_dir), False
    name = cluster_name(DEFAULT_NAME)
    why = "--local given" if local else "no reachable kubeconfig"
    say(f"{why}: using the local cluster {name!r} (3 regions, fake GPUs)")
    STATE.mkdir(exist_ok=True)
    cluster = up(name, LOCAL_KUBECONFIG, bin_dir, real_node=True)
    # The demo cluster outlives the command; `make demo-down` removes it.
    (CACHE / "clusters" / f"{name}.persistent").touch()
    (STATE / "demo-cluster").write_text(name)
    return cluster, True


# --------------------------------------------------------------------------- operator


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"smallfleet" in cmdline.read_bytes()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def running_operator() -> dict[str, Any] | None:
    if not (PID_FILE.exists() and INFO_FILE.exists()):
        return None
    info: dict[str, Any] = json.loads(INFO_FILE.read_text())
    pid = int(PID_FILE.read_text().strip())
    return info if _alive(pid) else None


def log_tail(lines: int = 40) -> str:
    if not LOG_FILE.exists():
        return "(no log)"
    return "\n".join(LOG_FILE.read_text(errors="replace").splitlines()[-lines:])


def start_operator(cluster: Cluster, is_local: bool) -> None:
    say("installing the CRDs")
    install_crds(cluster)
    if is_local:
        # The scaling-keda example renders a ScaledObject; its kind must exist.
        install_keda_crds(cluster)
    info = running_operator()
    if (
        info is not None
        and info.get("kubeconfig") == str(cluster.kubeconfig)
        and _healthy(int(info["health_port"]))
    ):
        say(f"operator already running (pid {PID_FILE.read_text().strip()}, log {LOG_FILE})")
        return
    stop_operator(quiet=True)
    say("installing the chart (operator Deployment scaled to 0)")
    chart = install_chart(cluster)
    metrics_port, health_port = free_ports(2)
    argv, env = operator_command(
        cluster, chart, STATE / "operator.kubeconfig", metrics_port, health_port, None
    )
    say(f"starting the operator as ServiceAccount {chart.namespace}/{chart.service_account}")
    with LOG_FILE.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=STATE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    PID_FILE.write_text(f"{proc.pid}\n")
    INFO_FILE.write_text(
        json.dumps(
            {
                "kubeconfig": str(cluster.kubeconfig),
                "metrics_port": metrics_port,
                "health_port": health_port,
                "argv": argv,
            }
        )
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"the operator exited with {proc.returncode}:\n{log_tail()}")
        if _healthy(health_port):
            say(
                f"operator healthy (pid {proc.pid}, metrics 127.0.0.1:{metrics_port}, log {LOG_FILE})"
            )
            return
        time.sleep(0.5)
    raise ClusterError(f"the operator never answered /healthz on {health_port}:\n{log_tail()}")


def stop_operator(quiet: bool = False) -> None:
    if not PID_FILE.exists():
        return
    pid = int(PID_FILE.read_text().strip())
    if _alive(pid):
        if not quiet:
            say(f"stopping the operator (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    INFO_FILE.unlink(missing_ok=True)


# --------------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    namespace: str
    ready: str
    region: str
    replicas: str
    grams_per_hour: str
    message: str
    stalled: bool


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def row(obj: dict[str, Any]) -> Row:
    status = obj.get("status", {}) or {}
    ready = condition(obj, "Ready")
    regions = status.get("regions") or ([status["region"]] if status.get("region") else [])
    pool = status.get("pool") or {}
    if pool.get("server"):
        regions = [f"pool {pool['server']}"]
    grams = (status.get("carbon") or {}).get("gramsCO2ePerHour")
    desired = status.get("desiredReplicas", status.get("replicas"))
    replicas = f"{status.get('readyReplicas', 0)}/{desired}" if desired is not None else "-"
    stalled = condition(obj, "Stalled")
    message = stalled.get("message") if stalled.get("status") == "True" else ready.get("message")
    return Row(
        kind="pipeline" if obj["kind"] == "ModelPipeline" else "model",
        name=obj["metadata"]["name"],
        namespace=obj["metadata"]["namespace"],
        ready=ready.get("status", "-"),
        region=",".join(regions) or "-",
        replicas=replicas,
        grams_per_hour=f"{grams:.1f}" if isinstance(grams, (int, float)) else "-",
        message=str(message or ""),
        stalled=stalled.get("status") == "True",
    )


def fleet(cluster: Cluster, names: set[tuple[str, str, str]] | None = None) -> list[Row]:
    proc = cluster.kubectl("get", ",".join(KINDS), "-A", "-o", "json", check=False)
    if proc.returncode != 0:
        return []
    items = json.loads(proc.stdout)["items"]
    rows = [row(o) for o in items]
    if names is not None:
        rows = [r for r, o in zip(rows, items, strict=True) if _key(o) in names]
    return sorted(rows, key=lambda r: (r.kind == "pipeline", r.namespace, r.name))


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]


def table(rows: Sequence[Row]) -> str:
    header = ("MODEL/PIPELINE", "NAMESPACE", "READY", "REGION", "REPLICAS", "gCO2e/h")
    body = [
        (f"{r.kind}/{r.name}", r.namespace, r.ready, r.region, r.replicas, r.grams_per_hour)
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True))
        for line in (header, *body)
    ]
    return "\n".join(line.rstrip() for line in lines)


def apply_examples(cluster: Cluster, timeout: float) -> tuple[set[tuple[str, str, str]], list[str]]:
    """Apply the example files one after another, each settling before the next.

    One at a time, as a team would roll models out: each placement decision
    then sees the GPUs the previous models already hold. A file that does not
    apply is reported and the rest go on.
    """
    applied: set[tuple[str, str, str]] = set()
    failures = []
    files = sorted(EXAMPLES.glob("*.yaml"))
    if not files:
        failures.append(f"no examples in {EXAMPLES}")
    deadline = time.monotonic() + timeout
    for path in files:
        proc = cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=smallfleet-demo",
            "-f",
            str(path),
            check=False,
        )
        if proc.returncode != 0:
            failures.append(f"{path.name}: {proc.stderr.strip()}")
            continue
        names = set()
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("SmallModel", "ModelPipeline"):
                doc.setdefault("metadata", {}).setdefault("namespace", "default")
                names.add(_key(doc))
        applied |= names
        say(f"applied {path.relative_to(REPO)}")
        wait_ready(cluster, names, max(deadline - time.monotonic(), 10.0))
    return applied, failures


def wait_ready(cluster: Cluster, names: set[tuple[str, str, str]], timeout: float) -> list[Row]:
    deadline = time.monotonic() + timeout
    last = ""
    rows: list[Row] = []
    while True:
        rows = fleet(cluster, names)
        ready = sum(1 for r in rows if r.ready == "True")
        waiting = sorted(f"{r.kind}/{r.name}" for r in rows if r.ready != "True")
        line = f"{ready}/{len(names)} Ready" + (
            f"; waiting for {', '.join(waiting)}" if waiting else ""
        )
        if line != last:
            print(line, flush=True)
            last = line
        # Stalled resources wait for a person, not for time: stop waiting for them.
        settled = len(rows) == len(names) and all(r.ready == "True" or r.stalled for r in rows)
        if settled or time.monotonic() >= deadline:
            return rows
        time.sleep(2)


# --------------------------------------------------------------------------- a pool, for real


def _triton_env() -> dict[str, Any]:
    env: dict[str, Any] = json.loads((CACHE / "triton" / "env.json").read_text())
    env["index"] = json.loads((Path(env["artifacts"]) / "index.json").read_text())
    return env


def artifact_store(artifacts: Path) -> str:
    """A local HTTP store for the model artifacts (in the background; `demo-down` stops it)."""
    if STORE_PID_FILE.exists() and STORE_PORT_FILE.exists():
        pid = int(STORE_PID_FILE.read_text())
        port = int(STORE_PORT_FILE.read_text())
        if pid_alive(pid):
            return f"http://127.0.0.1:{port}"
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=artifacts,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    STORE_PID_FILE.write_text(f"{proc.pid}\n")
    STORE_PORT_FILE.write_text(f"{port}\n")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/index.json", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for(answers, 20, f"the artifact store on {url} did not answer")
    return url


def pool_manifests(store: str) -> list[dict[str, Any]]:
    """A CPU ServingPool on the local real-Triton node, and small models packed into it."""
    env = _triton_env()
    artifact = env["index"]["hashed-ngrams"]
    pool = {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "ServingPool",
        "metadata": {"name": POOL, "namespace": "default"},
        "spec": {
            "minServers": 1,
            "maxServers": 2,
            "modelsPerServer": 20,
            "backends": ["python"],
            "server": {"cpu": "250m", "memory": "1Gi"},
            "nodeSelector": dict(LOCAL_NODE_SELECTOR),
            "tolerations": [dict(LOCAL_NODE_TOLERATION)],
        },
    }
    models = [
        {
            "apiVersion": "serving.smallfleet.io/v1alpha1",
            "kind": "SmallModel",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "model": {
                    "uri": f"{store}/{artifact['file']}",
                    "digest": artifact["digest"],
                    "format": "python",
                },
                "triton": {
                    "maxBatchSize": 8,
                    "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                    "outputs": [{"name": "VECTOR", "datatype": "FP32", "dims": [VECTOR_DIM]}],
                    "parameters": {"EXECUTION_ENV_PATH": env["execution_env_path"]},
                },
                "resources": {"gpus": 0, "cpu": "50m", "memory": "64Mi"},
                "serving": {"pool": POOL},
                "card": {
                    "owner": "demo@example.com",
                    "license": "Apache-2.0",
                    "description": "Hashed character-trigram vectors for near-duplicate search.",
                },
            },
        }
        for name in POOLED_MODELS
    ]
    return [pool, *models]


def ask_pooled_model(cluster: Cluster, model: str) -> str:
    """One real inference request to a pooled model, at the server its status names."""
    import numpy as np
    import tritonclient.http as httpclient

    obj = cluster.kubectl_json("get", "smallmodel", model, "-n", "default")
    server = obj["status"]["pool"]["server"]
    pod = cluster.kubectl_json("get", "pod", server, "-n", "default")
    ip = pod["status"]["podIP"]
    client = httpclient.InferenceServerClient(f"{ip}:8000")
    try:
        vectors = []
        for text in ("my invoice is wrong", "the invoice was wrong", "reset my password"):
            tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
            vectors.append(client.infer(model, [tensor]).as_numpy("VECTOR")[0])
    finally:
        client.close()
    near, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    return (
        f"POST http://{ip}:8000/v2/models/{model}/infer (pod {server}, Triton READY)\n"
        f"  'my invoice is wrong' -> a unit vector of {len(vectors[0])} hashed trigram buckets "
        f"({int((vectors[0] > 0).sum())} non-zero)\n"
        f"  cosine with 'the invoice was wrong' = {near:.2f}; "
        f"with 'reset my password' = {far:.2f}"
    )


def demo_pool(cluster: Cluster, timeout: float) -> tuple[set[tuple[str, str, str]], str, list[str]]:
    """Pack small models into a real Triton server of a ServingPool and ask one of them."""
    say("serving small models from a shared pool on the real-Triton node")
    store = artifact_store(Path(_triton_env()["artifacts"]))
    docs = pool_manifests(store)
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=smallfleet-demo",
        "-f",
        "-",
        input="\n---\n".join(json.dumps(d) for d in docs),
        check=False,
    )
    if proc.returncode != 0:
        return set(), "", [f"the pool: {proc.stderr.strip()}"]
    names = {("SmallModel", "default", n) for n in POOLED_MODELS}
    say(f"applied ServingPool {POOL} and {len(POOLED_MODELS)} SmallModels that name it")
    rows = wait_ready(cluster, names, timeout)
    if not rows or any(r.ready != "True" for r in rows):
        return names, "", []
    return names, ask_pooled_model(cluster, POOLED_MODELS[0]), []


def stop_store() -> None:
    if STORE_PID_FILE.exists():
        pid = int(STORE_PID_FILE.read_text().strip())
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    STORE_PID_FILE.unlink(missing_ok=True)
    STORE_PORT_FILE.unlink(missing_ok=True)


# --------------------------------------------------------------------------- commands


def demo_up(local: bool, timeout: float) -> int:
    STATE.mkdir(exist_ok=True)
    cluster, is_local = choose_cluster(local)
    start_operator(cluster, is_local)
    names, failures = apply_examples(cluster, timeout)
    answer = ""
    if is_local:
        pooled, answer, pool_failures = demo_pool(cluster, timeout)
        names |= pooled
        failures += pool_failures
    else:
        say(
            "the pooled models need the local cluster's real-Triton node: run `make demo` "
            "without a kubeconfig (or with SMALLFLEET_DEMO_LOCAL=1) to see them"
        )
    rows = fleet(cluster, names)
    print()
    print(table(rows))
    print()
    if answer:
        print(f"A real answer from a pooled model:\n  {answer}\n")
    not_ready = [r for r in rows if r.ready != "True"]
    for r in not_ready:
        print(f"  {r.kind}/{r.name}: {r.message or 'no status yet'}")
    for failure in failures:
        print(f"  could not apply {failure}")
    print(f"\nExplore:\n  export KUBECONFIG={cluster.kubeconfig}\n  kubectl get sm,mp -A")
    print(
        f"  kubectl describe sm -n default          # conditions, placement, carbon\n  tail -f {LOG_FILE}"
    )
    stop = "make demo-down" + (
        "  (stops the operator and deletes the local cluster)"
        if is_local
        else "  (stops the operator)"
    )
    print(f"Stop:\n  {stop}")
    return 0 if not not_ready and not failures and (answer or not is_local) else 1


def demo_down() -> int:
    stop_operator()
    stop_store()
    marker = STATE / "demo-cluster"
    if marker.exists():
        name = marker.read_text().strip()
        if exists(name):
            say(f"deleting the local cluster {name!r}")
            down(name)
        marker.unlink()
    else:
        say("no local demo cluster to delete (a cluster of yours keeps the demo's resources)")
    with contextlib.suppress(FileNotFoundError):
        LOCAL_KUBECONFIG.unlink()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down"])
    parser.add_argument("--local", action="store_true", help="always use the local cluster")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the whole fleet"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            return demo_down()
        return demo_up(args.local or os.environ.get("SMALLFLEET_DEMO_LOCAL") == "1", args.timeout)
    except (ClusterError, TimeoutError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
