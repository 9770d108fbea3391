"""Faults the operator must survive: each test breaks one thing, then checks convergence.

Convergence means the same thing everywhere: the model is Ready at its
current generation, it owns exactly one ConfigMap, Service, Deployment and
PodDisruptionBudget (children counted by owner uid, so nothing is lost and
nothing duplicated), and exactly as many live pods as it asks for. During a
fault, status must stay honest: never Ready while nothing serves, never
Stalled for a fault that heals by itself, and stale signals called stale.
Each test prints the time to converge after its fault; the module prints
them all at the end (docs/operator.md, "Faults survived", quotes them).

How each fault is made, with no hook in the operator (tests/e2e/faults.py):

* SIGKILL at each step of a reconcile: the operator talks to the API server
  through `ApiProxy` on 127.0.0.1, which counts its writes and, at the
  chosen one, SIGKILLs it, either before the write reaches the API server or
  after the API server applied it and before the operator hears the answer.
  The kill point is exact on the wire, so every step is hit every run.
* Watch expiry: the proxy cuts the operator's open watches and answers the
  next ones with an `ERROR` event of code 410 ("too old resource version"),
  as the API server does after etcd compaction; kopf must list again.
* 409 conflicts: a competing writer keeps changing the SmallModel and its
  Deployment (each change a new resourceVersion), so the operator's status
  writes, which carry the resourceVersion they were computed from, are
  refused with real 409s; the writer also changes the object at the very
  moment a status write is in flight (held by the proxy), so at least one
  409 is certain. Server-side apply with force never conflicts on the
  children, so the proxy answers their first applies with the API server's
  own 409 body instead.
* The API server restarted and etcd paused for 30 s run on a cluster of
  their own (its controller-manager and scheduler without leader election,
  which would otherwise exit when a paused etcd lets their lease lapse), so
  the shared session cluster is never disturbed; the proxy starts the fault
  at an exact point of a reconcile. A node deleted under a running model
  uses that cluster too, since it removes one of its nodes.
* Carbon provider and Triton metrics: `Endpoint`s on loopback impersonate
  Electricity Maps and a Triton pod's metrics port, then answer with huge
  bodies, wrong types, NaN, slowly and with errors, before healing.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import kubernetes
import pytest
import yaml
from hack.cluster import KWOKCTL_CONFIG, NODES_MANIFEST, down, install_chart, install_crds, up
from tests.e2e.cluster import (
    ChartRelease,
    Cluster,
    OperatorFactory,
    OperatorProcess,
    cluster_name,
    condition,
    start_operator,
)
from tests.e2e.faults import Answer, ApiProxy, Component, Endpoint, Trap
from tests.e2e.podnet import Forwarder

ROOT: Final = Path(__file__).resolve().parents[2]
TIMEOUT: Final = 90.0
CHILDREN: Final = Counter({"ConfigMap": 1, "Service": 1, "Deployment": 1, "PodDisruptionBudget": 1})
GROUP_PATH: Final = "/apis/serving.smallfleet.io/v1alpha1"
ETCD_PAUSE_S: Final = 30.0

# fault -> seconds to converge, printed at the end of the module
CONVERGED: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not CONVERGED:
        return
    with capture.global_and_fixture_disabled():  # printed even when output is captured
        reporter.write_line("")
        reporter.write_line("faults survived (seconds to converge):")
        for fault, seconds in CONVERGED.items():
            reporter.write_line(f"  {seconds:6.1f}  {fault}")


def record(fault: str, seconds: float) -> None:
    CONVERGED[fault] = seconds
    print(f"FAULT {fault}: converged in {seconds:.1f} s", flush=True)


# --------------------------------------------------------------------------- models


def classifier(name: str) -> dict[str, Any]:
    """The CPU classifier example: one replica on the CPU node, quick to become Ready."""
    doc = yaml.safe_load((ROOT / "examples" / "cpu-classifier.yaml").read_text())
    doc["metadata"] = {"name": name}
    return dict(doc)


def embedder(name: str, product: str, region: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "minilm-embedder.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"]["resources"]["gpuProduct"] = product
    doc["spec"]["scaling"] = {"mode": "none", "minReplicas": 1, "maxReplicas": 1}
    doc["spec"]["placement"] = {"policy": "carbon-aware", "regions": [region]}
    return dict(doc)


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.apply_yaml(yaml.safe_dump_all(list(docs)), namespace=namespace)


def get_sm(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl_json("get", "sm", name, "-n", namespace)
    return obj


def owned_by(items: list[dict[str, Any]], uid: str) -> list[dict[str, Any]]:
    return [
        i
        for i in items
        if any(r.get("uid") == uid for r in i["metadata"].get("ownerReferences") or [])
    ]


CHILD_LIST: Final = "configmaps,services,deployments,poddisruptionbudgets,replicasets,pods"


def census_of(items: list[dict[str, Any]], uid: str) -> tuple[Counter[str], int]:
    """A model's children by kind (by owner uid) and its live pods (via Deployment, RS)."""
    mine = owned_by(items, uid)
    kinds = Counter(i["kind"] for i in mine)
    sets = [
        rs
        for d in mine
        if d["kind"] == "Deployment"
        for rs in owned_by([i for i in items if i["kind"] == "ReplicaSet"], d["metadata"]["uid"])
    ]
    pods = [
        p
        for rs in sets
        for p in owned_by([i for i in items if i["kind"] == "Pod"], rs["metadata"]["uid"])
        if not p["metadata"].get("deletionTimestamp")
    ]
    return kinds, len(pods)


def census(cluster: Cluster, namespace: str, uid: str) -> tuple[Counter[str], int]:
    return census_of(cluster.kubectl_json("get", CHILD_LIST, "-n", namespace)["items"], uid)


def missing(obj: dict[str, Any], items: list[dict[str, Any]], replicas: int = 1) -> str | None:
    """None when the model has converged, else what is still missing."""
    status = obj.get("status") or {}
    if condition(obj, "Ready").get("status") != "True":
        return f"not Ready: {status.get('conditions')}"
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "status is of an older generation"
    kinds, pods = census_of(items, obj["metadata"]["uid"])
    if kinds != CHILDREN:
        return f"children {dict(kinds)}"
    if pods != replicas:
        return f"{pods} live pods, want {replicas}"
    return None


def still_missing(
    cluster: Cluster, namespace: str, names: list[str], replicas: int = 1
) -> dict[str, str | None]:
    """What each model still lacks (None: converged), from one list of each kind."""
    models = {
        m["metadata"]["name"]: m
        for m in cluster.kubectl_json("get", "sm", "-n", namespace)["items"]
    }
    items = cluster.kubectl_json("get", CHILD_LIST, "-n", namespace)["items"]
    return {
        n: missing(models[n], items, replicas) if n in models else "no such SmallModel"
        for n in names
    }


def converged(cluster: Cluster, namespace: str, name: str, replicas: int = 1) -> str | None:
    """None when the model has converged, else what is still missing."""
    return still_missing(cluster, namespace, [name], replicas)[name]


def wait_all_converged(
    cluster: Cluster,
    namespace: str,
    names: list[str],
    since: float,
    timeout: float = TIMEOUT,
    replicas: int = 1,
    during: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Seconds from `since` (monotonic) until each model converged; fail with what is missing."""
    took: dict[str, float] = {}
    last: dict[str, str | None] = {}

    def done() -> bool:
        if during is not None:
            during()
        last.update(
            still_missing(cluster, namespace, [n for n in names if n not in took], replicas)
        )
        now = time.monotonic()
        for name, lacks in last.items():
            if lacks is None and name not in took:
                took[name] = now - since
        return len(took) == len(names)

    try:
        cluster.wait_for(done, timeout, f"SmallModels {names} never converged", 0.25)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {last}") from exc
    # Converged must hold: a duplicate made late would show now.
    time.sleep(0.5)
    assert still_missing(cluster, namespace, names, replicas) == dict.fromkeys(names)
    return took


def wait_converged(
    cluster: Cluster,
    namespace: str,
    name: str,
    since: float,
    timeout: float = TIMEOUT,
    replicas: int = 1,
    during: Callable[[], None] | None = None,
) -> float:
    """Seconds from `since` (monotonic) until the model converged; fail with what is missing."""
    return wait_all_converged(cluster, namespace, [name], since, timeout, replicas, during)[name]


def not_stalled(cluster: Cluster, namespace: str, name: str) -> Callable[[], None]:
    def check() -> None:
        stalled = condition(get_sm(cluster, namespace, name), "Stalled")
        assert stalled.get("status") != "True", f"{name} Stalled by a passing fault: {stalled}"

    return check


def write_to(method: str, path: str, *, suffix: str) -> bool:
    """A trap's match: the operator's PATCH of the object whose path ends so."""
    return method == "PATCH" and path.endswith(suffix)


def write_into(method: str, path: str, *, prefix: str) -> bool:
    """A conflict's match: the operator's PATCH of a path that holds `prefix`."""
    return method == "PATCH" and prefix in path


def path_of(namespace: str, plural: str, name: str, group: str = "") -> str:
    base = f"/apis/{group}" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


# --------------------------------------------------------------------------- operators


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted without waiting (unlike conftest's).

    The tests on the shared cluster run only the CPU classifier (half a CPU
    of the CPU node's 32), never a GPU model, so the next test has no reason
    to wait for these pods to go.
    """
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{base}-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        30,
        f"namespace {name} never got its default ServiceAccount",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[ApiProxy]:
    p = ApiProxy(cluster)
    try:
        yield p
    finally:
        p.close()


def through(
    proxy: ApiProxy, cluster: Cluster, chart: ChartRelease, workdir: Path
) -> dict[str, str]:
    """The operator's environment that sends its API requests through the proxy."""
    workdir.mkdir(parents=True, exist_ok=True)
    token = cluster.token_kubeconfig(
        chart.service_account, chart.namespace, workdir / "token.kubeconfig"
    )
    return {"KUBECONFIG": str(proxy.kubeconfig(token, workdir / "proxy.kubeconfig"))}


# --------------------------------------------------------------------------- SIGKILL

# (the step, the write's path under the namespace, whether the kill comes before it)
STEPS: Final = (
    ("after the ConfigMap apply", "configmaps/{name}-config", False),
    ("after the Service apply", "services/{name}", False),
    ("after the Deployment apply", "deployments/{name}-eu-west-1", False),
    ("after the PodDisruptionBudget apply", "poddisruptionbudgets/{name}", False),
    ("before the status write", "smallmodels/{name}/status", True),
    ("after the status write", "smallmodels/{name}/status", False),
)
# One operator life per round: each model of a round is held at its own step, then one
# SIGKILL ends them all. A status write may come from the operator's one periodic thread
# (a status that only says "in progress" is sent a moment later), so two held status
# writes could wait on each other: they go in different rounds.
ROUNDS: Final = ((0, 1, 2, 3, 4), (5,))


def test_operator_sigkilled_at_each_step_of_a_reconcile_converges(
    cluster: Cluster,
    namespace: str,
    chart_installed: ChartRelease,
    proxy: ApiProxy,
    operator_process: OperatorFactory,
    tmp_path: Path,
) -> None:
    env = through(proxy, cluster, chart_installed, tmp_path)
    operator = operator_process(namespace, env=env)
    for steps in ROUNDS:
        traps = {}
        for i in steps:
            _, write, before = STEPS[i]
            suffix = f"/namespaces/{namespace}/" + write.format(name=f"step-{i}")
            traps[i] = proxy.arm(
                Trap(
                    match=functools.partial(write_to, suffix=suffix),
                    n=1,
                    before=before,
                    hold=True,
                )
            )
        models = [classifier(f"step-{i}") for i in steps]
        for doc in models:  # the autoscaler would only add reconciles to the round
            doc["spec"]["scaling"] = {"mode": "none", "minReplicas": 1, "maxReplicas": 1}
        apply(cluster, namespace, *models)
        for i, trap in traps.items():
            assert trap.sprung.wait(60), f"step-{i} never reached the step {STEPS[i][0]!r}"
        os.kill(operator.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert operator.proc.wait(10) == -signal.SIGKILL
        # Nobody runs the operator now: whatever status there is must not claim more.
        for i in steps:
            obj = get_sm(cluster, namespace, f"step-{i}")
            if condition(obj, "Ready").get("status") == "True":
                _, pods = census(cluster, namespace, obj["metadata"]["uid"])
                assert pods, f"step-{i} Ready with no pod after a kill {STEPS[i][0]}"
        operator = operator_process(namespace, env=env)
        healthy = time.monotonic() - killed
        took = wait_all_converged(cluster, namespace, [f"step-{i}" for i in steps], killed)
        for i in steps:
            after = took[f"step-{i}"] - healthy
            record(
                f"operator SIGKILLed {STEPS[i][0]} ({after:.1f} s after the restarted "
                "operator was healthy)",
                took[f"step-{i}"],
            )
    for i in range(len(STEPS)):  # the first round's models were not disturbed by the second
        assert converged(cluster, namespace, f"step-{i}") is None, f"step-{i}"


# --------------------------------------------------------------------------- 410 and 409


def test_watch_expiry_410_relists_and_converges(
    cluster: Cluster,
    namespace: str,
    chart_installed: ChartRelease,
    proxy: ApiProxy,
    operator_process: OperatorFactory,
    tmp_path: Path,
) -> None:
    operator_process(namespace, env=through(proxy, cluster, chart_installed, tmp_path))
    apply(cluster, namespace, classifier("before"))
    wait_converged(cluster, namespace, "before", time.monotonic())
    models = f"{GROUP_PATH}/namespaces/{namespace}/smallmodels"
    watched = sorted(set(proxy.watches))
    assert models in watched, watched
    for path in watched:
        proxy.expire_watches(path, answers=1)
    start = time.monotonic()
    # Changes made while the watches are broken: kopf only sees them by listing again.
    apply(cluster, namespace, classifier("during"))
    changed = classifier("before")
    changed["spec"]["card"]["description"] = "changed while the watch had expired"
    apply(cluster, namespace, changed)
    cluster.wait_for(
        lambda: set(proxy.expired_sent) >= set(watched),
        60,
        lambda: f"the operator never watched again after the cut: sent {proxy.expired_sent}",
    )
    seconds = max(wait_all_converged(cluster, namespace, ["during", "before"], start).values())
    assert proxy.watches.count(models) >= 3, "no watch after the 410"
    record("watch expired (410 Gone) on every watch", seconds)


def test_competing_writer_409s_on_children_and_status_converge(
    cluster: Cluster,
    namespace: str,
    chart_installed: ChartRelease,
    proxy: ApiProxy,
    operator_process: OperatorFactory,
    tmp_path: Path,
) -> None:
    name = "contested"
    operator = operator_process(namespace, env=through(proxy, cluster, chart_installed, tmp_path))
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=config
    )
    api = kubernetes.client.ApiClient(configuration=config)
    custom = kubernetes.client.CustomObjectsApi(api)
    apps = kubernetes.client.AppsV1Api(api)
    ticks = [0]

    def bump() -> None:
        ticks[0] += 1
        note = {"metadata": {"annotations": {"example.com/competing-writer": str(ticks[0])}}}
        with_ignore(
            lambda: custom.patch_namespaced_custom_object(
                "serving.smallfleet.io", "v1alpha1", namespace, "smallmodels", name, note
            )
        )
        with_ignore(lambda: apps.patch_namespaced_deployment(f"{name}-eu-west-1", namespace, note))

    stop = threading.Event()

    def compete() -> None:
        while not stop.wait(0.05):
            bump()

    # Each child's first apply is answered 409; the first status write is held while the
    # writer changes the model, so the API server refuses it for real.
    for child in ("configmaps", "services", "deployments", "poddisruptionbudgets"):
        prefix = f"/namespaces/{namespace}/{child}/{name}"
        proxy.conflict_on(functools.partial(write_into, prefix=prefix), 1)
    status = path_of(namespace, "smallmodels", name, "serving.smallfleet.io/v1alpha1") + "/status"
    trap = proxy.arm(
        Trap(lambda m, p: m == "PATCH" and p == status, 1, before=True, spring=bump, cut=False)
    )
    writer = threading.Thread(target=compete, daemon=True)
    start = time.monotonic()
    apply(cluster, namespace, classifier(name))
    writer.start()
    try:
        seconds = wait_converged(
            cluster, namespace, name, start, during=not_stalled(cluster, namespace, name)
        )
    finally:
        stop.set()
        writer.join(10)
        api.close()  # type: ignore[no-untyped-call]
    assert trap.sprung.is_set()
    assert len(proxy.conflicts_sent) == 4, proxy.conflicts_sent
    refused = [w for w, code in proxy.answers if code == 409 and w.path == status]
    assert refused, "no status write was refused: the competing writer never collided"
    metrics = operator.metrics()
    seen_409 = [line for line in metrics.splitlines() if 'outcome="409"' in line]
    assert any(
        'verb="patch SmallModel/status"' in line and not line.endswith(" 0.0") for line in seen_409
    ), seen_409
    record(
        f"competing writer ({ticks[0]} changes; {len(refused)} status 409s, 4 child 409s)",
        seconds,
    )


def with_ignore(call: Callable[[], object]) -> None:
    """A competing writer's own write may fail (404 before the child exists): not our test."""
    with contextlib.suppress(kubernetes.client.exceptions.ApiException):
        call()


# --------------------------------------------------------------------------- carbon provider

EM_TOKEN: Final = "e2e-faults-token"
ZONES: Final = {"SE-SE3": 40.0, "IE": 300.0, "US-MIDA-PJM": 400.0}
CARBON_MAX_AGE_S: Final = 6
HUGE: Final = 256 * 1024 * 1024


def em_answer(zone: str, value: Any) -> bytes:
    hour = time.strftime("%Y-%m-%dT%H:00:00.000Z", time.gmtime())
    return json.dumps(
        {"zone": zone, "carbonIntensity": value, "datetime": hour, "updatedAt": hour}
    ).encode()


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_carbon_provider_down_slow_or_garbage_is_stale_then_recovers(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    api = Endpoint()
    huge = b'{"zone": "IE", "carbonIntensity": ' + b" " * HUGE + b"300}"
    bad: list[tuple[str, Answer]] = [
        ("a 256 MiB body", Answer(huge)),
        ("wrong types", Answer(b'{"zone": ["IE"], "carbonIntensity": "lots", "datetime": 7}')),
        ("NaN", Answer(em_answer("IE", "NaN").replace(b'"NaN"', b"NaN"))),
        ("not JSON", Answer(b"<html>502 Bad Gateway</html>", content_type="text/html")),
        ("slow (10 s)", Answer(em_answer("IE", 300.0), delay=10.0)),
        ("HTTP 500", Answer(b'{"message": "Internal server error"}', status=500)),
    ]
    mode: list[int | None] = [None]
    served: Counter[str] = Counter()

    def answer(path: str) -> Answer:
        zone = re.search(r"zone=([A-Z-0-9]+)", path)
        if mode[0] is None:
            if zone is None or zone.group(1) not in ZONES:
                return Answer(b'{"message": "no such zone"}', 404)
            return Answer(em_answer(zone.group(1), ZONES[zone.group(1)]))
        what, reply = bad[mode[0] % len(bad)]
        served[what] += 1
        mode[0] += 1
        return reply

    api.answer = answer
    try:
        operator = operator_process(
            namespace,
            env={
                "SMALLFLEET_CARBON_PROVIDER": "electricitymaps",
                "SMALLFLEET_CARBON_PROVIDER_URL": api.url,
                "SMALLFLEET_ELECTRICITYMAPS_TOKEN": EM_TOKEN,
                "SMALLFLEET_CARBON_REFRESH_SECONDS": "1",
                "SMALLFLEET_CARBON_MAX_AGE_SECONDS": str(CARBON_MAX_AGE_S),
            },
        )
        name = "green"
        apply(cluster, namespace, classifier(name))
        wait_converged(cluster, namespace, name, time.monotonic())

        def carbon(stale: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                obj = get_sm(cluster, namespace, name)
                return obj if condition(obj, "CarbonSignalStale").get("status") == stale else None

            return check

        obj = cluster.wait_for(carbon("False"), 60, "the healthy signal never reached status")
        assert obj["status"]["carbon"]["provider"] == "electricitymaps", obj["status"]["carbon"]
        region = obj["status"]["region"]
        hwm = vm_hwm_mib(operator.pid)
        mode[0] = 0
        went = time.monotonic()
        obj = cluster.wait_for(carbon("True"), 90, "a failing provider was never called stale")
        stale_after = time.monotonic() - went
        cluster.wait_for(
            lambda: set(served) == {w for w, _ in bad},
            120,
            lambda: f"the operator never asked through every bad answer: {dict(served)}",
        )
        # Honest: stale, still serving where it was, never Stalled, the operator alive.
        obj = get_sm(cluster, namespace, name)
        assert condition(obj, "CarbonSignalStale")["status"] == "True", obj["status"]
        assert condition(obj, "Ready")["status"] == "True", obj["status"]
        assert obj["status"]["region"] == region
        assert operator.running()
        grown = vm_hwm_mib(operator.pid) - hwm
        assert grown < 64, f"the operator's peak memory grew by {grown:.0f} MiB on a huge body"
        mode[0] = None
        healed = time.monotonic()
        cluster.wait_for(carbon("False"), 60, "the healed provider's signal never reached status")
        record(
            f"carbon provider: {', '.join(w for w, _ in bad)} (stale after {stale_after:.1f} s)",
            time.monotonic() - healed,
        )
        assert converged(cluster, namespace, name) is None
    finally:
        api.close()


# --------------------------------------------------------------------------- Triton metrics


def triton_metrics(model: str, count: float) -> bytes:
    lines = []
    for metric, value in (
        ("nv_inference_request_success", count),
        ("nv_inference_request_failure", 0),
        ("nv_inference_count", count),
        ("nv_inference_exec_count", count),
        ("nv_inference_request_duration_us", count * 1000),
        ("nv_inference_queue_duration_us", count * 10),
        ("nv_inference_compute_input_duration_us", count * 10),
        ("nv_inference_compute_infer_duration_us", count * 900),
        ("nv_inference_compute_output_duration_us", count * 10),
        ("nv_inference_pending_request_count", 0),
    ):
        lines.append(f"# TYPE {metric} counter")
        lines.append(f'{metric}{{model="{model}",version="1"}} {value}')
    return ("\n".join(lines) + "\n").encode()


def test_triton_metrics_down_slow_or_garbage_is_reported_then_recovers(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    name = "scraped"
    operator = operator_process(namespace, env={"SMALLFLEET_SCRAPE_INTERVAL_SECONDS": "1"})
    doc = classifier(name)
    doc["spec"]["scaling"] = {
        "mode": "operator",
        "minReplicas": 1,
        "maxReplicas": 3,
        "metric": "queueTime",
        "target": 20,
    }
    apply(cluster, namespace, doc)
    wait_converged(cluster, namespace, name, time.monotonic())
    (pod,) = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"serving.smallfleet.io/owner-name={name}"
    )["items"]
    endpoint = Endpoint()
    forward = Forwarder(
        (pod["status"]["podIP"], 8002), ("127.0.0.1", endpoint.httpd.server_address[1])
    )
    count = [0.0]
    bad: list[tuple[str, Answer]] = [
        (
            "a 64 MiB body",
            Answer(b"# " + b"x" * (64 * 1024 * 1024) + b"\n", content_type="text/plain"),
        ),
        (
            "wrong types",
            Answer(f'nv_inference_count{{model="{name}",version="1"}} lots\n'.encode()),
        ),
        ("NaN", Answer(triton_metrics(name, math.nan), content_type="text/plain")),
        ("slow (5 s)", Answer(triton_metrics(name, 0), delay=5.0, content_type="text/plain")),
        ("HTTP 500", Answer(b"oops", status=500, content_type="text/plain")),
    ]
    mode: list[int | None] = [None]
    served: Counter[str] = Counter()

    def answer(path: str) -> Answer:
        if mode[0] is None:
            count[0] += 1
            return Answer(triton_metrics(name, count[0]), content_type="text/plain")
        what, reply = bad[mode[0] % len(bad)]
        served[what] += 1
        mode[0] += 1
        return reply

    endpoint.answer = answer

    def scaling(status: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            obj = get_sm(cluster, namespace, name)
            return obj if condition(obj, "ScalingActive").get("status") == status else None

        return check

    try:
        cluster.wait_for(scaling("True"), 60, "healthy metrics never made ScalingActive True")
        mode[0] = 0
        went = time.monotonic()
        obj = cluster.wait_for(scaling("False"), 60, "bad metrics never made ScalingActive False")
        missing_after = time.monotonic() - went
        cluster.wait_for(
            lambda: set(served) == {w for w, _ in bad},
            60,
            lambda: f"the operator never scraped every bad answer: {dict(served)}",
        )
        obj = get_sm(cluster, namespace, name)
        assert condition(obj, "ScalingActive")["reason"] == "MetricsMissing", obj["status"]
        assert condition(obj, "Ready")["status"] == "True", obj["status"]
        assert obj["status"]["replicas"] == 1  # never down (nor up) on missing metrics
        assert operator.running()
        mode[0] = None
        healed = time.monotonic()
        cluster.wait_for(scaling("True"), 60, "healed metrics never made ScalingActive True")
        record(
            f"Triton metrics: {', '.join(w for w, _ in bad)} (reported after {missing_after:.1f} s)",
            time.monotonic() - healed,
        )
        assert converged(cluster, namespace, name) is None
    finally:
        forward.close()
        endpoint.close()


# --------------------------------------------------------------------------- a cluster of their own


@pytest.fixture(scope="module")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, ChartRelease]]:
    """A cluster whose API server, etcd and nodes the tests may break (deleted afterwards)."""
    name = f"{cluster_name('smallfleet-e2e')}-faults"
    workdir = tmp_path_factory.mktemp("faults-cluster")
    docs = [d for d in yaml.safe_load_all(KWOKCTL_CONFIG.read_text()) if d]
    patches = docs[0].setdefault("componentsPatches", [])
    for component in ("kube-controller-manager", "kube-scheduler"):
        patches.append(
            {"name": component, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
        )
    config = workdir / "kwokctl.yaml"
    config.write_text(yaml.safe_dump_all(docs))
    cluster = up(name, workdir / "kubeconfig", config=config)
    try:
        install_crds(cluster)
        yield cluster, install_chart(cluster)
    finally:
        if os.environ.get("SMALLFLEET_KEEP_CLUSTER") != "1":
            down(name)


@pytest.fixture
def isolated(
    control_plane: tuple[Cluster, ChartRelease], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, ChartRelease, str, ApiProxy, Callable[..., OperatorProcess]]]:
    """A namespace on the fault cluster, a proxy, and a starter for operators through it."""
    cluster, chart = control_plane
    namespace = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        30,
        "no default ServiceAccount",
    )
    proxy = ApiProxy(cluster)
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        workdir = tmp_path / f"operator-{len(started)}"
        full = through(proxy, cluster, chart, workdir) | env
        operator = start_operator(cluster, chart, workdir, namespace=namespace, env=full)
        started.append(operator)
        return operator

    try:
        yield cluster, chart, namespace, proxy, start
    finally:
        failed = getattr(request.node, "rep_call", None)
        for operator in started:
            code = operator.stop()
            if failed is not None and failed.failed:
                print(f"\n===== operator log (exit {code}) =====\n{operator.log()}")
        proxy.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_apiserver_restarted_mid_reconcile_converges(
    isolated: tuple[Cluster, ChartRelease, str, ApiProxy, Callable[..., OperatorProcess]],
) -> None:
    cluster, _, namespace, proxy, start = isolated
    operator = start()
    apiserver = Component(cluster.name, "kube-apiserver")
    restarted = threading.Event()

    def restart() -> None:
        apiserver.restart(grace=5.0)
        restarted.set()

    name = "restarted"
    deployment = path_of(namespace, "deployments", f"{name}-eu-west-1", "apps/v1")
    trap = proxy.arm(
        Trap(
            lambda m, p: m == "PATCH" and p == deployment,
            1,
            before=False,
            spring=lambda: threading.Thread(target=restart, daemon=True).start(),
        )
    )
    apply(cluster, namespace, classifier(name))
    assert trap.sprung.wait(60), "the operator never applied the Deployment"
    start_at = time.monotonic()
    assert restarted.wait(60), "the API server did not restart"
    cluster.wait_for(cluster.healthy, 60, "the restarted API server never became ready")
    answered = time.monotonic()
    seconds = wait_converged(cluster, namespace, name, start_at)
    after_ready = seconds - (answered - start_at)
    assert operator.running(), operator.log()[-3000:]
    # And the operator still follows changes after the restart.
    apply(cluster, namespace, classifier("after"))
    wait_converged(cluster, namespace, "after", time.monotonic())
    record(
        "kube-apiserver restarted mid-reconcile (after the Deployment apply; "
        f"{after_ready:.1f} s after it answered again)",
        seconds,
    )


def test_etcd_paused_mid_reconcile_converges(
    isolated: tuple[Cluster, ChartRelease, str, ApiProxy, Callable[..., OperatorProcess]],
) -> None:
    cluster, _, namespace, proxy, start = isolated
    operator = start()
    etcd = Component(cluster.name, "etcd")
    resumed = threading.Event()

    def pause() -> None:
        with etcd.paused():
            time.sleep(ETCD_PAUSE_S)
        resumed.set()

    name = "paused"
    service = path_of(namespace, "services", name)
    trap = proxy.arm(
        Trap(
            lambda m, p: m == "PATCH" and p == service,
            1,
            before=False,
            spring=lambda: threading.Thread(target=pause, daemon=True).start(),
        )
    )
    apply(cluster, namespace, classifier(name))
    assert trap.sprung.wait(60), "the operator never applied the Service"
    assert not resumed.wait(ETCD_PAUSE_S / 2)
    assert operator.running(), "the operator died while etcd was paused"
    assert resumed.wait(ETCD_PAUSE_S), "etcd was not resumed"
    start_at = time.monotonic()
    seconds = wait_converged(cluster, namespace, name, start_at, timeout=120)
    assert operator.running(), operator.log()[-3000:]
    record(
        f"etcd paused {ETCD_PAUSE_S:.0f} s mid-reconcile (after the Service apply; from resume)",
        seconds,
    )


def test_node_deleted_under_a_running_model_is_honest_then_converges(
    isolated: tuple[Cluster, ChartRelease, str, ApiProxy, Callable[..., OperatorProcess]],
) -> None:
    cluster, _, namespace, _, start = isolated
    start()
    node = "gpu-us-east-1a-h100"  # the only node of its product
    name = "orphaned"
    apply(cluster, namespace, embedder(name, "NVIDIA-H100-80GB-HBM3", "us-east-1"))
    wait_converged(cluster, namespace, name, time.monotonic())
    manifest = next(
        d
        for d in yaml.safe_load_all(NODES_MANIFEST.read_text())
        if d and d.get("kind") == "Node" and d["metadata"]["name"] == node
    )
    cluster.kubectl("delete", "node", node, "--wait=true")
    deleted = time.monotonic()
    try:
        # No node runs the model: it must not say Ready; with no other H100 it is Stalled.
        def condition_is(type_: str, key: str, value: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                obj = get_sm(cluster, namespace, name)
                return obj if condition(obj, type_).get(key) == value else None

            return check

        cluster.wait_for(
            condition_is("Ready", "status", "False"), 120, "the model stayed Ready, its node gone"
        )
        honest_after = time.monotonic() - deleted
        obj = cluster.wait_for(
            condition_is("Stalled", "reason", "Unschedulable"),
            120,
            "the model never said why no pod runs",
        )
        stalled_after = time.monotonic() - deleted
        message = condition(obj, "Stalled")["message"]
        assert "nodes are available" in message, message
    finally:
        cluster.apply_yaml(yaml.safe_dump(copy.deepcopy(manifest)), server_side=False)
    back = time.monotonic()
    seconds = wait_converged(cluster, namespace, name, back)
    record(
        f"node deleted under a running model (not Ready after {honest_after:.1f} s, Stalled "
        f"Unschedulable after {stalled_after:.1f} s; then from the node's return)",
        seconds,
    )
