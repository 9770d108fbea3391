"""How fast the operator turns a burst of SmallModels into children and Ready status.

A fleet is applied at once (GitOps sync, a restore, a new cluster), so the
figure that matters is objects handled per second from the first apply, and
the memory it takes. The baseline is the plainest kopf operator (one
Deployment per object, adopted, nothing else) measured in the same run on
the same cluster, so the two numbers differ only by what smallfleet does
more: parse, plan, render five children, diff, apply, and derive status.

Models are scaled to zero (`mode: none`, `minReplicas: 0`) so the figure is the
operator's and not KWOK's pod churn; every one still gets its ConfigMap,
Service, Deployment and PodDisruptionBudget and reaches Ready=True.
SMALLFLEET_BENCH_FLEET sets the fleet size (default 500).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hack.cluster import Cluster, free_port, install_crds, shared, wait_for  # noqa: E402

FLEET = int(os.environ.get("SMALLFLEET_BENCH_FLEET", "500"))
CLUSTER = os.environ.get("SMALLFLEET_CLUSTER_NAME", "smallfleet-bench")
PARALLEL_APPLIES = 8
TIMEOUT = 900.0
SMALLFLEET = ROOT / ".venv" / "bin" / "smallfleet"
PYTHON = ROOT / ".venv" / "bin" / "python"

BASELINE = """
import kopf, kubernetes

@kopf.on.create("serving.smallfleet.io", "v1alpha1", "smallmodels")
def create(body, name, namespace, **_):
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"bench": "baseline"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "triton", "image": "triton"}]}},
        },
    }
    kopf.adopt(dep)
    kubernetes.config.load_kube_config()
    kubernetes.client.AppsV1Api().create_namespaced_deployment(namespace, dep)
    return {"deployment": name}
"""


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"https://models.example.com/{name}.tar.gz",
                "digest": "sha256:" + "ab" * 32,
                "format": "python",
            },
            "triton": {"maxBatchSize": 8},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
            "scaling": {"mode": "none", "minReplicas": 0, "maxReplicas": 1},
            "card": {"owner": "bench@example.com", "license": "MIT", "description": "bench"},
        },
    }


def apply_fleet(cluster: Cluster, namespace: str) -> float:
    """Apply FLEET models in PARALLEL_APPLIES server-side applies; returns the start time."""
    chunks = [
        yaml.safe_dump_all([model(f"m{i:05d}") for i in range(k, FLEET, PARALLEL_APPLIES)])
        for k in range(PARALLEL_APPLIES)
    ]
    start = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_APPLIES) as pool:
        list(pool.map(lambda text: cluster.apply_yaml(text, namespace=namespace), chunks))
    return start


def count(cluster: Cluster, *args: str) -> int:
    out = cluster.kubectl("get", *args, "-o", "name", timeout=120).stdout
    return len(out.split())


def ready_count(cluster: Cluster, namespace: str) -> int:
    out = cluster.kubectl(
        "get", "sm", "-n", namespace, "-o",
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        timeout=120,
    ).stdout  # fmt: skip
    return out.split().count("True")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_one(cluster: Cluster, label: str, argv: list[str], ready: bool) -> dict[str, float]:
    namespace = f"bench-{label}-{os.getpid()}"
    cluster.kubectl("create", "namespace", namespace)
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), PYTHONUNBUFFERED="1")
    env["SMALLFLEET_METRICS_PORT"] = str(free_port())
    env["SMALLFLEET_HEALTH_PORT"] = str(free_port())
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "operator.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*argv, namespace] if label == "baseline" else [*argv, "--namespace", namespace],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            time.sleep(3)
            start = apply_fleet(cluster, namespace)
            selector = (
                "bench=baseline"
                if label == "baseline"
                else "app.kubernetes.io/managed-by=smallfleet"
            )

            def deployed() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{label} operator exited:\n{log.read_text()[-3000:]}")
                return count(cluster, "deployments", "-n", namespace, "-l", selector) >= FLEET

            wait_for(deployed, TIMEOUT, f"{label}: not every Deployment appeared", 1.0)
            children_s = time.monotonic() - start
            figures = {"children_s": children_s, "rss_mib": rss_mib(proc.pid)}
            if ready:
                wait_for(
                    lambda: ready_count(cluster, namespace) >= FLEET,
                    TIMEOUT,
                    f"{label}: not every SmallModel became Ready",
                    1.0,
                )
                figures["ready_s"] = time.monotonic() - start
                figures["rss_mib"] = rss_mib(proc.pid)
            return figures
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def main() -> int:
    keep = os.environ.get("SMALLFLEET_KEEP_CLUSTER") == "1"
    with (
        tempfile.TemporaryDirectory() as tmp,
        shared(CLUSTER, Path(tmp) / "kubeconfig", keep=keep) as cluster,
    ):
        install_crds(cluster)
        baseline_py = Path(tmp) / "baseline.py"
        baseline_py.write_text(BASELINE)
        base = run_one(
            cluster,
            "baseline",
            [str(PYTHON), "-m", "kopf", "run", "--standalone", str(baseline_py), "--namespace"],
            ready=False,
        )
        ours = run_one(cluster, "smallfleet", [str(SMALLFLEET), "run"], ready=True)
    print(
        f"\nOperator throughput: {FLEET} SmallModels applied by {PARALLEL_APPLIES} parallel server-side applies"
    )
    print(
        f"{'operator':<34}{'children s':>11}{'objects/s':>11}{'Ready s':>9}{'Ready/s':>9}{'RSS MiB':>9}"
    )
    print(
        f"{'plain kopf (1 Deployment each)':<34}{base['children_s']:>11.1f}"
        f"{FLEET / base['children_s']:>11.1f}{'-':>9}{'-':>9}{base['rss_mib']:>9.0f}"
    )
    print(
        f"{'smallfleet (4 children + status)':<34}{ours['children_s']:>11.1f}"
        f"{FLEET / ours['children_s']:>11.1f}{ours['ready_s']:>9.1f}"
        f"{FLEET / ours['ready_s']:>9.1f}{ours['rss_mib']:>9.0f}"
    )
    print(json.dumps({"fleet": FLEET, "baseline": base, "smallfleet": ours}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
