"""Dump the real API server's OpenAPI v3 schemas of the kinds smallfleet renders.

The unit tests validate every rendered child against the schema the API
server itself publishes, so they catch a misspelt field or a wrong type
without a cluster. This script refreshes those schemas from a throwaway
kwokctl cluster built from the pinned Kubernetes version, keeping only the
schemas reachable from the rendered kinds (the full documents are megabytes).

With --check-render it also applies the golden manifests with
`kubectl apply --server-side --dry-run=server`, proving the API server
accepts exactly what the operator renders (admission and defaulting
included, which no schema shows).

Usage: python hack/dump_openapi.py [--out tests/data/openapi] [--check-render]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from hack.cluster import KWOKCTL_CONFIG, ensure_binaries  # noqa: E402
from smallfleet.core.plan import plan_changes  # noqa: E402

CLUSTER: Final = "sf-render"
# group-version path under /openapi/v3 -> the kinds smallfleet renders in it
GROUP_VERSIONS: Final[dict[str, tuple[str, ...]]] = {
    "api/v1": ("io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.ConfigMap"),
    "apis/apps/v1": ("io.k8s.api.apps.v1.Deployment",),
    "apis/policy/v1": ("io.k8s.api.policy.v1.PodDisruptionBudget",),
    "apis/autoscaling/v2": ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",),
    # Served once KEDA's CRD is installed: the API server publishes CRD schemas too.
    "apis/keda.sh/v1alpha1": ("sh.keda.v1alpha1.ScaledObject",),
}
KEDA_CRD: Final = "keda.sh_scaledobjects.yaml"
GOLDEN: Final = REPO / "tests" / "unit" / "golden"
REF_PREFIX: Final = "#/components/schemas/"


def file_name(group_version: str) -> str:
    return group_version.removeprefix("apis/").replace("/", "_") + ".json"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            yield ref[len(REF_PREFIX) :]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def reachable(schemas: Mapping[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    keep: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        todo.extend(_refs(schemas[name]))
    return dict(sorted(keep.items()))


class Cluster:
    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin = bin_dir
        self.kubeconfig = workdir / "kubeconfig"

    def _run(self, *argv: str, input: str | None = None) -> str:
        proc = subprocess.run(
            argv, capture_output=True, text=True, input=input, check=False, timeout=300
        )
        if proc.returncode != 0 or "Warning:" in proc.stderr:
            raise SystemExit(
                f"`{' '.join(argv)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def create(self) -> None:
        b = self.bin
        self._run(
            str(b / "kwokctl"),
            "create",
            "cluster",
            "--name",
            CLUSTER,
            "--runtime",
            "binary",
            "--config",
            str(KWOKCTL_CONFIG),
            f"--kube-apiserver-binary={b / 'kube-apiserver'}",
            f"--kube-controller-manager-binary={b / 'kube-controller-manager'}",
            f"--kube-scheduler-binary={b / 'kube-scheduler'}",
            f"--etcd-binary={b / 'etcd'}",
            f"--kwok-controller-binary={b / 'kwok'}",
            "--kube-authorization=true",
            "--wait=2m",
        )
        config = self._run(str(b / "kwokctl"), "get", "kubeconfig", "--name", CLUSTER)
        self.kubeconfig.write_text(config)

    def delete(self) -> None:
        subprocess.run(
            [str(self.bin / "kwokctl"), "delete", "cluster", "--name", CLUSTER],
            capture_output=True,
            check=False,
            timeout=120,
        )

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self._run(
            str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args, input=input
        )


def keda_crd(bin_dir: Path) -> Path:
    """KEDA's ScaledObject CRD, as hack/build-bins.sh fetches it from KEDA's Go module."""
    path = bin_dir / "crds" / "keda" / KEDA_CRD
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `hack/build-bins.sh keda` first")
    return path


def install_crd(cluster: Cluster, crd: Path) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    name = yaml.safe_load(crd.read_text())["metadata"]["name"]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def dump(cluster: Cluster, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    version = json.loads(cluster.kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    for gv, roots in GROUP_VERSIONS.items():
        doc = json.loads(cluster.kubectl("get", "--raw", f"/openapi/v3/{gv}"))
        trimmed = {
            "openapi": doc.get("openapi"),
            "info": {"title": doc["info"]["title"], "version": version},
            "components": {"schemas": reachable(doc["components"]["schemas"], roots)},
        }
        path = out / file_name(gv)
        path.write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
        print(f"{path.relative_to(REPO)}: {len(trimmed['components']['schemas'])} schemas")


def check_render(cluster: Cluster) -> None:
    """Dry-run apply every golden manifest into a namespace that enforces restricted Pod Security.

    PodSecurity only warns on workload objects, so each Deployment's pod
    template is also dry-run as a bare Pod, where `enforce` rejects.
    """
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "models",
            "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "warn", "audit")
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    # A control: the namespace must really refuse a pod that breaks the restricted profile.
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runs-as-root", "namespace": "models"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    refused = subprocess.run(
        [
            str(cluster.bin / "kubectl"),
            f"--kubeconfig={cluster.kubeconfig}",
            *("apply", "--dry-run=server", "-f", "-"),
        ],
        input=json.dumps(root_pod),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if refused.returncode == 0 or "violates PodSecurity" not in refused.stderr:
        raise SystemExit(f"restricted Pod Security is not enforced: {refused.stderr}")
    for golden in sorted(GOLDEN.glob("*.yaml")):
        objects = [o for o in yaml.safe_load_all(golden.read_text()) if o]
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{o['metadata']['name']}-dry-run",
                    "namespace": o["metadata"]["namespace"],
                    **o["spec"]["template"]["metadata"],
                },
                "spec": o["spec"]["template"]["spec"],
            }
            for o in objects
            if o["kind"] == "Deployment"
        ]
        stream = yaml.safe_dump_all([*objects, *pods])
        result = cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=smallfleet",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
            input=stream,
        )
        print(f"{golden.relative_to(REPO)} accepted by the API server (dry run, restricted PSS):")
        print("  " + result.strip().replace("\n", "\n  "))
        round_trip(cluster, objects)


def round_trip(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    """Apply for real, read back what the server stored, and diff: nothing may need an update.

    The server adds defaults and rewrites quantities; an apply plan that
    mistook those for changes would re-apply every child on every resync.
    """
    stream = yaml.safe_dump_all(objects)
    cluster.kubectl("apply", "--server-side", "--field-manager=smallfleet", "-f", "-", input=stream)
    observed = json.loads(cluster.kubectl("get", "-o", "json", "-f", "-", input=stream))["items"]
    changes = plan_changes(objects, observed)
    pending = [c for c in changes if c.action != "noop"]
    if pending:
        raise SystemExit(
            "the apply plan sees changes right after an apply:\n"
            + "\n".join(
                f"  {c.action} {c.obj['kind']} {c.obj['metadata']['name']}: {c.reason}"
                for c in pending
            )
        )
    print(f"  read back: {len(changes)} objects, all up to date for the apply plan")
    cluster.kubectl("delete", "--wait=false", "-f", "-", input=stream)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "openapi")
    parser.add_argument("--check-render", action="store_true")
    args = parser.parse_args()
    bin_dir = ensure_binaries(("k8s", "kwok"))
    with tempfile.TemporaryDirectory(prefix="sf-render-") as tmp:
        cluster = Cluster(bin_dir, Path(tmp))
        cluster.delete()  # a leftover from an interrupted run
        cluster.create()
        try:
            install_crd(cluster, keda_crd(bin_dir))
            dump(cluster, args.out)
            if args.check_render:
                check_render(cluster)
        finally:
            cluster.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
