"""ServingPools end to end: 40 SmallModels in a few real Triton servers, ready when Triton says.

The pool's servers land on the local node (`triton-local`), which runs each
pod's own containers as processes on its loopback IP: the wheel's
`tritonserver` with explicit model control, and `smallfleet agent`, which
fetches each artifact from a local HTTP store and checks its digest. The
operator packs the models, loads each through Triton's repository API and
marks it Ready only when that server's Triton reports it READY; every model
then answers an inference request sent to its server.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest
import tritonclient.http as httpclient
from tests.e2e.cluster import (
    LOCAL_NODE_SELECTOR,
    LOCAL_NODE_TOLERATION,
    Cluster,
    LocalNode,
    OperatorFactory,
)

MODELS: Final = 40
READY_TIMEOUT_S: Final = 420.0  # 40 python-backend stubs started on two shared cores
FAILURE_TIMEOUT_S: Final = 10.0
DIM: Final = 128


@functools.cache
def triton_env() -> dict[str, Any]:
    cache = Path(os.environ.get("SMALLFLEET_CACHE") or Path.home() / ".cache" / "smallfleet")
    env: dict[str, Any] = json.loads((cache / "triton" / "env.json").read_text())
    env["index"] = json.loads((Path(env["artifacts"]) / "index.json").read_text())
    return env


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """A local HTTP store holding the packaged artifacts (the agent fetches from it)."""
    env = triton_env()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=env["artifacts"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def pool_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "ServingPool",
        "metadata": {"name": name},
        "spec": {
            "minServers": 1,
            "maxServers": 4,
            "modelsPerServer": 12,
            "backends": ["python"],
            "server": {"cpu": "250m", "memory": "2Gi"},
            "nodeSelector": dict(LOCAL_NODE_SELECTOR),
            "tolerations": [dict(LOCAL_NODE_TOLERATION)],
            **spec,
        },
    }


def model_manifest(
    name: str, store: str, pool: str, *, digest: str | None = None, output: str = "VECTOR"
) -> dict[str, Any]:
    env = triton_env()
    artifact = env["index"]["hashed-ngrams"]
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"{store}/{artifact['file']}",
                "digest": digest or artifact["digest"],
                "format": "python",
            },
            "triton": {
                "maxBatchSize": 8,
                "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                "outputs": [{"name": output, "datatype": "FP32", "dims": [DIM]}],
                "parameters": {"EXECUTION_ENV_PATH": env["execution_env_path"]},
            },
            "resources": {"gpus": 0, "cpu": "50m", "memory": "64Mi"},
            "serving": {"pool": pool},
            "card": {
                "owner": "e2e",
                "license": "Apache-2.0",
                "description": "hashed character trigrams",
            },
        },
    }


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.apply_yaml("\n---\n".join(json.dumps(d) for d in docs), namespace=namespace)


def models(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.kubectl_json("get", "smallmodels", "-n", namespace)["items"]
    return {m["metadata"]["name"]: m for m in items}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def server_ips(cluster: Cluster, namespace: str) -> dict[str, str]:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods}


def infer(ip: str, model: str, text: str) -> Any:
    client = httpclient.InferenceServerClient(f"{ip}:8000", network_timeout=30)
    try:
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        return client.infer(model, [tensor]).as_numpy("VECTOR")
    finally:
        client.close()


def test_forty_models_share_four_servers_load_in_place_and_fail_with_tritons_words(
    cluster: Cluster,
    local_node: LocalNode,
    namespace: str,
    operator_process: OperatorFactory,
    store: str,
) -> None:
    operator = operator_process(namespace)
    names = [f"ngrams-{i:02d}" for i in range(MODELS)]
    apply(cluster, namespace, pool_manifest("shared"))
    apply(cluster, namespace, *(model_manifest(n, store, "shared") for n in names))

    def all_ready() -> dict[str, dict[str, Any]] | None:
        got = models(cluster, namespace)
        ready = [n for n in names if condition(got.get(n, {}), "Ready").get("status") == "True"]
        return got if len(ready) == MODELS else None

    got = cluster.wait_for(
        all_ready,
        READY_TIMEOUT_S,
        lambda: (
            "not all Ready: "
            + json.dumps(
                {
                    n: condition(m, "Ready").get("message")
                    for n, m in models(cluster, namespace).items()
                    if condition(m, "Ready").get("status") != "True"
                }
            )[:3000]
        ),
        interval=2.0,
    )
    servers = {m["status"]["pool"]["server"] for m in got.values()}
    assert len(servers) <= 4, servers
    assert all(m["status"]["pool"]["state"] == "READY" for m in got.values())
    # Each server's estimated power is attributed to its models, priced at its region's grid.
    carbon = got[names[0]]["status"]["carbon"]
    assert carbon["energyWatts"] > 0 and carbon["gramsCO2ePerHour"] > 0, carbon
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    assert {p["metadata"]["name"] for p in pods} == servers
    assert all(p["spec"]["nodeName"] == local_node.name for p in pods)
    before = {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            [c.get("restartCount", 0) for c in p["status"]["containerStatuses"]],
        )
        for p in pods
    }
    ips = server_ips(cluster, namespace)
    reference = infer(ips[got[names[0]]["status"]["pool"]["server"]], names[0], "a cat sleeps")
    assert reference.shape == (1, DIM)
    for name, m in got.items():
        vec = infer(ips[m["status"]["pool"]["server"]], name, "a cat sleeps")
        assert np.allclose(vec, reference), name

    # One more loads in place while another model keeps answering.
    errors: list[str] = []
    answered = [0]
    stop = threading.Event()
    watched = names[-1]
    watched_ip = ips[got[watched]["status"]["pool"]["server"]]

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                infer(watched_ip, watched, "still serving")
                answered[0] += 1
            except Exception as exc:
                errors.append(str(exc))
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    apply(cluster, namespace, model_manifest("ngrams-extra", store, "shared"))
    extra = cluster.wait_for(
        lambda: (
            m
            if condition(m := models(cluster, namespace).get("ngrams-extra", {}), "Ready").get(
                "status"
            )
            == "True"
            else None
        ),
        120,
        "the extra model never became Ready",
    )
    stop.set()
    asker.join(10)
    assert not errors and answered[0] > 0, errors[:3]
    assert infer(ips[extra["status"]["pool"]["server"]], "ngrams-extra", "a cat sleeps").shape == (
        1,
        DIM,
    )
    after = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    for p in after:
        name = p["metadata"]["name"]
        if name in before:
            restarts = [c.get("restartCount", 0) for c in p["status"]["containerStatuses"]]
            assert (p["metadata"]["uid"], restarts) == before[name], f"{name} was restarted"

    # A restarted operator finds every model where Triton holds it: nothing moves or reloads,
    # and no model's status changes.
    versions = {n: m["metadata"]["resourceVersion"] for n, m in models(cluster, namespace).items()}
    operator.stop()
    operator_process(namespace)
    time.sleep(15)  # several pool passes and a resync's worth of events
    again = models(cluster, namespace)
    assert {n: m["metadata"]["resourceVersion"] for n, m in again.items()} == versions
    for p in cluster.kubectl_json("get", "pods", "-n", namespace)["items"]:
        restarts = [c.get("restartCount", 0) for c in p["status"]["containerStatuses"]]
        assert (p["metadata"]["uid"], restarts) == before.get(
            p["metadata"]["name"], (p["metadata"]["uid"], restarts)
        )

    # A wrong digest and a config the model refuses: Stalled with the server's words, fast.
    apply(
        cluster,
        namespace,
        model_manifest("tampered", store, "shared", digest="sha256:" + "0" * 64),
        model_manifest("wrong-output", store, "shared", output="EMBEDDING"),
    )
    started = time.monotonic()

    def stalled(name: str) -> dict[str, Any] | None:
        cond = condition(models(cluster, namespace).get(name, {}), "Stalled")
        return cond if cond.get("status") == "True" else None

    tampered = cluster.wait_for(lambda: stalled("tampered"), 60, "the tampered model never stalled")
    wrong = cluster.wait_for(lambda: stalled("wrong-output"), 60, "wrong-output never stalled")
    took = time.monotonic() - started
    assert tampered["reason"] == "ArtifactFailed" and "digest mismatch" in tampered["message"]
    assert wrong["reason"] == "ModelLoadFailed"
    assert "this model needs output VECTOR" in wrong["message"]
    print(f"\nboth failures in status {took:.1f} s after apply")
    assert took <= FAILURE_TIMEOUT_S * 3  # two loads queue behind each other on two cores
    assert infer(watched_ip, watched, "the others keep serving").shape == (1, DIM)

    pool = cluster.kubectl_json("get", "servingpool", "shared", "-n", namespace)
    assert condition(pool, "Ready").get("status") == "True"
    assert pool["status"]["readyModels"] == MODELS + 1
    assert pool["status"]["servers"] == len(servers | {extra["status"]["pool"]["server"]})


def test_a_model_naming_a_missing_pool_is_stalled_until_the_pool_exists(
    cluster: Cluster,
    local_node: LocalNode,
    namespace: str,
    operator_process: OperatorFactory,
    store: str,
) -> None:
    operator_process(namespace)
    apply(cluster, namespace, model_manifest("orphan", store, "nowhere"))
    cond = cluster.wait_for(
        lambda: (
            c
            if (c := condition(models(cluster, namespace).get("orphan", {}), "Stalled")).get(
                "status"
            )
            == "True"
            else None
        ),
        60,
        "a model naming a missing pool never stalled",
    )
    assert cond["reason"] == "PoolMissing" and "nowhere" in cond["message"]
    apply(cluster, namespace, pool_manifest("nowhere", maxServers=1))
    cluster.wait_for(
        lambda: condition(models(cluster, namespace)["orphan"], "Ready").get("status") == "True",
        240,
        "the model did not load once its pool appeared",
    )


def test_a_killed_server_reloads_its_models_and_a_deleted_pool_leaves_them_stalled(
    cluster: Cluster,
    local_node: LocalNode,
    namespace: str,
    operator_process: OperatorFactory,
    store: str,
) -> None:
    """Faults: a server killed while it loads, a model no server can hold, the pool deleted."""
    operator_process(namespace)
    apply(cluster, namespace, pool_manifest("small", maxServers=2, modelsPerServer=3))
    names = [f"fault-{i}" for i in range(4)]
    apply(cluster, namespace, *(model_manifest(n, store, "small") for n in names))
    got = cluster.wait_for(
        lambda: (
            ms
            if all(
                condition((ms := models(cluster, namespace)).get(n, {}), "Ready").get("status")
                == "True"
                for n in names
            )
            else None
        ),
        240,
        "the four models never became Ready",
        interval=2.0,
    )
    where = {n: got[n]["status"]["pool"]["server"] for n in names}
    assert sorted(where.values()) == ["small-pool-0"] * 3 + ["small-pool-1"], where
    lone = next(n for n in names if where[n] == "small-pool-1")
    steady = next(n for n in names if where[n] == "small-pool-0")
    ips = server_ips(cluster, namespace)

    # A model too big for any server: refused with what to change, nothing else disturbed.
    huge = model_manifest("too-big", store, "small")
    huge["spec"]["resources"]["memory"] = "64Gi"
    apply(cluster, namespace, huge)
    refused = cluster.wait_for(
        lambda: (
            c
            if (c := condition(models(cluster, namespace).get("too-big", {}), "Stalled")).get(
                "status"
            )
            == "True"
            else None
        ),
        60,
        "a model bigger than any server never stalled",
    )
    assert refused["reason"] == "NotPoolable" and "spec.resources.memory" in refused["message"]

    # Kill server 1 while a new model is being loaded into it; server 0 keeps answering.
    apply(cluster, namespace, model_manifest("fault-late", store, "small"))
    old_uid = cluster.kubectl_json("get", "pod", "small-pool-1", "-n", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "small-pool-1", "-n", namespace, "--wait=false")
    seen_loading = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert infer(ips["small-pool-0"], steady, "server 0 keeps serving").shape == (1, DIM)
        now = models(cluster, namespace)
        lone_ready = condition(now[lone], "Ready").get("status") == "True"
        late_ready = condition(now.get("fault-late", {}), "Ready").get("status") == "True"
        seen_loading |= not lone_ready
        pod = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
        fresh = any(
            p["metadata"]["name"] == "small-pool-1" and p["metadata"]["uid"] != old_uid for p in pod
        )
        if fresh and lone_ready and late_ready:
            break
        time.sleep(1.0)
    else:
        raise AssertionError(
            "the models of the killed server were not loaded again: "
            + json.dumps({n: condition(m, "Ready") for n, m in models(cluster, namespace).items()})
        )
    # Whether the outage shows in status depends on how fast the new pod reloads: a
    # status that only says "in progress" waits a few seconds to settle, so a quick
    # reload may never show it. What must hold is checked: a new pod, the models back.
    print(f"\nthe killed server's model showed not Ready on the way: {seen_loading}")
    ips = server_ips(cluster, namespace)
    final = models(cluster, namespace)
    for name in (lone, "fault-late"):
        server = final[name]["status"]["pool"]["server"]
        assert infer(ips[server], name, "back again").shape == (1, DIM)

    # The pool deleted under its models: its servers go, the models say so and wait.
    cluster.kubectl("delete", "servingpool", "small", "-n", namespace)
    stalled = cluster.wait_for(
        lambda: (
            ms
            if all(
                condition((ms := models(cluster, namespace))[n], "Stalled").get("reason")
                == "PoolMissing"
                for n in names
            )
            else None
        ),
        90,
        "the models of a deleted pool never said so",
    )
    assert all(condition(stalled[n], "Ready").get("status") == "False" for n in names)
    cluster.wait_for(
        lambda: not cluster.kubectl_json("get", "pods", "-n", namespace)["items"],
        120,
        "the deleted pool's servers were not removed",
    )
