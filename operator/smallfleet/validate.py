"""`smallfleet validate FILE...`: check manifests offline, before they reach a cluster.

A model owner (or a CI job on a GitOps repository) should learn that a
manifest is wrong with the file and line to fix, not from a Stalled condition
after the merge. This runs the same checks as the API server (the CRD's
schema with its defaults, and the CEL rules, through `smallfleet.core.spec`), plus
what only a whole set of manifests can show: that each pipeline's steps name
SmallModels that exist and whose tensors fit together.

Output, one line per problem: `FILE:LINE: Kind/name: spec.path: message`.
Exit status 0 when every document is valid (with a one-line summary), 1
otherwise, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from smallfleet.core.pools.spec import SERVING_POOL, parse_serving_pool
from smallfleet.core.spec import (
    API_GROUP,
    MODEL_PIPELINE,
    SMALL_MODEL,
    FieldError,
    ModelPipelineSpec,
    SmallModelSpec,
    SpecError,
    parse_model_pipeline,
    parse_small_model,
    validate_pipeline_refs,
)

# libyaml's loader keeps line marks too, and scans YAML about ten times faster.
_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SEGMENT: Final = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")
_MISSING_MODEL: Final = re.compile(r"^SmallModel \S+ not found in namespace ")


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with the node tree that knows its line numbers."""

    file: str
    index: int
    data: Any
    node: yaml.Node


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    what: str  # "Kind/name", or "" for a problem outside any resource
    error: FieldError

    def __str__(self) -> str:
        what = f"{self.what}: " if self.what else ""
        return f"{self.file}:{self.line}: {what}{self.error.path}: {self.error.message}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="YAML files, or directories to search for *.yaml and *.yml ('-' reads stdin)",
    )
    parser.add_argument(
        "--external-models",
        action="store_true",
        help="allow pipeline steps to name SmallModels that are not in the given files "
        "(they exist in the cluster already)",
    )


def documents(file: str, text: str) -> Iterator[Document]:
    """Every non-empty document of a YAML stream, with its data and node tree."""
    loader = _LOADER(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node) if node is not None else None
            if node is not None and data is not None:
                yield Document(file, index, data, node)
            index += 1
    finally:
        loader.dispose()


def path_line(node: yaml.Node, path: str) -> int:
    """The 1-based line of the field `path` (as in spec.steps[1].inputs[0].from).

    A field that is missing maps to the line of the nearest enclosing field
    that exists, which is where it would have to be added.
    """
    line = node.start_mark.line + 1
    current: yaml.Node | None = node
    for m in _SEGMENT.finditer(path):
        key, index = m.group(1), m.group(2)
        if current is None:
            break
        nxt: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            wanted = key if key is not None else index
            for k, v in current.value:
                if isinstance(k, yaml.ScalarNode) and k.value == wanted:
                    line = k.start_mark.line + 1
                    nxt = v
                    break
        elif isinstance(current, yaml.SequenceNode) and index is not None and index.isdigit():
            i = int(index)
            if i < len(current.value):
                nxt = current.value[i]
                line = nxt.start_mark.line + 1
        current = nxt
    return line


def _what(data: Any) -> str:
    kind = data.get("kind", "?")
    meta = data.get("metadata")
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    return f"{kind}/{name}"


def validate_documents(
    docs: Sequence[Document], *, external_models: bool = False
) -> tuple[list[Problem], dict[str, int]]:
    """Check every smallfleet resource among `docs`; return the problems and counts by kind."""
    problems: list[Problem] = []
    counts = {SMALL_MODEL: 0, MODEL_PIPELINE: 0, SERVING_POOL: 0, "other": 0}
    models: dict[tuple[str, str], SmallModelSpec] = {}
    pipelines: list[tuple[Document, ModelPipelineSpec]] = []
    seen: dict[tuple[str, str, str], str] = {}

    def report(doc: Document, errors: Sequence[FieldError]) -> None:
        for e in errors:
            line = path_line(doc.node, e.path)
            problems.append(Problem(doc.file, line, _what(doc.data), replace(e, line=line)))

    for doc in docs:
        data = doc.data
        if not isinstance(data, dict) or not str(data.get("apiVersion", "")).startswith(
            f"{API_GROUP}/"
        ):
            counts["other"] += 1
            continue
        kind = data.get("kind")
        if kind not in (SMALL_MODEL, MODEL_PIPELINE, SERVING_POOL):
            report(
                doc,
                [
                    FieldError(
                        "kind",
                        f"Unsupported value: {kind!r}: must be SmallModel, ModelPipeline or "
                        "ServingPool",
                    )
                ],
            )
            continue
        counts[kind] += 1
        try:
            if kind == SERVING_POOL:
                pool = parse_serving_pool(data)
                key = (kind, pool.namespace or "default", pool.name)
            elif kind == SMALL_MODEL:
                model = parse_small_model(data)
                key = (kind, model.namespace, model.name)
                models[(model.namespace, model.name)] = model
            else:
                pipeline = parse_model_pipeline(data)
                key = (kind, pipeline.namespace, pipeline.name)
                pipelines.append((doc, pipeline))
        except SpecError as err:
            report(doc, err.errors)
            continue
        where = f"{doc.file}:{doc.node.start_mark.line + 1}"
        if key in seen:
            report(
                doc,
                [
                    FieldError(
                        "metadata.name", f"{kind} {key[2]} is defined twice (first at {seen[key]})"
                    )
                ],
            )
        seen.setdefault(key, where)

    for doc, pipeline in pipelines:
        in_namespace = {name: m for (ns, name), m in models.items() if ns == pipeline.namespace}
        errors = validate_pipeline_refs(pipeline, in_namespace)
        if external_models:
            errors = [e for e in errors if not _MISSING_MODEL.match(e.message)]
        report(doc, errors)
    return problems, counts


def expand(paths: Sequence[str]) -> list[str]:
    """Files as given; a directory stands for its *.yaml and *.yml files, recursively, sorted."""
    out: list[str] = []
    for path in paths:
        p = Path(path)
        if path != "-" and p.is_dir():
            out += sorted(
                str(f) for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()
            )
        else:
            out.append(path)
    return out


def _read(file: str, stdin: TextIO) -> str:
    return stdin.read() if file == "-" else Path(file).read_text()


def run(args: argparse.Namespace) -> int:
    return check_files(args.files, external_models=args.external_models)


def check_files(
    files: Sequence[str],
    *,
    external_models: bool = False,
    out: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    out = sys.stdout if out is None else out
    docs: list[Document] = []
    problems: list[Problem] = []
    files = expand(files)
    for file in files:
        shown = "<stdin>" if file == "-" else file
        try:
            text = _read(file, sys.stdin if stdin is None else stdin)
        except OSError as err:
            print(f"{shown}: cannot read: {err.strerror or err}", file=out)
            return 2
        try:
            docs.extend(documents(shown, text))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(err, "problem", None) or str(err)
            problems.append(Problem(shown, line, "", FieldError("yaml", str(problem))))
    found, counts = validate_documents(docs, external_models=external_models)
    problems.extend(found)
    order = {("<stdin>" if f == "-" else f): i for i, f in enumerate(files)}
    problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
    for p in problems:
        print(p, file=out)
    if problems:
        return 1
    print(
        f"OK: {counts[SMALL_MODEL]} SmallModel(s), {counts[MODEL_PIPELINE]} ModelPipeline(s)"
        + (f", {counts[SERVING_POOL]} ServingPool(s)" if counts[SERVING_POOL] else "")
        + f" valid in {len(files)} file(s)"
        + (f"; {counts['other']} other document(s) not checked" if counts["other"] else ""),
        file=out,
    )
    return 0
