"""ServingPools, pure: the spec, packing, the plan of loads and statuses, the rendered servers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from smallfleet.core import conditions as c
from smallfleet.core.pools.packing import MIB, Demand, pack
from smallfleet.core.pools.plan import (
    FETCH,
    LOAD,
    Failure,
    IndexEntry,
    Model,
    Server,
    plan_pool,
)
from smallfleet.core.pools.render import render_pool, server_ordinal, workload_name
from smallfleet.core.pools.spec import PoolServer, PoolSpec, parse_serving_pool
from smallfleet.core.render import plan_for_model
from smallfleet.core.render.triton import triton_config, triton_config_json
from smallfleet.core.spec import SpecError, parse_small_model
from smallfleet.settings import Settings

GIB = 1024 * MIB


def pool(**kw: Any) -> PoolSpec:
    base: dict[str, Any] = {"name": "shared", "namespace": "ns", "min_servers": 1, "max_servers": 3}
    base.update(kw)
    return PoolSpec(**base)


def d(name: str, mib: int = 64, fmt: str = "python", gpus: int = 0, gpu_mib: int = 0) -> Demand:
    return Demand(name=name, memory=mib * MIB, gpu_memory=gpu_mib * MIB, format=fmt, gpus=gpus)


def body(spec: dict[str, Any], name: str = "shared") -> dict[str, Any]:
    return {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "ServingPool",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


# -- spec -----------------------------------------------------------------------


def test_a_pool_gets_the_crd_defaults() -> None:
    p = parse_serving_pool(body({}))
    assert (p.min_servers, p.max_servers, p.models_per_server) == (1, 4, 50)
    assert p.server == PoolServer(gpus=0, cpu="2", memory="8Gi")
    assert p.server.memory_bytes == 8 * GIB


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"minServers": 5, "maxServers": 2}, "spec.minServers"),
        ({"server": {"gpuProduct": "NVIDIA-L4"}}, "spec.server.gpuProduct"),
        ({"server": {"gpuMemory": "20Gi"}}, "spec.server.gpuMemory"),
        ({"modelsPerServer": 0}, "spec.modelsPerServer"),
        ({"backends": ["cobol"]}, "spec.backends[0]"),
        ({"server": {"memory": "lots"}}, "spec.server.memory"),
    ],
)
def test_a_bad_pool_is_refused_naming_the_field(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_serving_pool(body(spec))
    assert path in [e.path for e in caught.value.errors]


# -- packing --------------------------------------------------------------------


def test_models_fill_the_lowest_server_first_and_the_pool_grows_when_full() -> None:
    p = pool(server=PoolServer(memory="256Mi"))
    got = pack(p, [d(f"m{i}") for i in range(9)], {})
    assert got.servers == 3
    assert sorted(got.placed.values()) == [0] * 4 + [1] * 4 + [2]
    assert not got.waiting


def test_past_max_servers_a_model_waits_and_says_what_to_change() -> None:
    p = pool(max_servers=1, models_per_server=2)
    got = pack(p, [d("a"), d("b"), d("c")], {})
    assert set(got.placed) == {"a", "b"}
    assert got.waiting["c"].reason == c.REASON_POOL_FULL
    assert "spec.maxServers" in got.waiting["c"].message


@pytest.mark.parametrize(
    ("demand", "pool_kw", "words"),
    [
        (d("big", mib=16 * 1024), {}, "spec.resources.memory"),
        (d("onnx", fmt="onnx"), {"backends": frozenset({"python"})}, "loads only python"),
        (d("gpu", gpus=1), {}, "runs on CPU"),
        (
            d("ctx", gpus=1, gpu_mib=750),
            {"server": PoolServer(gpus=1, gpu_memory=512 * MIB)},
            "MiB of GPU memory",
        ),
    ],
)
def test_a_model_no_server_could_hold_is_refused(
    demand: Demand, pool_kw: dict[str, Any], words: str
) -> None:
    got = pack(pool(**pool_kw), [demand], {})
    assert got.waiting[demand.name].reason == c.REASON_NOT_POOLABLE
    assert words in got.waiting[demand.name].message
    assert got.servers == 1  # minServers still run


def test_a_model_keeps_its_server_even_when_a_lower_one_has_room() -> None:
    got = pack(pool(), [d("a"), d("b")], {"a": 2})
    assert got.placed == {"a": 2, "b": 0} and got.servers == 3


def test_a_model_beyond_a_smaller_pool_is_placed_again() -> None:
    got = pack(pool(max_servers=2), [d("a")], {"a": 2})
    assert got.placed == {"a": 0}


names = hs.lists(hs.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    names=names,
    sizes=hs.lists(hs.integers(1, 3000), min_size=40, max_size=40),
    max_servers=hs.integers(1, 6),
    per_server=hs.integers(1, 12),
    extra=hs.from_regex(r"[A-Z]{1,6}", fullmatch=True),
)
def test_packing_is_stable_fits_and_waits_only_when_full(
    names: list[str], sizes: list[int], max_servers: int, per_server: int, extra: str
) -> None:
    p = pool(max_servers=max_servers, models_per_server=per_server, server=PoolServer(memory="4Gi"))
    demands = [d(n, mib=s) for n, s in zip(names, sizes, strict=False)]
    first = pack(p, demands, {})
    for server, use in enumerate(first.use):
        assert use.memory <= 4 * GIB and use.models <= per_server, server
        held = [x for x in demands if first.placed.get(x.name) == server]
        assert use.models == len(held)
    for name in first.waiting:  # it waits only if it fits in no server as they are
        need = next(x for x in demands if x.name == name)
        for use in first.use + tuple(
            type(first.use[0])(0, 0, 0) for _ in range(max_servers - len(first.use))
        ):
            assert use.models + 1 > per_server or use.memory + need.memory > 4 * GIB
    # One more model never moves those already placed.
    second = pack(p, [*demands, d(extra, mib=sizes[0])], dict(first.placed))
    assert {k: second.placed[k] for k in first.placed} == dict(first.placed)
    assert pack(p, demands, {}) == first  # deterministic


# -- the plan -------------------------------------------------------------------


def model(name: str, generation: int = 1, recorded: int | None = None) -> Model:
    return Model(
        demand=d(name), generation=generation, digest="sha256:" + "a" * 64, recorded_server=recorded
    )


def by_type(derived: Any) -> dict[str, tuple[str, str]]:
    return {x.type: (x.status, x.reason) for x in derived.conditions}


def test_ready_only_when_the_server_that_holds_it_reports_ready() -> None:
    servers = [Server(0, "uid0", True, {"a": IndexEntry("READY")})]
    plan = plan_pool(pool(), [model("a"), model("b")], servers, {}, frozenset())
    assert by_type(plan.models["a"])[c.READY] == ("True", c.REASON_LOADED)
    assert by_type(plan.models["b"])[c.READY] == ("False", c.REASON_LOADING)
    assert [(x.model, x.ordinal) for x in plan.loads] == [("b", 0)]
    assert plan.models["a"].fields["pool"] == {
        "name": "shared",
        "server": "shared-pool-0",
        "state": "READY",
    }
    assert plan.models["a"].fields["endpoint"] == "shared-pool-0.shared-pool.ns.svc"
    assert plan.pool.fields["readyModels"] == 1


def test_nothing_is_loaded_into_a_server_that_is_not_ready() -> None:
    plan = plan_pool(pool(), [model("a")], [Server(0, "uid0", False)], {}, frozenset())
    assert not plan.loads
    assert "waiting for shared-pool-0" in by_type_message(plan.models["a"], c.RECONCILING)


def by_type_message(derived: Any, type_: str) -> str:
    return next(x.message for x in derived.conditions if x.type == type_)


@pytest.mark.parametrize(
    ("step", "reason", "raw", "shown"),
    [
        (
            FETCH,
            c.REASON_ARTIFACT_FAILED,
            "digest mismatch for x: expected a, got b",
            "digest mismatch",
        ),
        (
            LOAD,
            c.REASON_MODEL_LOAD_FAILED,
            "Internal: ValueError: this model needs output VECTOR",
            "this model needs output VECTOR",
        ),
    ],
)
def test_a_failure_stalls_with_the_servers_words_and_is_not_retried(
    step: str, reason: str, raw: str, shown: str
) -> None:
    servers = [Server(0, "uid0", True, {})]
    failures = {"a": Failure(step, raw, 1, "uid0")}
    plan = plan_pool(pool(), [model("a")], servers, failures, frozenset())
    assert by_type(plan.models["a"])[c.STALLED] == ("True", reason)
    assert shown in by_type_message(plan.models["a"], c.STALLED)
    assert not plan.loads


def test_a_new_generation_or_a_new_server_tries_again() -> None:
    failures = {"a": Failure(LOAD, "broken", 1, "uid0")}
    for gen, uid in ((2, "uid0"), (1, "uid1")):
        plan = plan_pool(
            pool(), [model("a", gen)], [Server(0, uid, True, {})], failures, frozenset()
        )
        assert [x.model for x in plan.loads] == ["a"]


def test_a_model_no_longer_placed_on_a_server_is_unloaded_from_it() -> None:
    servers = [
        Server(0, "u0", True, {"gone": IndexEntry("READY"), "a": IndexEntry("READY")}),
        Server(1, "u1", True, {"a": IndexEntry("UNAVAILABLE", "unloaded")}),
    ]
    plan = plan_pool(pool(), [model("a")], servers, {}, frozenset())
    assert [(x.model, x.ordinal) for x in plan.unloads] == [("gone", 0)]
    assert plan.packing.placed == {"a": 0}  # where Triton holds it, not where status said


def test_loads_in_flight_are_not_sent_again() -> None:
    plan = plan_pool(pool(), [model("a")], [Server(0, "u", True, {})], {}, frozenset({"a"}))
    assert not plan.loads


# -- rendering --------------------------------------------------------------------


def test_the_pool_renders_a_statefulset_of_empty_explicit_servers_with_the_agent() -> None:
    p = parse_serving_pool(
        body(
            {
                "region": "eu-west-1",
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "nodeSelector": {"disk": "ssd"},
            }
        )
    )
    owner = {"metadata": {"name": "shared", "uid": "u-1"}}
    service, sts = render_pool(p, servers=2, owner=owner, triton_image="t:1", agent_image="o:1")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 2
    assert sts["metadata"]["name"] == workload_name("shared") == sts["spec"]["serviceName"]
    pod = sts["spec"]["template"]["spec"]
    triton, agent = pod["containers"]
    assert "--model-control-mode=explicit" in triton["args"]
    assert not any(a.startswith("--load-model") for a in triton["args"])
    assert agent["command"] == ["smallfleet"] and agent["args"][0] == "agent"
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "ServingPool"
    assert server_ordinal("shared", "shared-pool-12") == 12
    assert server_ordinal("shared", "other-pool-1") is None


def test_the_load_config_says_what_config_pbtxt_says() -> None:
    spec = parse_small_model(
        {
            "apiVersion": "serving.smallfleet.io/v1alpha1",
            "kind": "SmallModel",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "model": {
                    "uri": "https://x/m.tar.gz",
                    "digest": "sha256:" + "b" * 64,
                    "format": "python",
                },
                "triton": {
                    "maxBatchSize": 8,
                    "inputs": [{"name": "TEXT", "datatype": "BYTES", "dims": [1]}],
                    "outputs": [{"name": "VECTOR", "datatype": "FP32", "dims": [128]}],
                    "parameters": {"EXECUTION_ENV_PATH": "/env"},
                },
                "resources": {"gpus": 0},
                "serving": {"pool": "shared"},
                "card": {"owner": "o", "license": "MIT", "description": "m"},
            },
        }
    )
    assert spec.pool == "shared"
    (entry,) = plan_for_model(spec, Settings()).models
    config = triton_config_json(entry)
    text = triton_config(entry)
    assert config["input"] == [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}]
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert config["parameters"] == {"EXECUTION_ENV_PATH": {"string_value": "/env"}}
    assert "max_queue_delay_microseconds" in text
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == int(
        text.split("max_queue_delay_microseconds: ")[1].split()[0]
    )


def test_a_server_that_cannot_start_says_why_in_the_model_and_the_pool() -> None:
    why = "0/7 nodes are available: 1 Insufficient cpu."
    servers = [Server(0, "u0", True, {}), Server(1, "u1", False, None, why)]
    p = pool(models_per_server=1)
    plan = plan_pool(p, [model("a"), model("b")], servers, {}, frozenset())
    assert why in by_type_message(plan.models["b"], c.RECONCILING)
    assert why in by_type_message(plan.pool, c.RECONCILING)
    assert "to be created" in by_type_message(
        plan_pool(p, [model("a"), model("b")], servers[:1], {}, frozenset()).models["b"],
        c.RECONCILING,
    )


# -- emissions --------------------------------------------------------------------


def test_a_servers_power_is_split_by_declared_memory_and_priced_at_its_region() -> None:
    from datetime import UTC, datetime, timedelta

    from smallfleet.core.placement.signals import CarbonReading
    from smallfleet.core.pools.carbon import server_watts, shares
    from smallfleet.core.pools.plan import Carbon

    assert shares({"a": 64, "b": 192}) == {"a": 0.25, "b": 0.75}
    assert shares({"a": 0, "b": 0}) == {"a": 0.5, "b": 0.5}
    assert shares({}) == {}
    now = datetime(2026, 12, 6, tzinfo=UTC)
    reading = CarbonReading(
        zone="IE", region="eu-west-1", start=now, duration=timedelta(hours=1),
        intensity=300.0, kind="average", scope="lifecycle", forecast=False, provider="static",
        fetched_at=now,
    )  # fmt: skip
    p = pool()
    big = Model(demand=d("big", mib=192), generation=1, digest="sha256:" + "a" * 64)
    small = Model(demand=d("small", mib=64), generation=1, digest="sha256:" + "a" * 64)
    ready = {"big": IndexEntry("READY"), "small": IndexEntry("READY")}
    servers = [Server(0, "u0", True, ready, region="eu-west-1")]
    carbon = Carbon({"eu-west-1": reading}, now, 1.2)
    plan = plan_pool(p, [big, small], servers, {}, frozenset(), carbon)
    watts = server_watts(p, pue=1.2)
    got = {n: plan.models[n].fields["carbon"] for n in ("big", "small")}
    assert got["big"]["energyWatts"] == round(watts * 0.75, 1)
    assert got["small"]["gramsCO2ePerHour"] == round(watts * 0.25 / 1000 * 300.0, 2)
    assert got["small"]["intensity"] == 300.0 and got["small"]["provider"] == "static"
    # No reading for the server's region: power, but no emissions, and said to be stale.
    unknown = plan_pool(
        p, [big, small], [Server(0, "u0", True, ready, region="mars-1")], {}, frozenset(), carbon
    )
    assert "gramsCO2ePerHour" not in unknown.models["big"].fields["carbon"]
    assert unknown.models["big"].fields["carbon"]["stale"] is True


# -- the controller ---------------------------------------------------------------


class RefusingKube:
    """Refuses every child; records what is applied and the status patches."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.statuses: list[dict[str, Any]] = []

    def apply(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        from smallfleet.kube import Rejected

        self.applied.append(obj["kind"])
        raise Rejected(422, "spec.template.spec.tolerations[0].key: Invalid value")

    def patch_status(self, *args: Any, **_: Any) -> dict[str, Any]:
        self.statuses.append(args[-1])
        return {}


def test_a_pool_whose_servers_are_refused_is_stalled_once_not_retried_every_pass() -> None:
    from smallfleet.control.facts import StaticFacts
    from smallfleet.control.pools import PoolController

    kube = RefusingKube()
    facts = StaticFacts(objects={("ServingPool", "ns", "shared"): {**body({}), "status": {}}})
    facts.objects[("ServingPool", "ns", "shared")]["metadata"].update(uid="u1", generation=1)
    pools = PoolController(kube, facts, Settings(), refresh_model=lambda _key: None)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            pools.sync_all()
    finally:
        pools.close()
    assert kube.applied == ["Service"]  # the first refusal stops the rest, and is not resent
    (status,) = kube.statuses
    stalled = {x["type"]: x for x in status["conditions"]}[c.STALLED]
    assert stalled["status"] == "True" and stalled["reason"] == c.REASON_APPLY_FAILED
    assert "tolerations[0].key" in stalled["message"]
