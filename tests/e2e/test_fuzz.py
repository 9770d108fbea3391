"""Fuzzing against the real API server: near-valid manifests from tests/e2e/fuzzing.py.

Three properties, each over examples drawn by hypothesis (derandomized, so CI
sees the same examples every run):

1. The offline validator (the typed parsers behind `smallfleet validate` and
   the operator) accepts exactly what the API server accepts (server-side
   dry-run, strict field validation), and every refusal names its field.
2. Updating a live object to a near-valid spec gets the same verdict from both.
3. With the operator running: every accepted object settles (Ready, or
   Stalled with a reason) within a bound, without an ApplyFailed stall, with
   a bounded number of writes and then none; the operator stays up and logs
   no Traceback.

`make bench-fuzz` runs the same generator for 10,000 examples.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

import kubernetes
import pytest
from hack.cluster import install_keda_crds
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.e2e.cluster import Cluster, OperatorFactory
from tests.e2e.fuzzing import (
    PLURALS,
    Case,
    Verdict,
    Writes,
    manifests,
    names_a_field,
    offline_verdict,
    server_update_verdict,
    server_verdict,
    settled,
    small_enough,
    spec_mutations,
)

DRY_RUN_EXAMPLES: Final = 300
UPDATE_EXAMPLES: Final = 40
OPERATOR_SAMPLE: Final = 10
SETTLE_S: Final = 90.0  # every accepted object is Ready or Stalled within this
QUIET_S: Final = 15.0  # and then writes at most once more in this long
MAX_WRITES: Final = 25  # resourceVersions an object goes through while settling

FUZZ_SETTINGS: Final = settings(
    database=None,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def api(cluster: Cluster, crds_installed: list[str]) -> kubernetes.client.CustomObjectsApi:
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    return kubernetes.client.CustomObjectsApi(client)


def _disagreement(case: Case, server: Verdict, offline: Verdict) -> str:
    return (
        f"the API server {'accepts' if server.accepted else 'refuses'} but the offline "
        f"validator {'accepts' if offline.accepted else 'refuses'} (or crashes):\n"
        f"  mutations: {case.mutations}\n  manifest: {json.dumps(case.obj, ensure_ascii=True)}\n"
        f"  server: {server.message}\n  offline: {offline.layer} {offline.message}"
    )


def test_offline_validator_agrees_with_the_api_server(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    seen: Counter[str] = Counter()

    @settings(FUZZ_SETTINGS, max_examples=DRY_RUN_EXAMPLES)
    @given(manifests())
    def agree(case: Case) -> None:
        server = server_verdict(api, namespace, case.obj)
        offline = offline_verdict(case.obj, namespace)
        seen["accepted" if server.accepted else f"rejected-by-{server.layer}"] += 1
        assert offline.layer != "crash", _disagreement(case, server, offline)
        assert server.accepted == offline.accepted, _disagreement(case, server, offline)
        assert names_a_field(server), f"refusal names no field: {server.message}\n{case!r}"

    agree()
    # The generator must reach every outcome, or the property proves little.
    assert seen["accepted"] >= DRY_RUN_EXAMPLES // 10, seen
    assert seen["rejected-by-schema"] >= DRY_RUN_EXAMPLES // 10, seen
    assert seen["rejected-by-CEL"] >= DRY_RUN_EXAMPLES // 20, seen


def _found(kind: str, index: int, writes: dict[str, Any]) -> Case:
    from tests.e2e.fuzzing import EXAMPLES, set_path

    obj = json.loads(json.dumps(EXAMPLES[kind][index]))
    for dotted, value in writes.items():
        set_path(obj["spec"], tuple(int(k) if k.isdigit() else k for k in dotted.split(".")), value)
    return Case(obj, [f"set spec.{k}" for k in writes])


# Disagreements fuzzing once found (each fixed), checked against the real server every run.
FOUND: Final = [
    _found("SmallModel", 0, {"resources.cpu": "\u0661"}),
    _found("SmallModel", 0, {"resources.memory": "1Gi\n"}),
    _found("SmallModel", 0, {"triton.parameters": {"abc\n": "x"}}),
    _found("SmallModel", 0, {"triton.instanceCount": 2.0}),
    _found("SmallModel", 0, {"triton.parameters": {"a": None, "b": "x"}}),
    _found("ModelPipeline", 0, {"outputs.0.name": "question"}),
    _found("ServingPool", 0, {"modelsPerServer": 20.0}),
    _found("ServingPool", 0, {"region": "eu west"}),
    _found("ServingPool", 0, {"nodeSelector": {**{f"k{i}": "v" for i in range(32)}, "x": None}}),
]


@pytest.mark.parametrize("case", FOUND, ids=[" ".join(c.mutations) for c in FOUND])
def test_once_found_disagreements_stay_fixed(
    api: kubernetes.client.CustomObjectsApi, namespace: str, case: Case
) -> None:
    server = server_verdict(api, namespace, case.obj)
    offline = offline_verdict(case.obj, namespace)
    assert server.accepted == offline.accepted, _disagreement(case, server, offline)


def _live(api: kubernetes.client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    """One live object of each kind, made from the examples."""
    made = []
    for kind in PLURALS:
        case = next(c for c in _valid_examples() if c.kind == kind)
        verdict = server_verdict(api, namespace, case.obj, dry_run=False)
        assert verdict.accepted and verdict.body is not None, verdict.message
        made.append(dict(verdict.body))
    return made


def _valid_examples() -> Iterator[Case]:
    from tests.e2e.fuzzing import EXAMPLES

    for kind, docs in EXAMPLES.items():
        for doc in docs:
            if kind == "SmallModel" and doc["spec"].get("scaling", {}).get("mode") == "keda":
                continue
            yield Case(json.loads(json.dumps(doc)))


def test_spec_updates_of_live_objects_get_the_same_verdict(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    live = {obj["kind"]: obj for obj in _live(api, namespace)}
    version = {kind: obj["metadata"]["resourceVersion"] for kind, obj in live.items()}
    outcomes: Counter[str] = Counter()

    # Each update mutates the spec the object was made with (a fixed strategy), and
    # replaces whatever the last accepted update stored.
    @settings(FUZZ_SETTINGS, max_examples=UPDATE_EXAMPLES, phases=[Phase.generate])
    @given(st.sampled_from(sorted(live)).flatmap(lambda k: spec_mutations(live[k])))
    def update(case: Case) -> None:
        case.obj["metadata"]["resourceVersion"] = version[case.kind]
        server = server_update_verdict(api, namespace, case.obj)
        offline = offline_verdict(case.obj, namespace)
        outcomes["accepted" if server.accepted else "rejected"] += 1
        assert server.accepted == offline.accepted, _disagreement(case, server, offline)
        assert names_a_field(server), f"refusal names no field: {server.message}\n{case!r}"
        if server.accepted and server.body is not None:
            version[case.kind] = server.body["metadata"]["resourceVersion"]

    update()
    assert outcomes["accepted"] and outcomes["rejected"], outcomes


def test_the_operator_settles_every_accepted_fuzz_object(
    cluster: Cluster,
    api: kubernetes.client.CustomObjectsApi,
    namespace: str,
    operator_process: OperatorFactory,
) -> None:
    install_keda_crds(cluster)
    operator = operator_process(namespace)
    writes = Writes(api, namespace)
    created: dict[tuple[str, str], Case] = {}

    @settings(FUZZ_SETTINGS, max_examples=OPERATOR_SAMPLE * 6, phases=[Phase.generate])
    @given(manifests(max_mutations=2))
    def create(case: Case) -> None:
        if len(created) >= OPERATOR_SAMPLE or not isinstance(case.obj.get("spec"), dict):
            return
        case.obj["metadata"]["name"] = f"fz{len(created)}-{case.kind.lower()}"
        if not small_enough(case.obj):
            return
        verdict = server_verdict(api, namespace, case.obj)
        if verdict.accepted:
            real = server_verdict(api, namespace, case.obj, dry_run=False)
            assert real.accepted, real.message
            created[(case.kind, case.obj["metadata"]["name"])] = case

    try:
        create()
        assert len(created) >= OPERATOR_SAMPLE // 2, f"only {len(created)} objects created"
        deadline = time.monotonic() + SETTLE_S
        outcome: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline and len(outcome) < len(created):
            for key in created:
                obj = writes.objects.get(key)
                if key not in outcome and obj is not None and (got := settled(obj)):
                    outcome[key] = got
            assert operator.running(), f"the operator exited:\n{operator.log()[-4000:]}"
            time.sleep(1)
        unsettled = {
            k: (created[k].mutations, (writes.objects.get(k) or {}).get("status"))
            for k in created
            if k not in outcome
        }
        assert not unsettled, f"not Ready nor Stalled after {SETTLE_S:.0f}s: {unsettled}"
        failed = {k: created[k] for k, v in outcome.items() if v == "Stalled/ApplyFailed"}
        assert not failed, f"the API server refused a child of accepted input: {failed}"
        time.sleep(QUIET_S)
        end = time.monotonic()
        for key in created:
            versions = writes.versions.get(key, [])
            assert len(versions) <= MAX_WRITES, f"{key}: {len(versions)} writes (spinning?)"
            # One late write is a last transition (the autoscaler's first verdict on a model
            # whose pods have no metrics); a loop would write on every pass.
            late = [rv for t, rv in versions if t > end - QUIET_S + 2]
            assert len(late) <= 1, f"{key} still written {QUIET_S:.0f}s after it settled: {late}"
        assert operator.running(), f"the operator exited:\n{operator.log()[-4000:]}"
        assert "Traceback" not in operator.log(), operator.log()[-6000:]
        print("fuzz objects settled:", Counter(outcome.values()))
    finally:
        writes.stop()
