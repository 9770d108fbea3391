"""Carbon-aware placement in the running operator, against a real control plane.

The operator fetches intensities from a local server on 127.0.0.1 that
speaks Electricity Maps v3's wire format (`tests/carbon_api.py`), so the real
provider client, its retries and the fallback chain run end to end. KWOK
simulates GPU nodes in eu-north-1 (zone SE-SE3), eu-west-1 (IE) and us-east-1
(US-MIDA-PJM); the real kube-scheduler decides where the Triton pods land.
Refresh, dwell and hysteresis are shortened so a move takes seconds.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from tests.carbon_api import Reply, Seen, Server, em_latest
from tests.e2e.cluster import Cluster, OperatorFactory, OperatorProcess, condition, wait_ready

ROOT: Final = Path(__file__).resolve().parents[2]
TOKEN: Final = "e2e-electricitymaps-token"
LATEST: Final = "/v3/carbon-intensity/latest"
ZONES: Final = {"eu-north-1": "SE-SE3", "eu-west-1": "IE", "us-east-1": "US-MIDA-PJM"}
A10G: Final = "NVIDIA-A10G"
H100: Final = "NVIDIA-H100-80GB-HBM3"
TIMEOUT: Final = 120.0
MAX_AGE_S: Final = 8
DWELL_S: Final = 5


@dataclass
class GridApi:
    """Electricity Maps' latest-intensity endpoint with intensities the test sets per region."""

    intensity: dict[str, float] = field(default_factory=dict)  # region -> gCO2eq/kWh
    other_zones: dict[str, float] = field(default_factory=dict)  # zone -> gCO2eq/kWh
    down: bool = False
    server: Server = field(default_factory=Server)

    def __post_init__(self) -> None:
        self.server.on(LATEST, self._latest)

    def set(self, **by_region: float) -> None:
        for region, value in by_region.items():
            self.intensity[region.replace("_", "-")] = value

    def _latest(self, seen: Seen) -> Reply:
        if self.down:
            return Reply(500, {"message": "Internal server error"})
        if seen.headers.get("auth-token") != TOKEN:
            return Reply(401, {"message": "Invalid auth-token"})
        zone = seen.query.get("zone", [""])[0]
        region = next((r for r, z in ZONES.items() if z == zone), None)
        if zone in self.other_zones:
            body = em_latest(zone, self.other_zones[zone])
        elif region is None:
            return Reply(404, {"message": f"zone {zone} not found"})
        else:
            body = em_latest(zone, self.intensity.get(region))
        hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        body["datetime"] = hour.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return Reply(200, body)


@pytest.fixture
def grid() -> Iterator[GridApi]:
    api = GridApi()
    api.set(eu_north_1=40, eu_west_1=300, us_east_1=400)
    try:
        yield api
    finally:
        api.server.close()


def operator_env(grid: GridApi, dwell_s: int = DWELL_S) -> dict[str, str]:
    return {
        "SMALLFLEET_CARBON_PROVIDER": "electricitymaps",
        "SMALLFLEET_CARBON_PROVIDER_URL": grid.server.url,
        "SMALLFLEET_ELECTRICITYMAPS_TOKEN": TOKEN,
        "SMALLFLEET_CARBON_REFRESH_SECONDS": "2",
        "SMALLFLEET_CARBON_MAX_AGE_SECONDS": str(MAX_AGE_S),
        "SMALLFLEET_MIN_DWELL_SECONDS": str(dwell_s),
        "SMALLFLEET_MIN_IMPROVEMENT_PERCENT": "10",
        # A fleet of a model or two is its own median: the default hurdle (90% of the median
        # model's emissions) would hold nearly every move, and these tests are about how a
        # move happens. The hurdle itself is tested in test_placement_joint and the bench.
        "SMALLFLEET_MIN_MOVE_GAIN_PERCENT_OF_MEDIAN": "0",
    }


@pytest.fixture
def operator(operator_process: OperatorFactory, namespace: str, grid: GridApi) -> OperatorProcess:
    return operator_process(namespace, env=operator_env(grid))


# --------------------------------------------------------------------------- helpers


def model(name: str, *, product: str = A10G, **placement: Any) -> dict[str, Any]:
    (doc,) = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "minilm-embedder.yaml").read_text()) if d
    ]
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name}
    doc["spec"]["resources"]["gpuProduct"] = product
    doc["spec"]["scaling"] = {"mode": "none", "minReplicas": 1, "maxReplicas": 1}
    doc["spec"]["placement"] = {"policy": "carbon-aware", **placement}
    return doc


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.apply_yaml(yaml.safe_dump_all(list(docs)), namespace=namespace)


def get_sm(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl_json("get", "sm", name, "-n", namespace)
    return obj


def wait_status(
    cluster: Cluster, name: str, namespace: str, what: str, check: Any, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Poll the SmallModel until `check(obj)` holds; fail showing its status if it never does."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = get_sm(cluster, name, namespace)
        return last if check(last) else None

    try:
        return cluster.wait_for(reached, timeout, f"SmallModel {name}: {what}", 0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{yaml.safe_dump(last.get('status', {}))}") from exc


def placed_regions(obj: dict[str, Any]) -> list[str]:
    return [r["region"] for r in obj.get("status", {}).get("placement", {}).get("regions") or []]


def deployments(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = (
        f"serving.smallfleet.io/owner-kind=SmallModel,serving.smallfleet.io/owner-name={name}"
    )
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "deployments", "-n", namespace, "-l", selector
    )["items"]
    return items


def pod_regions(cluster: Cluster, namespace: str, name: str) -> list[str]:
    selector = (
        f"serving.smallfleet.io/owner-kind=SmallModel,serving.smallfleet.io/owner-name={name}"
    )
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    out = []
    for pod in pods:
        node = pod["spec"].get("nodeName")
        if node:
            out.append(nodes[node]["metadata"]["labels"]["topology.kubernetes.io/region"])
    return sorted(out)


def events(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [e for e in items if e.get("reason") == reason]


def excluded(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = obj.get("status", {}).get("placement", {}).get("excluded") or []
    return {e["region"]: e for e in items}


# --------------------------------------------------------------------------- tests


def test_placed_in_the_cleanest_allowed_region(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=20, eu_west_1=200, us_east_1=120)
    apply(cluster, namespace, model("clean", regions=["eu-west-1", "us-east-1"]))
    wait_ready(cluster, "sm", "clean", namespace, timeout=TIMEOUT)
    obj = wait_status(
        cluster, "clean", namespace, "status.carbon never set",
        lambda o: "gramsCO2ePerHour" in o.get("status", {}).get("carbon", {}),
    )  # fmt: skip
    status = obj["status"]
    assert placed_regions(obj) == ["us-east-1"], status
    assert status["placement"]["regions"][0]["intensity"] == 120.0
    assert status["placement"]["lastMoveTime"]
    assert pod_regions(cluster, namespace, "clean") == ["us-east-1"]
    assert excluded(obj)["eu-north-1"]["reason"] == "NotAllowed"
    carbon = status["carbon"]
    assert carbon["provider"] == "electricitymaps" and carbon["signalKind"] == "average"
    assert carbon["intensity"] == 120.0 and carbon["stale"] is False
    assert carbon["energyWatts"] > 0 and carbon["gramsCO2ePerHour"] > 0
    placed = condition(obj, "Placed")
    assert (placed["status"], placed["reason"]) == ("True", "Placed"), placed
    assert condition(obj, "CarbonSignalStale")["status"] == "False"

    out = cluster.kubectl("get", "sm", "clean", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    cell = row.split()[header.split().index("GCO2E/H")]
    assert float(cell) == pytest.approx(carbon["gramsCO2ePerHour"], rel=0.01), out

    metrics = operator.metrics()
    assert re.search(
        r'smallfleet_carbon_intensity_grams_per_kwh\{kind="average",provider="electricitymaps",'
        r'region="us-east-1",zone="US-MIDA-PJM"\} 120\.0',
        metrics,
    ), metrics
    assert re.search(
        rf'smallfleet_model_emissions_grams_per_hour\{{kind="SmallModel",name="clean",'
        rf'namespace="{namespace}"\}} [0-9.]+',
        metrics,
    )
    assert re.search(r"smallfleet_fleet_emissions_grams_per_hour [1-9]", metrics)
    # The joint plan's capacity advice, per region and GPU product the nodes carry, published
    # by the next carbon refresh (every 2 s here) after the model is known.
    advice = re.compile(
        r'smallfleet_capacity_advice_grams_per_week\{gpu_product="[^"]+",region="us-east-1"\} '
        r"[0-9.]+"
    )
    cluster.wait_for(
        lambda: advice.search(operator.metrics()) is not None,
        30,
        "no capacity advice gauge for us-east-1",
    )


def test_a_configmap_maps_a_region_to_another_grid_zone(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory, grid: GridApi
) -> None:
    """The region -> zone map is overridable: eu-north-1 read as the German grid loses."""
    grid.set(eu_north_1=20, eu_west_1=100, us_east_1=400)
    grid.other_zones["DE"] = 700
    zones = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "grid-zones"},
        "data": {"eu-north-1": "DE"},
    }
    apply(cluster, namespace, zones)
    env = operator_env(grid)
    env["SMALLFLEET_REGION_ZONE_CONFIGMAP"] = f"{namespace}/grid-zones"
    operator = operator_process(namespace, env=env)
    apply(cluster, namespace, model("zoned"))
    wait_ready(cluster, "sm", "zoned", namespace, timeout=TIMEOUT)
    obj = get_sm(cluster, "zoned", namespace)
    assert placed_regions(obj) == ["eu-west-1"], obj["status"]
    assert obj["status"]["carbon"]["intensity"] == 100.0, obj["status"]["carbon"]
    assert re.search(
        r'smallfleet_carbon_intensity_grams_per_kwh\{kind="average",provider="electricitymaps",'
        r'region="eu-north-1",zone="DE"\} 700\.0',
        operator.metrics(),
    )


def test_cleaner_region_moves_the_model_make_before_break(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=50, eu_west_1=300, us_east_1=400)
    apply(cluster, namespace, model("mover"))
    wait_ready(cluster, "sm", "mover", namespace, timeout=TIMEOUT)
    assert pod_regions(cluster, namespace, "mover") == ["eu-north-1"]

    samples: list[dict[str, int]] = []  # Deployment name -> ready replicas, oldest first
    stop = threading.Event()
    errors: list[BaseException] = []

    def sample() -> None:
        samples.append(
            {
                d["metadata"]["name"]: int(d.get("status", {}).get("readyReplicas") or 0)
                for d in deployments(cluster, namespace, "mover")
            }
        )

    def watch() -> None:
        while not stop.is_set():
            try:
                sample()
            except BaseException as exc:  # reported after the move
                errors.append(exc)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        changed = time.monotonic()
        grid.set(eu_north_1=500, eu_west_1=60)
        wait_status(
            cluster, "mover", namespace, "never moved to eu-west-1",
            lambda o: placed_regions(o) == ["eu-west-1"]
            and condition(o, "Ready").get("status") == "True"
            and [d["metadata"]["name"] for d in deployments(cluster, namespace, "mover")]
            == ["mover-eu-west-1"],
            timeout=TIMEOUT + DWELL_S,
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join(timeout=10)
    # The watcher may stop before it sees the old Deployment gone; the final state closes the record.
    sample()
    print(
        f"move finished {time.monotonic() - changed:.1f}s after the intensities changed "
        f"(refresh 2s, dwell {DWELL_S}s), {len(samples)} samples of readyReplicas"
    )
    assert not errors, errors
    old, new = "mover-eu-north-1", "mover-eu-west-1"
    assert any(new in s for s in samples) and any(old in s for s in samples), samples
    for s in samples:
        assert sum(s.values()) >= 1, f"no ready replica during the move: {samples}"
        if old not in s:
            assert s.get(new, 0) >= 1, f"{old} went before {new} was Ready: {samples}"
    first_without_old = next(i for i, s in enumerate(samples) if old not in s)
    assert any(s.get(new, 0) >= 1 and old in s for s in samples[:first_without_old]), samples

    assert pod_regions(cluster, namespace, "mover") == ["eu-west-1"]
    (moved,) = events(cluster, namespace, "mover", "Moved")
    assert "from eu-north-1 (500 g/kWh) to eu-west-1 (60 g/kWh)" in moved["message"], moved
    obj = get_sm(cluster, "mover", namespace)
    assert obj["status"]["carbon"]["intensity"] == 60.0
    move_time = dt.datetime.fromisoformat(
        obj["status"]["placement"]["lastMoveTime"].replace("Z", "+00:00")
    )
    assert dt.datetime.now(dt.UTC) - move_time < dt.timedelta(seconds=TIMEOUT + DWELL_S)


def test_eu_residency_never_lands_in_the_us_even_when_it_is_cleanest(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=300, eu_west_1=200, us_east_1=10)
    apply(cluster, namespace, model("resident", residency="eu"))
    wait_ready(cluster, "sm", "resident", namespace, timeout=TIMEOUT)
    obj = get_sm(cluster, "resident", namespace)
    assert placed_regions(obj) == ["eu-west-1"], obj["status"]
    assert pod_regions(cluster, namespace, "resident") == ["eu-west-1"]
    us = excluded(obj)["us-east-1"]
    assert us["reason"] == "Residency" and "residency eu required" in us["message"], us
    # Cleaner still, many refreshes later: never the US.
    grid.set(us_east_1=1)
    time.sleep(3 * 2 + DWELL_S)
    obj = get_sm(cluster, "resident", namespace)
    assert placed_regions(obj) == ["eu-west-1"]
    assert "us-east-1" not in pod_regions(cluster, namespace, "resident")
    assert all(
        not d["metadata"]["name"].endswith("us-east-1")
        for d in deployments(cluster, namespace, "resident")
    )


@contextlib.contextmanager
def _gpus_taken(
    cluster: Cluster, namespace: str, node: str, *, priority: str | None = None, gpus: int = 4
) -> Iterator[None]:
    """Pause pods take `gpus` GPUs of `node` (preempting lower-priority pods if `priority`)."""
    filler = _filler(node, replicas=gpus)
    if priority is not None:
        cluster.apply_yaml(
            yaml.safe_dump(
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {"name": priority},
                    "value": 1000000,
                    "description": "e2e: pods that preempt a model's server",
                }
            )
        )
        filler["spec"]["template"]["spec"]["priorityClassName"] = priority
    apply(cluster, namespace, filler)
    try:
        yield
    finally:
        # The nodes are shared by every test of the session: give the GPUs back now.
        cluster.kubectl("delete", "deployment", "gpu-filler", "-n", namespace, "--wait=true")
        if priority is not None:
            cluster.kubectl("delete", "priorityclass", priority, "--ignore-not-found")
        cluster.wait_for(
            lambda: (
                not cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=gpu-filler")[
                    "items"
                ]
            ),
            60,
            f"the filler never left {node}",
        )


def _filler(node: str, *, replicas: int) -> dict[str, Any]:
    """A Deployment of pause pods that take one GPU each on `node`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gpu-filler"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "gpu-filler"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-filler"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "filler",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {
                                "requests": {"nvidia.com/gpu": 1},
                                "limits": {"nvidia.com/gpu": 1},
                            },
                        }
                    ],
                },
            },
        },
    }


def _gpu_pods_on(cluster: Cluster, node: str) -> int:
    pods = cluster.kubectl_json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}")[
        "items"
    ]
    used = 0
    for pod in pods:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod["spec"].get("containers") or []:
            used += int(
                (container.get("resources", {}).get("requests") or {}).get("nvidia.com/gpu", 0)
            )
    return used


def test_a_full_region_sends_the_model_to_the_next_feasible_one(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=20, eu_west_1=100, us_east_1=400)
    node = "gpu-eu-north-1a-a10g"  # the only A10G node of the cleanest region
    with _gpus_taken(cluster, namespace, node):
        cluster.wait_for(
            lambda: _gpu_pods_on(cluster, node) >= 4,
            60,
            f"the filler never took every GPU of {node}",
        )
        apply(
            cluster, namespace, model("overflow", regions=["eu-north-1", "eu-west-1", "us-east-1"])
        )
        wait_ready(cluster, "sm", "overflow", namespace, timeout=TIMEOUT)
        obj = get_sm(cluster, "overflow", namespace)
        assert placed_regions(obj) == ["eu-west-1"], obj["status"]
        assert pod_regions(cluster, namespace, "overflow") == ["eu-west-1"]
        north = excluded(obj)["eu-north-1"]
        assert north["reason"] == "NoCapacity" and "0 of 1 replicas fit" in north["message"], north


def test_models_placed_at_once_do_not_crowd_into_the_same_gpus(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=20, eu_west_1=100, us_east_1=400)
    node = "gpu-eu-north-1a-a10g"  # the only A10G node of the cleanest region
    with _gpus_taken(cluster, namespace, node, gpus=2):
        cluster.wait_for(
            lambda: _gpu_pods_on(cluster, node) >= 2, 60, f"the filler never took 2 GPUs of {node}"
        )
        names = [f"burst-{i}" for i in range(4)]
        # One apply: the operator decides the four at the same moment, with room for two.
        apply(cluster, namespace, *(model(n, regions=["eu-north-1", "eu-west-1"]) for n in names))
        stalled: set[tuple[str, str]] = set()

        def all_ready() -> list[dict[str, Any]] | None:
            objs = cluster.kubectl_json("get", "sm", "-n", namespace)["items"]
            for obj in objs:
                if condition(obj, "Stalled").get("status") == "True":
                    stalled.add((obj["metadata"]["name"], condition(obj, "Stalled")["reason"]))
            ready = [o for o in objs if condition(o, "Ready").get("status") == "True"]
            return ready if len(ready) == len(names) else None

        objs = cluster.wait_for(all_ready, TIMEOUT, "the burst never became Ready", 0.5)
        assert not stalled, f"models crowded into the same GPUs and stalled: {sorted(stalled)}"
        regions = sorted(r for o in objs for r in placed_regions(o))
        assert regions == ["eu-north-1"] * 2 + ["eu-west-1"] * 2, regions
        for name in names:
            assert not events(cluster, namespace, name, "Moved"), f"{name} had to move"


def test_a_model_pushed_out_of_its_region_moves_before_the_next_refresh(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory, grid: GridApi
) -> None:
    """Higher-priority pods take the model's GPUs: it moves at once, not at the next refresh."""
    grid.set(eu_north_1=20, eu_west_1=100, us_east_1=400)
    env = operator_env(grid, dwell_s=3600)
    env["SMALLFLEET_CARBON_REFRESH_SECONDS"] = "600"
    operator_process(namespace, env=env)
    node = "gpu-eu-north-1a-a10g"  # the only A10G node of the cleanest region
    apply(cluster, namespace, model("pushed"))
    wait_ready(cluster, "sm", "pushed", namespace, timeout=TIMEOUT)
    assert pod_regions(cluster, namespace, "pushed") == ["eu-north-1"]

    pushed_at = time.monotonic()
    with _gpus_taken(cluster, namespace, node, priority=f"{namespace}-urgent"[:63]):
        wait_status(
            cluster, "pushed", namespace, "never left the region it was pushed out of",
            lambda o: placed_regions(o) == ["eu-west-1"]
            and condition(o, "Ready").get("status") == "True",
            timeout=TIMEOUT,
        )  # fmt: skip
        print(f"moved {time.monotonic() - pushed_at:.1f}s after its GPUs were taken (refresh 600s)")
        assert pod_regions(cluster, namespace, "pushed") == ["eu-west-1"]
        north = excluded(get_sm(cluster, "pushed", namespace))["eu-north-1"]
        assert north["reason"] == "NoCapacity", north


def test_provider_outage_holds_placement_and_reports_a_stale_signal(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    grid.set(eu_north_1=40, eu_west_1=300, us_east_1=400)
    apply(cluster, namespace, model("steady", regions=["eu-north-1", "eu-west-1"]))
    wait_ready(cluster, "sm", "steady", namespace, timeout=TIMEOUT)
    assert placed_regions(get_sm(cluster, "steady", namespace)) == ["eu-north-1"]

    grid.down = True
    grid.set(eu_north_1=900, eu_west_1=20)  # a move would be due, if the signal could be trusted
    obj = wait_status(
        cluster, "steady", namespace, "CarbonSignalStale never became True",
        lambda o: condition(o, "CarbonSignalStale").get("status") == "True",
        timeout=60,
    )  # fmt: skip
    stale = condition(obj, "CarbonSignalStale")
    assert stale["reason"] == "SignalStale" and "eu-north-1" in stale["message"], stale
    assert obj["status"]["carbon"]["stale"] is True
    time.sleep(3 * 2)  # a few more refreshes: still nothing moves
    obj = get_sm(cluster, "steady", namespace)
    assert placed_regions(obj) == ["eu-north-1"]
    assert [d["metadata"]["name"] for d in deployments(cluster, namespace, "steady")] == [
        "steady-eu-north-1"
    ]
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Placed")["status"] == "True"
    assert not events(cluster, namespace, "steady", "Moved")

    grid.down = False
    grid.set(eu_north_1=40, eu_west_1=300)
    wait_status(
        cluster, "steady", namespace, "CarbonSignalStale never cleared",
        lambda o: condition(o, "CarbonSignalStale").get("status") == "False",
        timeout=60,
    )  # fmt: skip


def test_no_feasible_region_says_which_and_why(
    cluster: Cluster, namespace: str, operator: OperatorProcess, grid: GridApi
) -> None:
    doc = model("nowhere", product=H100, residency="eu", regions=["eu-north-1", "us-east-1"])
    apply(cluster, namespace, doc)
    obj = wait_status(
        cluster, "nowhere", namespace, "Placed never False",
        lambda o: condition(o, "Placed").get("status") == "False",
    )  # fmt: skip
    placed = condition(obj, "Placed")
    assert placed["reason"] == "NoFeasibleRegion", placed
    message = placed["message"]
    assert re.search(r"eu-north-1: NoCapacity \(0 of 1 replicas fit", message), message
    assert "us-east-1: Residency (residency eu required, region is in us)" in message, message
    assert "eu-west-1: NotAllowed" in message, message
    stalled = condition(obj, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "NoFeasibleRegion"), stalled
    assert condition(obj, "Ready")["status"] == "False"
    assert not deployments(cluster, namespace, "nowhere")
    reasons = {r: e["reason"] for r, e in excluded(obj).items()}
    assert reasons == {
        "eu-north-1": "NoCapacity",
        "eu-west-1": "NotAllowed",
        "us-east-1": "Residency",
    }, json.dumps(obj["status"], indent=1)


def test_a_restart_keeps_the_dwell_time(
    cluster: Cluster, namespace: str, operator_process: OperatorFactory, grid: GridApi
) -> None:
    """The last move time lives in status, so a restarted operator does not move early."""
    grid.set(eu_north_1=40, eu_west_1=300, us_east_1=400)
    first = operator_process(namespace, env=operator_env(grid, dwell_s=3600))
    apply(cluster, namespace, model("dweller"))
    wait_ready(cluster, "sm", "dweller", namespace, timeout=TIMEOUT)
    before = get_sm(cluster, "dweller", namespace)["status"]["placement"]
    assert [r["region"] for r in before["regions"]] == ["eu-north-1"]
    first.stop()

    grid.set(eu_north_1=500, eu_west_1=30)
    operator_process(namespace, env=operator_env(grid, dwell_s=3600))
    obj = wait_status(
        cluster, "dweller", namespace, "the restarted operator never saw the new intensities",
        lambda o: o.get("status", {}).get("carbon", {}).get("intensity") == 500.0,
        timeout=60,
    )  # fmt: skip
    time.sleep(3 * 2)
    obj = get_sm(cluster, "dweller", namespace)
    assert placed_regions(obj) == ["eu-north-1"]
    assert obj["status"]["placement"]["lastMoveTime"] == before["lastMoveTime"]
    assert "minimum dwell" in condition(obj, "Placed")["message"], condition(obj, "Placed")
    assert [d["metadata"]["name"] for d in deployments(cluster, namespace, "dweller")] == [
        "dweller-eu-north-1"
    ]
