"""smallfleet under a real GitOps engine: Flux applying SmallModels and ModelPipelines from Git.

Each test pushes manifests to a Git repository on loopback, and Flux's
source-controller and kustomize-controller (local processes, built from their Go
modules) apply them into a fresh namespace with `wait: true` and `prune: true`,
while `smallfleet run` reconciles them. What model owners rely on is checked as
they would see it: the Kustomization's Ready condition and message, the
objects' conditions, and the Argo CD health script's verdict on the same live
objects. Flux judges health with kstatus, so agreement with Flux is agreement
with kstatus.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from tests.e2e.cluster import Cluster, ClusterError, OperatorProcess
from tests.e2e.gitops import (
    FLUX_NAMESPACE,
    Flux,
    GitOpsError,
    GitServer,
    Kubectl,
    apply_crds,
    argocd_health,
    assert_loopback_only,
    assert_loopback_url,
    condition,
    flux_controllers,
    git_repository,
    kustomization,
    kustomization_state,
    request_reconcile,
    wait_until,
)
from tests.e2e.gitops import git_server as start_git_server

OperatorFactory = Callable[..., OperatorProcess]

ROOT: Final = Path(__file__).resolve().parents[2]
EXAMPLES: Final = ROOT / "examples"
GROUP: Final = "serving.smallfleet.io"
PLURAL: Final = {"SmallModel": "smallmodels", "ModelPipeline": "modelpipelines"}
KS: Final = "kustomizations.kustomize.toolkit.fluxcd.io"
OWNER_LABELS: Final = (
    "serving.smallfleet.io/owner-kind={kind},serving.smallfleet.io/owner-name={name}"
)
READY_TIMEOUT: Final = 180.0
# kstatus verdict, as Flux writes it into a failed health check's message -> Argo CD status.
FLUX_TO_ARGO: Final = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def example(name: str) -> list[dict[str, Any]]:
    return documents(EXAMPLES / f"{name}.yaml")


def as_files(docs: list[dict[str, Any]]) -> dict[str, str]:
    """One file per resource, the way a repository of manifests usually looks."""
    return {
        f"{d['kind'].lower()}-{d['metadata']['name']}.yaml": yaml.safe_dump(d, sort_keys=False)
        for d in docs
    }


def smallfleet_objects(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return kubectl.list("smallmodels.serving.smallfleet.io", namespace) + kubectl.list(
        "modelpipelines.serving.smallfleet.io", namespace
    )


def ready(obj: dict[str, Any]) -> bool:
    c = condition(obj, "Ready") or {}
    return c.get("status") == "True" and (obj.get("status") or {}).get("observedGeneration") == obj[
        "metadata"
    ].get("generation")


def children(kubectl: Kubectl, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    return kubectl.list(
        "deployments,services,configmaps", namespace, OWNER_LABELS.format(kind=kind, name=name)
    )


def ref(obj: dict[str, Any]) -> str:
    """How Flux names an object in its messages: Kind/namespace/name."""
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta['namespace']}/{meta['name']}"


def flux_verdicts(message: str) -> dict[str, str]:
    """Per-object kstatus verdicts from a failed health check's message."""
    return dict(re.findall(r"(\w+/[\w.-]+/[\w.-]+) status: '(\w+)'", message))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kubectl(cluster: Cluster) -> Kubectl:
    return Kubectl(cluster.bin_dir / "kubectl", cluster.kubeconfig)


@pytest.fixture(scope="module")
def keda_crds(cluster: Cluster) -> None:
    """KEDA's CRDs, so the example that asks for a ScaledObject can be served."""
    crd_dir = cluster.bin_dir / "crds" / "keda"
    if not any(crd_dir.glob("*.yaml")):
        raise ClusterError(f"no KEDA CRDs in {crd_dir}: run `hack/build-bins.sh keda`")
    apply_crds(Kubectl(cluster.bin_dir / "kubectl", cluster.kubeconfig), crd_dir)


@pytest.fixture(scope="module")
def git() -> Iterator[GitServer]:
    with start_git_server() as server:
        yield server


@pytest.fixture(scope="module")
def flux(cluster: Cluster, kubectl: Kubectl, crds_installed: list[str]) -> Iterator[Flux]:
    with flux_controllers(kubectl, cluster.bin_dir) as running:
        yield running


@dataclass
class Sync:
    """One repository and the GitRepository + Kustomization that apply it into one namespace."""

    name: str
    namespace: str
    git: GitServer
    flux: Flux
    kubectl: Kubectl
    interval: str = "10s"
    timeout: str = "60s"
    created: bool = False
    pushes: list[str] = field(default_factory=list)

    def push(self, docs: list[dict[str, Any]], message: str) -> str:
        sha = self.git.push(self.name, as_files(docs), message)
        self.pushes.append(sha)
        if not self.created:
            self.kubectl.apply(git_repository(self.name, self.git.url(self.name)))
            self.kubectl.apply(
                kustomization(
                    self.name,
                    self.name,
                    self.namespace,
                    interval=self.interval,
                    timeout=self.timeout,
                )
            )
            self.created = True
        else:
            # What a push webhook (notification-controller's Receiver) does.
            request_reconcile(self.kubectl, "gitrepository", self.name)
        return sha

    def state(self) -> dict[str, Any]:
        return kustomization_state(self.kubectl, self.name)

    def wait(self, sha: str, ready: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            self.flux.check_alive()
            s = self.state()
            done = (
                s["attempted"].endswith(sha)
                and s["ready"] == ready
                # Flux records the generation and the applied revision only on success.
                and (
                    ready != "True"
                    or (s["applied"].endswith(sha) and s["observed_generation"] == s["generation"])
                )
            )
            return s if done else None

        try:
            result: dict[str, Any] = wait_until(
                f"Kustomization Ready={ready} at {sha[:8]}", check, timeout, 0.5
            )
        except GitOpsError as exc:
            raise GitOpsError(f"{exc}\nstate: {self.state()}\n{self.flux.logs(15)}") from None
        return result


@pytest.fixture
def sync(
    namespace: str,
    git: GitServer,
    flux: Flux,
    kubectl: Kubectl,
    operator: OperatorProcess,
    request: pytest.FixtureRequest,
) -> Iterator[Sync]:
    assert_loopback_url(git.create_repo(namespace))
    s = Sync(name=namespace, namespace=namespace, git=git, flux=flux, kubectl=kubectl)
    yield s
    failed = any(
        getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call")
    )
    if failed:
        print(f"\n===== Flux =====\n{flux.logs(20)}")
    # Deleting the Kustomization prunes what it applied while the operator still runs.
    kubectl(
        "delete",
        KS,
        s.name,
        "-n",
        FLUX_NAMESPACE,
        "--ignore-not-found",
        "--timeout=90s",
        check=False,
        timeout=120,
    )
    kubectl("delete", "gitrepositories.source.toolkit.fluxcd.io", s.name, "-n", FLUX_NAMESPACE, "--ignore-not-found", "--timeout=60s", check=False, timeout=90)  # fmt: skip


@pytest.fixture
def operator(operator_process: OperatorFactory, namespace: str) -> OperatorProcess:
    return operator_process(namespace)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[gitops] {line}")


# --------------------------------------------------------------------------- the engine


def test_flux_applies_and_prunes_a_plain_configmap(
    git: GitServer, flux: Flux, kubectl: Kubectl, namespace: str
) -> None:
    """The engine itself, before smallfleet is involved: Git -> cluster, and back out."""
    repo = f"plain-{namespace}"
    url = git.create_repo(repo)
    assert_loopback_url(url)
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hello"},
        "data": {"a": "1"},
    }
    sha = git.push(repo, as_files([cm]), "a ConfigMap")
    kubectl.apply(git_repository(repo, url))
    kubectl.apply(kustomization(repo, repo, namespace, timeout="30s"))
    try:
        s = Sync(repo, namespace, git, flux, kubectl, created=True)
        s.wait(sha, "True", timeout=90)
        live = kubectl.get("configmap", "hello", namespace)
        assert live and live["data"] == {"a": "1"}
        source = kubectl.get("gitrepositories.source.toolkit.fluxcd.io", repo, FLUX_NAMESPACE)
        assert source is not None
        assert_loopback_url(source["status"]["artifact"]["url"])
        peers = assert_loopback_only([*flux.pids(), git.proc.pid])
        assert peers, "the controllers hold no connections at all"

        sha = git.push(repo, {"README.md": "nothing to apply\n"}, "remove the ConfigMap")
        request_reconcile(kubectl, "gitrepository", repo)
        s.wait(sha, "True", timeout=90)
        wait_until(
            "ConfigMap pruned", lambda: kubectl.get("configmap", "hello", namespace) is None, 30
        )
    finally:
        kubectl(
            "delete",
            KS,
            repo,
            "-n",
            FLUX_NAMESPACE,
            "--ignore-not-found",
            "--timeout=60s",
            check=False,
        )
        kubectl("delete", "gitrepositories.source.toolkit.fluxcd.io", repo, "-n", FLUX_NAMESPACE, "--ignore-not-found", check=False)  # fmt: skip


# --------------------------------------------------------------------------- smallfleet


def test_examples_make_the_kustomization_ready_only_when_every_model_is(
    sync: Sync, kubectl: Kubectl, keda_crds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in documents(p)]
    kinds = Counter(d["kind"] for d in docs)
    assert kinds["SmallModel"] and kinds["ModelPipeline"], kinds

    t0 = time.monotonic()
    sha = sync.push(docs, "the examples")
    first_ready: dict[str, float] = {}
    early: list[str] = []
    ks_ready_at: float | None = None
    seen_progressing = False
    deadline = t0 + READY_TIMEOUT
    while time.monotonic() < deadline:
        sync.flux.check_alive()
        state = sync.state()
        objs = smallfleet_objects(kubectl, sync.namespace)
        now = time.monotonic()
        for o in objs:
            if ready(o):
                first_ready.setdefault(ref(o), now)
            else:
                seen_progressing |= argocd_health(o)[0] == "Progressing"
        ks_done = (
            state["ready"] == "True"
            and state["applied"].endswith(sha)
            and state["observed_generation"] == state["generation"]
        )
        if ks_done:
            # Read after the Kustomization: every object must already be Ready.
            early = [ref(o) for o in objs if not ready(o)]
            if len(objs) < len(docs):
                early.append(f"only {len(objs)} of {len(docs)} objects exist")
            ks_ready_at = now
            break
        time.sleep(0.25)
    assert ks_ready_at is not None, f"Kustomization never Ready: {sync.state()}\n{sync.flux.logs()}"
    assert not early, f"Kustomization Ready while these were not: {early}"
    objs = smallfleet_objects(kubectl, sync.namespace)
    for o in objs:
        assert argocd_health(o)[0] == "Healthy", (ref(o), argocd_health(o), o.get("status"))
    last_model = max(first_ready.values()) - t0
    report(
        capsys,
        f"push -> Kustomization Ready: {ks_ready_at - t0:.1f}s for {len(docs)} objects "
        f"({dict(kinds)}); last object Ready at {last_model:.1f}s; "
        f"Argo CD saw Progressing on the way: {seen_progressing}",
    )


def test_unsatisfiable_models_keep_the_kustomization_not_ready_naming_them(
    sync: Sync, kubectl: Kubectl
) -> None:
    ns = sync.namespace
    (gpu,) = example("cpu-classifier")
    gpu = copy.deepcopy(gpu)
    gpu["metadata"]["name"] = "needs-b300"
    gpu["spec"]["resources"] = {"gpus": 1, "gpuProduct": "NVIDIA-B300", "cpu": "1", "memory": "1Gi"}
    rag = example("rag-pipeline")
    pipeline = next(d for d in rag if d["kind"] == "ModelPipeline")
    first_model = next(d for d in rag if d["kind"] == "SmallModel")
    # One case per push: Flux stops at the first Failed object it meets, so with two in
    # one sync its message would name either.
    cases = [
        (
            [gpu],
            f"SmallModel/{ns}/needs-b300",
            {"Unschedulable", "NoFeasibleRegion"},
            r"NVIDIA-B300|nodes are available",
        ),
        (
            # The pipeline's other step models are missing from Git.
            [first_model, pipeline],
            f"ModelPipeline/{ns}/rag",
            {"MissingModel"},
            r"rag-rerank.*rag-generate|rag-generate.*rag-rerank",
        ),
    ]
    for docs, key, reasons, pattern in cases:
        kind, _, name = key.split("/")
        resource = f"{PLURAL[kind]}.{GROUP}"
        sha = sync.push(docs, f"{name}, which cannot be served")

        def named(
            sha: str = sha, key: str = key, resource: str = resource, name: str = name
        ) -> dict[str, Any] | None:
            state = sync.state()
            if not state["attempted"].endswith(sha) or state["ready"] != "False":
                return None
            if flux_verdicts(state["message"]).get(key) != "Failed":
                return None
            return {"state": state, "obj": kubectl.get(resource, name, ns) or {}}

        seen = wait_until(f"the Kustomization naming {key} Failed", named, READY_TIMEOUT, 0.5)
        assert seen["state"]["reason"] == "HealthCheckFailed", seen["state"]
        # The named object carries smallfleet's reason, and Argo CD reads it the same way.
        stalled = condition(seen["obj"], "Stalled") or {}
        assert stalled.get("status") == "True", seen["obj"].get("status")
        assert stalled.get("reason") in reasons, stalled
        assert re.search(pattern, stalled.get("message", "")), stalled
        assert argocd_health(seen["obj"]) == ("Degraded", stalled["message"])

    # Stalled stays until a person acts: no resync may turn it back into "in progress".
    deadline = time.monotonic() + 75  # longer than the operator's 60-s resync
    while time.monotonic() < deadline:
        live = kubectl.get(f"modelpipelines.{GROUP}", "rag", ns) or {}
        now_stalled = condition(live, "Stalled") or {}
        assert now_stalled.get("status") == "True", (
            f"the pipeline stopped being Stalled without any change to it: {now_stalled}"
        )
        time.sleep(3)
    # A step model that can be served is not blamed.
    wait_until("rag-embed Ready", lambda: ready(kubectl.get(f"smallmodels.{GROUP}", "rag-embed", ns) or {"metadata": {}}), READY_TIMEOUT, 1.0)  # fmt: skip
    assert f"SmallModel/{ns}/rag-embed" not in flux_verdicts(sync.state()["message"])
    assert kubectl.get(f"smallmodels.{GROUP}", "needs-b300", ns) is None  # pruned from Git


def test_spec_change_in_git_rolls_out_and_observed_generation_follows(
    sync: Sync, kubectl: Kubectl
) -> None:
    (doc,) = example("cpu-classifier")
    sha = sync.push([doc], "cpu-classifier")
    sync.wait(sha, "True")
    ns = sync.namespace
    before = kubectl.get("smallmodels.serving.smallfleet.io", "cpu-classifier", ns)
    assert before and ready(before)
    (deploy,) = [
        k
        for k in children(kubectl, ns, "SmallModel", "cpu-classifier")
        if k["kind"] == "Deployment"
    ]

    changed = copy.deepcopy(doc)
    changed["spec"]["resources"]["memory"] = "1536Mi"
    sha = sync.push([changed], "cpu-classifier: more memory")
    sync.wait(sha, "True")
    after = kubectl.get("smallmodels.serving.smallfleet.io", "cpu-classifier", ns)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
    assert ready(after) and argocd_health(after)[0] == "Healthy"
    (rolled,) = [
        k
        for k in children(kubectl, ns, "SmallModel", "cpu-classifier")
        if k["kind"] == "Deployment"
    ]
    assert rolled["metadata"]["uid"] == deploy["metadata"]["uid"]
    container = rolled["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "1536Mi"


_VOLATILE: Final = {"resourceVersion", "managedFields"}


def changed_paths(old: Any, new: Any, path: str = "") -> set[str]:
    """Dotted paths whose values differ; list items with a `type` are matched by it."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: set[str] = set()
        for k in set(old) | set(new):
            if k not in _VOLATILE:
                out |= changed_paths(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and all(isinstance(x, dict) and "type" in x for x in old + new)
    ):
        return changed_paths({x["type"]: x for x in old}, {x["type"]: x for x in new}, path)
    return set() if old == new else {path}


@dataclass
class WriteCounter:
    """Counts writes (resourceVersion changes) to chosen objects through watches."""

    kubectl: Kubectl
    namespace: str
    targets: list[tuple[str, str]]  # (resource, name)
    writes: Counter[str] = field(default_factory=Counter)
    writers: dict[str, Counter[str]] = field(default_factory=dict)
    changed: dict[str, Counter[str]] = field(default_factory=dict)  # which fields moved
    errors: list[str] = field(default_factory=list)

    def run(self, seconds: float) -> None:
        threads = [
            threading.Thread(target=self._watch, args=(resource, name, seconds), daemon=True)
            for resource, name in self.targets
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)

    def _watch(self, resource: str, name: str, seconds: float) -> None:
        import subprocess

        key = f"{resource}/{name}"
        self.writers[key] = Counter()
        self.changed[key] = Counter()
        previous: dict[str, Any] | None = self.kubectl.get(resource, name, self.namespace)
        proc = subprocess.Popen(
            [str(self.kubectl.binary), f"--kubeconfig={self.kubectl.kubeconfig}", "get", resource, name,
             "-n", self.namespace, "--watch-only", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        timer = threading.Timer(seconds, proc.terminate)
        timer.start()
        decoder = json.JSONDecoder()
        buffer = ""
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.readline() if proc.stdout else "", ""):
            buffer += chunk
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                if event.get("type") == "MODIFIED":
                    self.writes[key] += 1
                    obj = event["object"]
                    latest = max(
                        obj["metadata"].get("managedFields") or [{}],
                        key=lambda m: m.get("time", ""),
                    )
                    self.writers[key][
                        f"{latest.get('manager')}:{latest.get('subresource', 'main')}"
                    ] += 1
                    if previous is not None:
                        self.changed[key].update(changed_paths(previous, obj))
                    previous = obj
        timer.cancel()
        proc.wait(timeout=10)
        # Ended by the timer, kubectl exits non-zero; only what it said counts as an error.
        complaint = proc.stderr.read().strip() if proc.stderr is not None else ""
        if complaint:
            self.errors.append(f"{key}: {complaint}")


def test_drift_is_repaired_by_whoever_owns_it_without_a_fight(
    sync: Sync, kubectl: Kubectl, capsys: pytest.CaptureFixture[str]
) -> None:
    (doc,) = example("cpu-classifier")
    sha = sync.push([doc], "cpu-classifier")
    sync.wait(sha, "True")
    ns, name = sync.namespace, "cpu-classifier"
    resource = "smallmodels.serving.smallfleet.io"

    # A child deleted by hand: the operator owns children and puts it back.
    (deploy,) = [k for k in children(kubectl, ns, "SmallModel", name) if k["kind"] == "Deployment"]
    dname, uid = deploy["metadata"]["name"], deploy["metadata"]["uid"]
    kubectl("delete", "deployment", dname, "-n", ns, "--wait=true", "--timeout=60s")

    def recreated() -> dict[str, Any] | None:
        d = kubectl.get("deployment", dname, ns)
        return d if d and d["metadata"]["uid"] != uid else None

    wait_until(f"Deployment {dname} recreated by the operator", recreated, 90, 1.0)
    wait_until(f"{name} Ready again", lambda: ready(kubectl.get(resource, name, ns) or {"metadata": {}}), 90, 1.0)  # fmt: skip

    # The spec edited by hand: Git owns the spec and Flux puts it back.
    generation = (kubectl.get(resource, name, ns) or {})["metadata"]["generation"]
    kubectl("patch", resource, name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": {"scaling": {"maxReplicas": 2}}}))  # fmt: skip
    edited = kubectl.get(resource, name, ns)
    assert edited and edited["spec"]["scaling"]["maxReplicas"] == 2

    def reverted() -> dict[str, Any] | None:
        o = kubectl.get(resource, name, ns)
        return (
            o
            if o and o["spec"]["scaling"]["maxReplicas"] == doc["spec"]["scaling"]["maxReplicas"]
            else None
        )

    started = time.monotonic()
    obj = wait_until("Flux reverting the hand edit", reverted, 60, 0.5)
    revert_s = time.monotonic() - started
    assert obj["metadata"]["generation"] == generation + 2
    wait_until(f"{name} observes generation {generation + 2}", lambda: ready(kubectl.get(resource, name, ns) or {"metadata": {}}), 90, 1.0)  # fmt: skip

    # Then nothing should move: count writes over a quiet minute.
    time.sleep(5)
    # A ConfigMap written exactly once proves the watches see writes at all.
    probe = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "write-probe", "namespace": ns},
    }
    kubectl.apply(probe)
    counter = WriteCounter(
        kubectl, ns, [(resource, name), ("deployment", dname), ("configmap", "write-probe")]
    )
    poke = threading.Timer(10, kubectl.apply, args=({**probe, "data": {"written": "once"}},))
    poke.start()
    counter.run(60)
    poke.join()
    assert not counter.errors, counter.errors
    assert counter.writes.pop("configmap/write-probe", 0) == 1, counter.writes
    report(
        capsys,
        f"drift: hand edit reverted by Flux in {revert_s:.1f}s (interval {sync.interval}); "
        f"writes over a quiet minute: {dict(counter.writes)} by {dict(counter.writers)}, "
        f"changing {dict(counter.changed)}",
    )
    for key, n in counter.writes.items():
        assert n <= 2, (
            f"{key} was written {n} times in a quiet minute by {dict(counter.writers[key])}, "
            f"changing {dict(counter.changed[key])}"
        )
    final = kubectl.get(resource, name, ns)
    assert final and ready(final)
    assert final["metadata"]["generation"] == generation + 2


def test_removing_a_model_from_git_prunes_it_and_its_children(sync: Sync, kubectl: Kubectl) -> None:
    keep = example("cpu-classifier")
    gone = copy.deepcopy(keep[0])
    gone["metadata"]["name"] = "short-lived"
    sha = sync.push([*keep, gone], "two models")
    sync.wait(sha, "True")
    ns = sync.namespace
    assert children(kubectl, ns, "SmallModel", "short-lived")

    sha = sync.push(keep, "remove short-lived")
    sync.wait(sha, "True")
    wait_until("short-lived pruned", lambda: kubectl.get("smallmodels.serving.smallfleet.io", "short-lived", ns) is None, 60, 0.5)  # fmt: skip
    wait_until(
        "children of short-lived garbage-collected",
        lambda: (
            not children(kubectl, ns, "SmallModel", "short-lived")
            and not kubectl.list(
                "pods", ns, OWNER_LABELS.format(kind="SmallModel", name="short-lived")
            )
        ),
        90,
        1.0,
    )
    assert children(kubectl, ns, "SmallModel", "cpu-classifier")


def test_argocd_health_agrees_with_flux_on_the_same_objects(
    sync: Sync, kubectl: Kubectl, operator: OperatorProcess, operator_process: OperatorFactory
) -> None:
    ns = sync.namespace
    resource = "smallmodels.serving.smallfleet.io"
    (good,) = example("cpu-classifier")
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "needs-b300"
    bad["spec"]["resources"] = {"gpus": 1, "gpuProduct": "NVIDIA-B300", "cpu": "1", "memory": "1Gi"}

    # Healthy: Flux calls everything Current (Kustomization Ready), Argo CD says Healthy.
    sha = sync.push([good], "good")
    sync.wait(sha, "True")
    for o in smallfleet_objects(kubectl, ns):
        assert argocd_health(o)[0] == "Healthy", (ref(o), o.get("status"))

    # Degraded: Flux fails early naming the object Failed; Argo CD says Degraded.
    sha = sync.push([good, bad], "good and bad")
    state = wait_until(
        "failed health check naming needs-b300",
        lambda: (
            (s := sync.state())["attempted"].endswith(sha) and "needs-b300" in s["message"] and s
        ),
        READY_TIMEOUT,
        1.0,
    )
    objs = {ref(o): o for o in smallfleet_objects(kubectl, ns)}
    verdicts = flux_verdicts(state["message"])
    for key, o in objs.items():
        want = FLUX_TO_ARGO[verdicts.get(key, "Current")]
        assert argocd_health(o)[0] == want, (key, verdicts, o.get("status"))

    # Progressing: a new generation the operator has not observed (it is stopped).
    operator.stop()
    changed = copy.deepcopy(good)
    changed["spec"]["resources"]["memory"] = "1536Mi"
    sync.timeout = "20s"
    kubectl.apply(
        kustomization(sync.name, sync.name, ns, interval=sync.interval, timeout=sync.timeout)
    )
    sha = sync.push([changed], "change while the operator is away")
    state = wait_until(
        "health check timing out on cpu-classifier",
        lambda: (
            (s := sync.state())["attempted"].endswith(sha)
            and "cpu-classifier" in s["message"]
            and s
        ),
        READY_TIMEOUT,
        1.0,
    )
    verdicts = flux_verdicts(state["message"])
    live = kubectl.get(resource, "cpu-classifier", ns)
    assert live is not None
    assert verdicts.get(ref(live)) == "InProgress", state["message"]
    assert argocd_health(live)[0] == "Progressing", live.get("status")

    # And back: the operator returns, both engines agree on Healthy.
    operator_process(ns)
    request_reconcile(sync.kubectl, KS, sync.name)
    sync.wait(sha, "True")
    live = kubectl.get(resource, "cpu-classifier", ns)
    assert live is not None and argocd_health(live)[0] == "Healthy"
