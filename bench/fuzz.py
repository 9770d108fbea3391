"""Fuzzing at scale: near-valid manifests against a real kube-apiserver, and the operator on a sample.

The generator is tests/e2e/fuzzing.py's (the same as `make test`'s
tests/e2e/test_fuzz.py, which runs a few hundred examples). On a cluster of
its own (`sf-fuzz-bench`, deleted at the end), this sends
SMALLFLEET_FUZZ_EXAMPLES (default 10,000) SmallModels, ModelPipelines and
ServingPools to the API server with server-side dry-run and strict field
validation, asks the offline validator about each, and counts outcomes:
rejected by the schema, by CEL, or by both; accepted; and validator
disagreements (printed with their manifests). Then, with the operator
running, it really creates SMALLFLEET_FUZZ_LIVE (default 30) accepted
objects and counts how each settles: Ready, Stalled by reason, or (pools on
KWOK nodes, whose pods run no Triton) waiting by reason. Exit status 1 when
any verdict differs, an object does not settle within
SMALLFLEET_FUZZ_SETTLE_S (default 120) seconds, or the operator crashes.

`make bench-fuzz` runs it (`IN_MAKE_BENCH = False`: only when named).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import kubernetes
from hack.cluster import Cluster, install_keda_crds
from hypothesis import HealthCheck, Phase, given, settings
from tests.e2e.fuzzing import (
    Case,
    Writes,
    manifests,
    names_a_field,
    offline_verdict,
    server_verdict,
    settled,
    small_enough,
)

from _kube import fresh_cluster, install_chart, install_crds, log, start_operator, workdir

IN_MAKE_BENCH: Final = False
CLUSTER_NAME: Final = "sf-fuzz-bench"
EXAMPLES: Final = int(os.environ.get("SMALLFLEET_FUZZ_EXAMPLES", "10000"))
LIVE: Final = int(os.environ.get("SMALLFLEET_FUZZ_LIVE", "30"))
SETTLE_S: Final = float(os.environ.get("SMALLFLEET_FUZZ_SETTLE_S", "120"))
SEED: Final = int(os.environ.get("SMALLFLEET_FUZZ_SEED", "0"))
NAMESPACE: Final = "fuzz"


def _dry_run(api: Any) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    problems: list[str] = []
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(manifests())
    def one(case: Case) -> None:
        server = server_verdict(api, NAMESPACE, case.obj)
        offline = offline_verdict(case.obj, NAMESPACE)
        outcome = "accepted" if server.accepted else f"rejected-by-{server.layer}"
        counts[f"{case.kind}\t{outcome}"] += 1
        counts["total"] += 1
        if server.accepted != offline.accepted or offline.layer == "crash":
            counts[f"{case.kind}\tvalidator disagrees"] += 1
            problems.append(
                f"server {'accepts' if server.accepted else 'refuses'} ({server.message[:300]}); "
                f"offline {offline.layer or ('accepts' if offline.accepted else 'refuses')} "
                f"({offline.message[:300]}); mutations {case.mutations}\n    "
                f"{json.dumps(case.obj, ensure_ascii=True)}"
            )
        if not names_a_field(server):
            counts[f"{case.kind}\trefusal names no field"] += 1
            problems.append(f"refusal names no field: {server.message[:300]}")
        if counts["total"] % 1000 == 0:
            log(f"{counts['total']} examples in {time.monotonic() - started:.0f}s")

    from hypothesis import seed

    seed(SEED)(one)()
    counts["seconds"] = round(time.monotonic() - started)
    return counts, problems


def _live(cluster: Cluster, api: Any, work: Path) -> tuple[Counter[str], list[str]]:
    install_keda_crds(cluster)
    chart = install_chart(cluster)
    operator = start_operator(cluster, chart, work / "operator", namespace=NAMESPACE)
    writes = Writes(api, NAMESPACE)
    created: dict[tuple[str, str], Case] = {}
    problems: list[str] = []

    @settings(
        max_examples=LIVE * 8,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(manifests(max_mutations=2))
    def one(case: Case) -> None:
        if len(created) >= LIVE or not isinstance(case.obj.get("spec"), dict):
            return
        case.obj["metadata"]["name"] = f"fz{len(created)}-{case.kind.lower()}"
        if small_enough(case.obj) and server_verdict(api, NAMESPACE, case.obj).accepted:
            real = server_verdict(api, NAMESPACE, case.obj, dry_run=False)
            if real.accepted:
                created[(case.kind, case.obj["metadata"]["name"])] = case

    counts: Counter[str] = Counter()
    try:
        from hypothesis import seed

        seed(SEED)(one)()
        deadline = time.monotonic() + SETTLE_S
        outcome: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline and len(outcome) < len(created):
            for key in created:
                obj = writes.objects.get(key)
                if key not in outcome and obj is not None and (got := settled(obj)):
                    outcome[key] = got
            time.sleep(1)
        time.sleep(10)
        for key in created:
            kind = key[0]
            counts[f"{kind}\taccepted->{outcome.get(key, 'unsettled')}"] += 1
            counts[f"{kind}\tstatus writes (max)"] = max(
                counts[f"{kind}\tstatus writes (max)"], len(writes.versions.get(key, []))
            )
            if key not in outcome:
                problems.append(f"{key} never settled: {created[key].mutations}")
        if not operator.running():
            problems.append("the operator exited")
        if "Traceback" in operator.log():
            problems.append("Traceback in the operator log")
    finally:
        writes.stop()
        operator.stop()
    return counts, problems


def _table(title: str, counts: Counter[str]) -> None:
    print(f"\n{title}")
    print(f"  {'kind':<14} {'outcome':<44} {'count':>7}")
    for key in sorted(k for k in counts if "\t" in k):
        kind, outcome = key.split("\t")
        print(f"  {kind:<14} {outcome:<44} {counts[key]:>7}")


def main() -> int:
    with workdir("sf-fuzz-") as work, fresh_cluster(CLUSTER_NAME, work) as cluster:
        install_crds(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        api = kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        )
        log(f"dry-run: {EXAMPLES} examples (seed {SEED})")
        dry, problems = _dry_run(api)
        _table(f"Dry-run verdicts: {dry['total']} examples in {dry['seconds']} s", dry)
        log(f"live: up to {LIVE} accepted objects with the operator running")
        live, live_problems = _live(cluster, api, work)
        _table(f"Accepted objects created with the operator running: {len(live) and sum(v for k, v in live.items() if 'accepted->' in k)}", live)  # fmt: skip
    for p in problems + live_problems:
        print(f"  ! {p}")
    print(
        f"\nvalidator disagreements: {sum(v for k, v in dry.items() if 'disagrees' in k)}; "
        f"problems: {len(problems) + len(live_problems)}"
    )
    return 1 if problems or live_problems else 0


if __name__ == "__main__":
    sys.exit(main())
