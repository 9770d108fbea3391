"""`smallfleet capacity-advice FILE...`: where one more GPU would save the fleet the most carbon.

A platform team buying capacity wants to know where clean GPUs would be
used: the answer is the shadow price of each region's GPU capacity in the
same optimisation the operator's placer solves for the fleet
(`core.placement.fleet.capacity_advice`), in grams CO2e per week per added
GPU of each product. This command computes it offline from what `kubectl`
prints, so it needs no access beyond reading:

    kubectl get nodes,pods,smallmodels,modelpipelines -A -o yaml > fleet.yaml
    smallfleet capacity-advice fleet.yaml --intensity eu-west-3=60 --intensity eu-central-1=450

Intensities not given come from the static annual-average table. A running
operator exports the same figures, at its live signal, as the gauge
`smallfleet_capacity_advice_grams_per_week{region,gpu_product}`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from smallfleet.core.placement import CarbonReading
from smallfleet.core.placement.evaluate import FleetEntry, Signals, fleet_entry, joint_plan
from smallfleet.core.render.cli import read_files
from smallfleet.core.render.serverplan import plan_for_model, plan_for_pipeline
from smallfleet.core.spec import SmallModelSpec, SpecError, parse_model_pipeline, parse_small_model
from smallfleet.providers import StaticProvider, default_region_table
from smallfleet.settings import Settings, from_env

NODE_REGION_LABEL = "topology.kubernetes.io/region"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="YAML or JSON with Nodes, Pods, SmallModels and ModelPipelines "
        "(kubectl get ... -o yaml; lists are read item by item); '-' reads stdin",
    )
    parser.add_argument(
        "--intensity",
        action="append",
        default=[],
        metavar="REGION=G",
        help="grid intensity of a region in gCO2eq/kWh (repeat); others: the static annual table",
    )


def _flatten(docs: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        if isinstance(doc.get("items"), list):
            yield from _flatten(doc["items"])
        else:
            yield doc


def _intensities(
    values: Sequence[str], regions: Sequence[str], now: dt.datetime
) -> dict[str, CarbonReading]:
    table = default_region_table()
    static = {
        r.region: r for r in StaticProvider(regions_table=table, now=lambda: now).fetch(regions)
    }
    out = {r: x for r, x in static.items() if x.usable}
    for item in values:
        region, sep, grams = item.partition("=")
        if not sep:
            raise ValueError(f"--intensity {item!r}: expected REGION=G")
        value = float(grams)
        if value <= 0:
            raise ValueError(f"--intensity {item!r}: intensity must be positive")
        out[region] = CarbonReading(
            zone=table.zone(region) or region,
            region=region,
            start=now,
            duration=dt.timedelta(hours=1),
            intensity=value,
            kind="average",
            scope="lifecycle",
            forecast=False,
            provider="given",
            fetched_at=now,
        )
    return out


def advise(
    docs: Iterable[Any], intensities: Sequence[str], settings: Settings, out: TextIO, err: TextIO
) -> int:
    """Print the advice for the fleet and cluster in `docs`; the exit code says all parsed."""
    ok = True
    now = dt.datetime.now(dt.UTC)
    nodes: list[Mapping[str, Any]] = []
    pods: list[Mapping[str, Any]] = []
    models: list[tuple[SmallModelSpec, Mapping[str, Any]]] = []
    pipelines: list[Mapping[str, Any]] = []
    for doc in _flatten(docs):
        kind = doc.get("kind")
        try:
            if kind == "Node":
                nodes.append(doc)
            elif kind == "Pod":
                pods.append(doc)
            elif kind == "SmallModel":
                models.append((parse_small_model(doc), doc))
            elif kind == "ModelPipeline":
                pipelines.append(doc)
        except SpecError as e:
            ok = False
            for fe in e.errors:
                print(f"{e.kind} {e.name}: {fe}", file=err)
    by_namespace: dict[str, dict[str, SmallModelSpec]] = {}
    for spec, _ in models:
        by_namespace.setdefault(spec.namespace, {})[spec.name] = spec
    entries: list[FleetEntry] = []
    for spec, doc in models:
        if ((doc.get("spec") or {}).get("serving") or {}).get("pool"):
            continue  # its pool's servers, not placement, decide where it runs
        plan = plan_for_model(spec, settings)
        entries.append(fleet_entry(("SmallModel", spec.namespace, spec.name), plan, doc, (), now))
    for doc in pipelines:
        try:
            pspec = parse_model_pipeline(doc)
            plan = plan_for_pipeline(pspec, by_namespace.get(pspec.namespace, {}), settings)
        except SpecError as e:
            ok = False
            for fe in e.errors:
                print(f"{e.kind} {e.name}: {fe}", file=err)
            continue
        entries.append(
            fleet_entry(("ModelPipeline", pspec.namespace, pspec.name), plan, doc, (), now)
        )
    regions = sorted(
        {
            str(r)
            for n in nodes
            if (r := ((n.get("metadata") or {}).get("labels") or {}).get(NODE_REGION_LABEL))
        }
    )
    try:
        readings = _intensities(intensities, regions, now)
    except ValueError as e:
        print(e, file=err)
        return 2
    gpu_pods = [p for p in pods if _holds_gpus(p)]
    fleet = joint_plan(
        entries, nodes, gpu_pods, Signals(readings, default_region_table(), now), settings, now
    )
    print(
        f"{len(entries)} placed models, {len(nodes)} nodes in {len(regions)} regions; "
        "gCO2e per week one more GPU would save (the fleet optimum's shadow prices):",
        file=out,
    )
    print(
        f"{'REGION':20s} {'GPU PRODUCT':28s} {'g/kWh':>7s} {'kgCO2e/week per GPU':>20s}", file=out
    )
    for a in fleet.advice:
        reading = readings.get(a.region)
        g = f"{reading.intensity:.0f}" if reading and reading.intensity else "-"
        print(
            f"{a.region:20s} {a.gpu_product:28s} {g:>7s} {a.grams_per_week / 1000:20.2f}", file=out
        )
    if not fleet.advice:
        print("no GPU nodes with a carbon signal: nothing to advise", file=out)
    return 0 if ok else 1


def _holds_gpus(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        if "nvidia.com/gpu" in (res.get("requests") or {}) or "nvidia.com/gpu" in (
            res.get("limits") or {}
        ):
            return True
    return False


def run(args: argparse.Namespace) -> int:
    docs = read_files(args.files, sys.stderr)
    if docs is None:
        return 1
    return advise(docs, args.intensity, from_env(), sys.stdout, sys.stderr)
