"""Check the Helm chart: CRDs identical to crds/, lint clean, labels everywhere.

The CRD YAML in crds/ is the single source of truth for the API; the chart
carries copies in files/crds/ (a chart can only read its own files), which
templates/crds.yaml renders with `.Files.Glob`, so that `helm upgrade`
upgrades them (Helm never upgrades a chart's special crds/ directory, which
the chart therefore must not have). Copies drift, so this check fails on any
byte of difference, a CRD file missing on either side, or a rendered CRD
missing, and `--sync` is the only sanctioned way to update them. The chart is
also linted strictly and rendered with several value sets (all namespaces, one
namespace, several replicas with peering, monitoring and JSON logs), every
rendered object must carry the standard app.kubernetes.io labels that tools
select on, and the operator must listen on its pod IP (SMALLFLEET_BIND_ADDRESS
from status.podIP), never on a wildcard address.

Usage: python hack/check_chart.py [--sync]   (SMALLFLEET_HELM=PATH checks with another Helm)
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hack.cluster import ensure_binaries

REPO: Final = Path(__file__).resolve().parent.parent
CHART: Final = REPO / "charts" / "smallfleet"
CRDS: Final = REPO / "crds"
CHART_CRDS: Final = CHART / "files" / "crds"
# Helm installs this directory once and never upgrades it: the chart must not have it.
HELM_CRDS_DIR: Final = CHART / "crds"
STANDARD_LABELS: Final = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
# Value sets every check renders: the default, one watched namespace, several
# watched namespaces, and several replicas (leader election through kopf
# peering), in both scopes.
VALUE_SETS: Final[dict[str, tuple[str, ...]]] = {
    "default": (),
    "one-namespace": ("--set", "watchNamespace=models"),
    "peering": ("--set", "replicas=3"),
    "peering-one-namespace": ("--set", "replicas=2", "--set", "watchNamespace=models"),
    "scaled-to-zero": ("--set", "replicas=0", "--set", "carbon.credentialsSecret.name=carbon"),
    "monitoring-json-logs": (
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.dashboard.enabled=true",
        "--set", "logFormat=json",
    ),
    "crds-elsewhere": ("--set", "crds.enabled=false", "--set", "watchNamespace=models"),
    "several-namespaces": (
        "--set", "replicas=2", "--set", "watchNamespace=models", "--set", "watchNamespaces={team-a,team-b}",
    ),
}  # fmt: skip


def helm_binary() -> Path:
    """The pinned Helm 4, or SMALLFLEET_HELM (for example a Helm 3 to check compatibility)."""
    override = os.environ.get("SMALLFLEET_HELM")
    if override:
        return Path(override)
    return ensure_binaries(("helm",)) / "helm"


def kube_version() -> str:
    """The Kubernetes version the project pins; charts are linted and rendered for it."""
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("KUBERNETES_VERSION missing from hack/versions.env")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def render(
    *set_args: str, release: str = "smallfleet", namespace: str = "smallfleet-system"
) -> list[dict[str, Any]]:
    """`helm template` the chart (hooks included) and return its objects."""
    out = helm(
        "template", release, str(CHART), "--namespace", namespace,
        f"--kube-version={kube_version()}", *set_args,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def crd_files(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {p.name: p for p in sorted(directory.iterdir()) if p.suffix in (".yaml", ".yml")}


def sync_crds() -> list[str]:
    """Make the chart's crds/ an exact copy of crds/; return what changed."""
    source, target = crd_files(CRDS), crd_files(CHART_CRDS)
    CHART_CRDS.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, path in source.items():
        if name not in target or not filecmp.cmp(path, target[name], shallow=False):
            shutil.copyfile(path, CHART_CRDS / name)
            changed.append(f"copied {name}")
    for name, path in target.items():
        if name not in source:
            path.unlink()
            changed.append(f"removed {name}")
    return changed


def check_crds() -> list[str]:
    source, target = crd_files(CRDS), crd_files(CHART_CRDS)
    where = CHART_CRDS.relative_to(REPO)
    problems = []
    if not source:
        problems.append(f"{CRDS} holds no CRD files")
    if HELM_CRDS_DIR.exists():
        problems.append(
            f"{HELM_CRDS_DIR.relative_to(REPO)}/ exists: Helm would install it once and never "
            f"upgrade it, and it collides with templates/crds.yaml (the copies live in {where}/)"
        )
    for name in sorted(source.keys() | target.keys()):
        if name not in target:
            problems.append(f"{where}/{name} is missing (run with --sync)")
        elif name not in source:
            problems.append(f"{where}/{name} has no source in crds/ (run with --sync)")
        elif source[name].read_bytes() != target[name].read_bytes():
            problems.append(f"{where}/{name} differs from crds/{name} (run with --sync)")
    return problems


def rendered_crd_problems(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """The chart must render every CRD of crds/, each with the source's spec unchanged."""
    sources = {}
    for path in crd_files(CRDS).values():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                sources[doc["metadata"]["name"]] = doc
    rendered = {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "CustomResourceDefinition"
        and o["metadata"]["name"].endswith(".serving.smallfleet.io")
    }
    problems = [f"CRD {n} of crds/ is not rendered" for n in sorted(sources.keys() - rendered)]
    problems += [f"CRD {n} is rendered but not in crds/" for n in sorted(rendered.keys() - sources)]
    for name in sorted(sources.keys() & rendered.keys()):
        if rendered[name]["spec"] != sources[name]["spec"]:
            problems.append(f"CRD {name}: the rendered spec differs from crds/")
    return problems


def missing_labels(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    problems = []
    for obj in objects:
        labels = obj.get("metadata", {}).get("labels") or {}
        absent = [label for label in STANDARD_LABELS if label not in labels]
        if absent:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} lacks {', '.join(absent)}")
        template = obj.get("spec", {}).get("template", {}).get("metadata")
        if template is not None:
            absent = [
                label for label in STANDARD_LABELS if label not in (template.get("labels") or {})
            ]
            if absent:
                problems.append(
                    f"{obj['kind']}/{obj['metadata']['name']} pod template lacks {', '.join(absent)}"
                )
    return problems


WILDCARD_ADDRESSES: Final = ("0.0.0.0", "[::]")
BIND_ADDRESS_ENV: Final = "SMALLFLEET_BIND_ADDRESS"


def wildcard_binds(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Places where the operator would listen on every interface instead of its pod IP.

    Each Deployment's operator container must take SMALLFLEET_BIND_ADDRESS from
    `status.podIP` (the kubelet probes the pod IP), and no rendered object may
    name a wildcard address.
    """
    problems = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        text = yaml.safe_dump(dict(obj))
        problems += [
            f"{where} names the wildcard address {w}" for w in WILDCARD_ADDRESSES if w in text
        ]
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env") or []}
            field = env.get(BIND_ADDRESS_ENV, {}).get("valueFrom", {}).get("fieldRef", {})
            if field.get("fieldPath") != "status.podIP":
                problems.append(
                    f"{where} container {container['name']} does not set {BIND_ADDRESS_ENV} "
                    "from status.podIP"
                )
    return problems


_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][A-Za-z0-9]*):(?P<value>.*)$")


def undocumented_values(text: str) -> list[str]:
    """values.yaml keys with neither a comment above them nor a commented parent."""
    problems = []
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of open parents
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        m = _KEY.match(line)
        if m:
            indent = len(m["indent"])
            while documented_at and documented_at[-1][0] >= indent:
                documented_at.pop()
            documented = previous.startswith("#") or any(d for _, d in documented_at)
            if not m["key"][0].islower():
                problems.append(f"values key {m['key']!r} is not camelCase")
            if m["value"].strip() and not documented:
                problems.append(f"values key {m['key']!r} has no comment")
            documented_at.append((indent, documented))
        if stripped:
            previous = stripped
    return problems


def check_chart() -> list[str]:
    problems = check_crds()
    problems += undocumented_values((CHART / "values.yaml").read_text())
    for name, args in VALUE_SETS.items():
        lint = helm(
            "lint", "--strict", f"--kube-version={kube_version()}", str(CHART), *args, check=False
        )
        if lint.returncode != 0:
            problems.append(f"helm lint --strict ({name}) failed:\n{lint.stdout}{lint.stderr}")
            continue
        try:
            objects = render(*args)
        except RuntimeError as exc:
            problems.append(f"helm template ({name}): {exc}")
            continue
        problems += [f"({name}) {p}" for p in missing_labels(objects)]
        problems += [f"({name}) {p}" for p in wildcard_binds(objects)]
        if "crds.enabled=false" not in args:
            problems += [f"({name}) {p}" for p in rendered_crd_problems(objects)]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the smallfleet Helm chart.")
    parser.add_argument("--sync", action="store_true", help="copy crds/ into the chart first")
    args = parser.parse_args(argv)
    if args.sync:
        for change in sync_crds():
            print(f"chart CRDs: {change}")
    problems = check_chart()
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"chart OK: CRDs identical to crds/ and rendered, lint clean, labels present and the "
        f"operator bound to its pod IP in {len(VALUE_SETS)} value sets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
