"""`smallfleet render FILE...`: print the children the operator would apply, without a cluster.

It runs the operator's own code path (parse, plan, render) on files, so a
model owner can review or diff exactly what a change will do before it
reaches Git or the cluster, and CI can keep the output as a golden file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

import yaml

from smallfleet.core.render.children import UNPLACED, render_children
from smallfleet.core.render.serverplan import ServerPlan, plan_for_model, plan_for_pipeline
from smallfleet.core.render.yamltext import dump
from smallfleet.core.spec import (
    ModelPipelineSpec,
    SmallModelSpec,
    SpecError,
    parse_model_pipeline,
    parse_small_model,
)
from smallfleet.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files; '-' reads stdin")
    defaults = Settings()
    parser.add_argument(
        "--triton-image", default=defaults.triton_image, help="default Triton image"
    )
    parser.add_argument(
        "--operator-image",
        default=defaults.operator_image,
        help="image of the init containers that fetch artifacts",
    )
    parser.add_argument(
        "--region",
        default=None,
        help="render as placed in this region (default: unplaced, no region affinity)",
    )


def read_documents(path: str) -> list[Any]:
    """Every YAML document of a file, or of standard input for "-"."""
    if path == "-":
        return list(yaml.safe_load_all(sys.stdin))
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def _regions(plan: ServerPlan, region: str | None) -> dict[str, int]:
    return {region or UNPLACED: plan.scaling.min_replicas}


def _owner(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = doc.get("metadata") or {}
    return doc if meta.get("uid") else None


def read_files(paths: Sequence[str], err: TextIO) -> list[Any] | None:
    """Every document of every file, or None after saying which file could not be read."""
    docs: list[Any] = []
    for path in paths:
        try:
            docs += read_documents(path)
        except (OSError, yaml.YAMLError) as e:
            print(f"{path}: {e}", file=err)
            return None
    return docs


def render_documents(
    docs: Iterable[Any], settings: Settings, region: str | None, err: TextIO
) -> tuple[list[dict[str, Any]], bool]:
    """Children of every SmallModel and ModelPipeline in `docs`; the flag says all parsed."""
    ok = True
    models: list[tuple[SmallModelSpec, Mapping[str, Any]]] = []
    pipelines: list[tuple[ModelPipelineSpec, Mapping[str, Any]]] = []
    for doc in docs:
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        try:
            if kind == "SmallModel":
                models.append((parse_small_model(doc), doc))
            elif kind == "ModelPipeline":
                pipelines.append((parse_model_pipeline(doc), doc))
            else:
                print(f"ignoring a document of kind {kind!r}", file=err)
        except SpecError as e:
            ok = False
            _report(e, err)
    out: list[dict[str, Any]] = []
    by_namespace: dict[str, dict[str, SmallModelSpec]] = {}
    for spec, doc in models:
        by_namespace.setdefault(spec.namespace, {})[spec.name] = spec
        plan = plan_for_model(spec, settings)
        out += render_children(plan, owner=_owner(doc), regions=_regions(plan, region))
    for pspec, doc in pipelines:
        try:
            plan = plan_for_pipeline(pspec, by_namespace.get(pspec.namespace, {}), settings)
        except SpecError as e:
            ok = False
            _report(e, err)
            continue
        out += render_children(plan, owner=_owner(doc), regions=_regions(plan, region))
    return out, ok


def _report(e: SpecError, err: TextIO) -> None:
    for fe in e.errors:
        print(f"{e.kind} {e.name}: {fe}", file=err)


def run(args: argparse.Namespace) -> int:
    settings = Settings(triton_image=args.triton_image, operator_image=args.operator_image)
    docs = read_files(args.files, sys.stderr)
    if docs is None:
        return 1
    objects, ok = render_documents(docs, settings, args.region, sys.stderr)
    if not ok:
        return 1
    sys.stdout.write(dump(objects))
    return 0
