"""Near-valid smallfleet manifests for fuzzing a real API server, and the two verdicts compared.

`manifests()` is a hypothesis strategy of SmallModel, ModelPipeline and
ServingPool resources: a valid resource (from the examples, with valid
variations) with up to three mutations. Mutations come from the CRDs' own
schemas (`crd_schemas`): for a field picked at random, a value at or just past
its bounds, of the wrong type, an integral float, null, a string with a
trailing newline or non-ASCII digits, a huge or unicode string, an unknown
field, a missing required field; plus targeted pairs that break the CEL
rules (tensorrt on CPU, minReplicas above maxReplicas, a step reading a later
step...). `spec_mutations()` mutates the spec of a live object.

`server_verdict` asks the API server (server-side dry-run, strict field
validation, the body as kubectl would send it from YAML) and `offline_verdict`
asks the typed parsers that `smallfleet validate` and the operator use; the
e2e test `test_fuzz.py` and `bench/fuzz.py` compare the two.

Not a test module itself (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException
from tests.e2e.cluster import condition

from smallfleet.core.crd_schemas import SCHEMAS
from smallfleet.core.pools.spec import parse_serving_pool
from smallfleet.core.spec import SpecError, parse_model_pipeline, parse_small_model

ROOT: Final = Path(__file__).resolve().parents[2]
GROUP: Final = "serving.smallfleet.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
PLURALS: Final = {
    "SmallModel": "smallmodels",
    "ModelPipeline": "modelpipelines",
    "ServingPool": "servingpools",
}
PARSERS: Final[dict[str, Callable[[Mapping[str, Any]], Any]]] = {
    "SmallModel": parse_small_model,
    "ModelPipeline": parse_model_pipeline,
    "ServingPool": parse_serving_pool,
}
REGIONS: Final = ("eu-north-1", "eu-west-1", "us-east-1")


# --------------------------------------------------------------------------- valid bases


def _examples() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in PLURALS}
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in found:
                doc.get("metadata", {}).pop("namespace", None)
                found[doc["kind"]].append(doc)
    found["ServingPool"] += [
        {
            "apiVersion": API_VERSION,
            "kind": "ServingPool",
            "metadata": {"name": "shared"},
            "spec": {},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "ServingPool",
            "metadata": {"name": "gpu-pool"},
            "spec": {
                "minServers": 1,
                "maxServers": 2,
                "modelsPerServer": 20,
                "backends": ["onnx", "python"],
                "server": {"gpus": 1, "gpuProduct": "NVIDIA-L4", "gpuMemory": "20Gi"},
                "region": "eu-west-1",
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
            },
        },
    ]
    return found


EXAMPLES: Final = _examples()


# --------------------------------------------------------------------------- values

# Quantities, right and wrong, as Kubernetes' parser and the CEL isQuantity see them.
QUANTITIES: Final = (
    "1", "2", "500m", "0.5", ".5", "5.", "+1", "1e3", "1E3", "1e-3", "2Gi", "1Ki", "1k",
    "1M", "1n", "1u", "0.0000000001", "1e999", "0", "0.0", "0m", "-1", "1.5.5", "1ki",
    "1KI", "1 Gi", " 1", "1Gi\n", "\u0661", "\u00b2", "1Gi ", "", "Gi", "1e", "1g", "0x10", "1_000",
)  # fmt: skip
URIS: Final = (
    "https://models.example.com/m.onnx", "http://h/x", "http://", "https:///x", "https://h",
    "s3://bucket/key", "s3://bucket", "s3://bucket/", "s3:///key", "gs://b/k/x", "pvc://c/p",
    "pvc://claim", "ftp://h/x", "file:///x", "HTTPS://h/x", "https://h/x\n", "s3://b/\n",
    "https://\n/x", " https://h/x", "https://h/" + "x" * 2040, "https://ü.example/ü",
)  # fmt: skip
DIGESTS: Final = (
    "sha256:" + "a" * 64, "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 65,
    "sha512:" + "a" * 64, "sha256:" + "a" * 64 + "\n", "sha256:" + "g" * 64, "a" * 64,
    "sha256:" + "\u0663" * 64,
)  # fmt: skip
NAMES: Final = (
    "a", "m1", "a-b", "x" * 40, "x" * 41, "A", "1a", "-a", "a-", "a.b", "a_b", "é", "a\n",
    "x" * 63, "x" * 254,
)  # fmt: skip
STRINGS: Final = (
    "", " ", "x", "é", "😀", "\n", "a\nb", "\u0663", "true", "null", "1", "a" * 129, "\u0000",
    "\u200b", "a/b", "a.b", "*", "-1",
)  # fmt: skip
SPECIAL_BY_KEY: Final[dict[str, tuple[Any, ...]]] = {
    "cpu": (*QUANTITIES, 1, 0, -1, 2.0, 1.5, 10**20),
    "memory": (*QUANTITIES, 1, 0, 2**31, 2.0),
    "gpuMemory": QUANTITIES,
    "uri": URIS,
    "digest": DIGESTS,
    "from": (
        "question",
        "embed.embedding",
        "rag-embed.embedding",
        "nope",
        "nope.x",
        "a.b.c",
        ".x",
        "x.",
        "rag-generate.answer",
        "rag-rerank.passages",
        "query",
        "Q.x",
    ),
    "model": ("rag-embed", "rag-rerank", "rag-generate", "missing-model", "A", "x" * 41),
    "region": (*REGIONS, "mars-1", "", "EU"),
    "regions": (list(REGIONS), ["eu-west-1"], ["mars-1"], [], ["EU"], ["eu-west-1"] * 2),
    "gpuProduct": ("NVIDIA-L4", "NVIDIA-A100", "NVIDIA-B200", "l4\n", "-x", "x" * 64),
}


def _ints(s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    lo, hi = s.get("minimum", -(2**31)), s.get("maximum", 2**31)
    lo, hi = int(lo), int(hi)
    edges = [lo, hi, lo - 1, hi + 1, 0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64]
    return st.one_of(
        st.integers(lo, hi),
        st.sampled_from(edges),
        st.integers(lo, hi).map(float),  # 2.0: YAML readers and kubectl see an integer
        st.sampled_from([0.5, 1.5, float(hi) + 0.5, 1e30]),
    )


def _numbers(s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    lo, hi = float(s.get("minimum", -1e9)), float(s.get("maximum", 1e9))
    return st.one_of(
        st.floats(lo, hi, allow_nan=False),
        st.integers(int(lo), int(hi)),
        st.sampled_from([lo, hi, lo - 0.001, hi + 0.001, -0.0, 1e308, -1e308, 5e-324]),
    )


def _strings(s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    n = int(s.get("maxLength", 64))
    options: list[st.SearchStrategy[Any]] = [
        st.sampled_from(STRINGS),
        st.text(max_size=12),
        st.sampled_from(["a" * n, "a" * (n + 1), "é" * n, "😀" * n, "😀" * (n + 1)]),
    ]
    if "enum" in s:
        enum = [e for e in s["enum"] if isinstance(e, str)]
        options.append(st.sampled_from(enum))
        options.append(st.sampled_from(enum).map(str.upper))
        options.append(st.sampled_from(enum).map(lambda e: e + "\n"))
    if "pattern" in s:
        valid = st.from_regex(s["pattern"], fullmatch=True).filter(lambda v: len(v) <= n)
        options += [valid, valid, valid.map(lambda v: v + "\n"), valid.map(lambda v: v + "x" * n)]
    return st.one_of(*options)


def _wrong_type(s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from([None, True, 0, 1, 1.5, "1", "x", [], [1], {}, {"a": "b"}])


def valid_value(s: Mapping[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value the structural schema `s` accepts (CEL rules aside)."""
    if "enum" in s:
        return st.sampled_from(list(s["enum"]))
    if s.get("x-kubernetes-int-or-string"):
        return st.sampled_from(["1", "500m", "2Gi", 1, 2])
    type_ = s.get("type")
    if type_ == "integer":
        return st.integers(int(s.get("minimum", 0)), int(s.get("maximum", 100)))
    if type_ == "number":
        return st.floats(float(s.get("minimum", 0)), float(s.get("maximum", 100)), allow_nan=False)
    if type_ == "boolean":
        return st.booleans()
    if type_ == "string":
        lo, hi = int(s.get("minLength", 0)), min(int(s.get("maxLength", 16)), 16)
        if "pattern" in s:
            return st.from_regex(s["pattern"], fullmatch=True).filter(
                lambda v: len(v) <= s.get("maxLength", 10**9) and len(v) >= lo and v.isascii()
            )
        return st.text(
            "abcxyz-_.0123456789", min_size=max(lo, 1 if lo else 0), max_size=max(hi, lo)
        )
    if type_ == "array":
        lo = int(s.get("minItems", 0))
        hi = max(lo, min(int(s.get("maxItems", 3)), 3))
        if depth > 3:
            return st.just([])
        items = valid_value(s.get("items", {}), depth + 1)
        unique = s.get("x-kubernetes-list-type") in ("set", "map")
        key: Callable[[Any], Any] = json.dumps
        if s.get("x-kubernetes-list-type") == "map":
            keys = s.get("x-kubernetes-list-map-keys", [])

            def key(item: Any) -> Any:
                return json.dumps([item.get(k) for k in keys]) if isinstance(item, dict) else 0

        return st.lists(items, min_size=lo, max_size=hi, unique_by=key if unique else None)
    if type_ == "object" or "properties" in s:
        props: Mapping[str, Any] = s.get("properties", {})
        if depth > 3:
            return st.just({})
        required = {
            k: valid_value(props[k], depth + 1) for k in s.get("required", []) if k in props
        }
        optional = {k: valid_value(v, depth + 1) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(required, optional=optional)
    return st.just({})


def mutated_value(key: str, s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """A value for a field of schema `s` (named `key`) near or past what the schema allows."""
    options: list[st.SearchStrategy[Any]] = [valid_value(s), _wrong_type(s)]
    if key in SPECIAL_BY_KEY:
        options += [st.sampled_from(SPECIAL_BY_KEY[key])] * 3
    type_ = s.get("type")
    if type_ == "integer":
        options += [_ints(s)] * 3
    elif type_ == "number":
        options += [_numbers(s)] * 2
    elif type_ == "string":
        options += [_strings(s)] * 3
    elif type_ == "array":
        item = valid_value(s.get("items", {}))
        n = int(s.get("maxItems", 4))
        options += [
            st.just([]),
            st.lists(item, min_size=n + 1, max_size=n + 1),
            item.map(lambda i: [i, i]),
            st.lists(mutated_value(key, s.get("items", {})), min_size=1, max_size=2),
        ]
    elif type_ == "object" and isinstance(s.get("additionalProperties"), Mapping):
        n = int(s.get("maxProperties", 4))
        value = valid_value(s["additionalProperties"])
        keys = st.one_of(
            st.sampled_from(
                [
                    "a",
                    "A_1",
                    "_x",
                    "1a",
                    "a-b",
                    "a\n",
                    "é",
                    "x" * 129,
                    "app.kubernetes.io/name",
                    "serving.smallfleet.io/x",
                    "example.com/k",
                    "k8s.io/" + "x" * 64,
                    "",
                    "eu-west-1",
                    "mars-1",
                    "EU",
                    "a/b/c",
                ]
            ),
            st.text(max_size=8),
        )
        options += [
            st.dictionaries(keys, value, min_size=1, max_size=3),
            st.dictionaries(keys, st.one_of(value, st.none()), min_size=1, max_size=2),
            st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), value, min_size=n + 1, max_size=n + 1),
        ]  # fmt: skip
    return st.one_of(*options)


# --------------------------------------------------------------------------- paths

Path_ = tuple[str | int, ...]


def _child_schema(s: Mapping[str, Any], key: str | int) -> Mapping[str, Any] | None:
    if isinstance(key, int):
        items = s.get("items")
        return items if isinstance(items, Mapping) else None
    props = s.get("properties", {})
    if key in props:
        sub: Mapping[str, Any] = props[key]
        return sub
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def field_paths(schema: Mapping[str, Any], value: Any, path: Path_ = ()) -> Iterable[Path_]:
    """Every path into `value` the schema describes, and each absent property of its objects."""
    if isinstance(value, dict):
        for key in schema.get("properties", {}):
            yield (*path, key)
            sub = _child_schema(schema, key)
            if key in value and sub is not None:
                yield from field_paths(sub, value[key], (*path, key))
        if isinstance(schema.get("additionalProperties"), Mapping):
            for key in value:
                yield (*path, key)
    elif isinstance(value, list):
        sub = schema.get("items")
        for i, item in enumerate(value[:4]):
            yield (*path, i)
            if isinstance(sub, Mapping):
                yield from field_paths(sub, item, (*path, i))


def schema_at(schema: Mapping[str, Any], path: Path_) -> Mapping[str, Any]:
    s: Mapping[str, Any] | None = schema
    for key in path:
        s = _child_schema(s, key) if s is not None else None
    return s or {}


def _parent(obj: Any, path: Path_) -> Any:
    for key in path[:-1]:
        if isinstance(obj, dict):
            obj = obj.setdefault(key, {}) if isinstance(key, str) else None
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def set_path(obj: Any, path: Path_, value: Any) -> None:
    parent = _parent(obj, path)
    key = path[-1]
    if (isinstance(parent, dict) and isinstance(key, str)) or (
        isinstance(parent, list) and isinstance(key, int) and key < len(parent)
    ):
        parent[key] = value


def delete_path(obj: Any, path: Path_) -> None:
    parent = _parent(obj, path)
    key = path[-1]
    if isinstance(parent, dict):
        parent.pop(key, None)  # type: ignore[call-overload]
    elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        del parent[key]


# --------------------------------------------------------------------------- mutations

Mutation = Callable[[dict[str, Any]], None]
GPU0: Final = (("resources", "gpus"), 0)

# Pairs (or triples) of writes that break one CEL rule, by kind. Paths are under spec.
# fmt: off
RULE_BREAKERS: Final[dict[str, list[list[tuple[Path_, Any]]]]] = {
    "SmallModel": [
        [GPU0, (("model", "format"), "tensorrt")],
        [GPU0, (("scaling", "metric"), "gpuUtilization")],
        [GPU0, (("resources", "gpuProduct"), "NVIDIA-L4")],
        [(("scaling", "minReplicas"), 5), (("scaling", "maxReplicas"), 2)],
        [(("scaling", "minReplicas"), 0), (("scaling", "mode"), "operator")],
        [(("scaling", "minReplicas"), 0), (("scaling", "mode"), "keda")],
        [(("scaling", "metric"), "gpuUtilization"), (("scaling", "target"), 100.5)],
        [(("scaling", "carbonCap"), {"aboveIntensity": 300, "maxReplicas": 9})],
        [(("scaling", "carbonCap"), {"aboveIntensity": 300, "maxReplicas": 1}), (("scaling", "mode"), "none")],
        [(("placement", "policy"), "pinned"), (("placement", "regions"), [])],
        [(("placement", "spread"), 3), (("placement", "regions"), ["eu-west-1"])],
        [(("placement", "latencyPenalty"), {"us-east-1": 5}), (("placement", "regions"), ["eu-west-1"])],
        [(("triton", "maxBatchSize"), 0), (("triton", "dynamicBatching"), {"enabled": True})],
        [(("triton", "maxBatchSize"), 0), (("triton", "dynamicBatching"), {"enabled": False})],
        [(("triton", "maxBatchSize"), 4), (("triton", "dynamicBatching"), {"preferredBatchSizes": [2, 8]})],
        [(("triton", "outputs"), [{"name": "y", "datatype": "FP32", "dims": [0]}])],
        [(("triton", "parameters"), {"bad-key": "v"})],
        [(("pod", "labels"), {"app.kubernetes.io/name": "x"})],
        [(("pod", "annotations"), {"serving.smallfleet.io/digest": "x"})],
        [(("pod", "env"), [{"name": "HOME", "value": "/"}])],
        [(("pod", "env"), [{"name": "SMALLFLEET_X", "value": "1"}])],
        [(("pod", "tolerations"), [{"operator": "Exists", "value": "v"}])],
        [(("pod", "tolerations"), [{"value": "v"}])],
        [(("pod", "tolerations"), [{"key": "k", "tolerationSeconds": 5}])],
        [(("pod", "nodeSelector"), {"bad key!": "v"})],
        [(("serving", "pool"), "shared")],
    ],
    "ModelPipeline": [
        [(("steps", 0, "inputs", 0, "from"), "nope")],
        [(("steps", 0, "inputs", 0, "from"), "rerank.passages")],
        [(("outputs", 0, "from"), "missing.answer")],
        [(("inputs",), [])],
        [(("steps",), [])],
        [(("steps", 1, "name"), "embed")],
        [(("resources",), {"gpus": 0}), (("scaling", "metric"), "gpuUtilization")],
        [(("outputs", 0, "name"), "question")],
        [(("inputs", 0, "name"), "unused"), (("steps", 0, "inputs", 0, "from"), "question")],
        [(("scaling", "minReplicas"), 3), (("scaling", "maxReplicas"), 1)],
    ],
    "ServingPool": [
        [(("minServers",), 5), (("maxServers",), 2)],
        [(("server", "gpus"), 0), (("server", "gpuProduct"), "NVIDIA-L4")],
        [(("server", "gpus"), 0), (("server", "gpuMemory"), "20Gi")],
        [(("minServers",), 0), (("maxServers",), 1)],
    ],
}
# fmt: on


@st.composite
def _field_mutation(draw: st.DrawFn, kind: str, obj: dict[str, Any]) -> str:
    schema = SCHEMAS[kind]["properties"]["spec"]
    paths = sorted(field_paths(schema, obj["spec"]), key=repr)
    path = draw(st.sampled_from(paths))
    sub = schema_at(schema, path)
    how = draw(st.sampled_from(["set", "set", "set", "set", "delete", "unknown", "null"]))
    if how == "delete":
        delete_path(obj["spec"], path)
    elif how == "null":
        set_path(obj["spec"], path, None)
    elif how == "unknown":
        target = _parent(obj["spec"], (*path, "x"))
        if isinstance(target, dict) and sub.get("type") == "object" and "properties" in sub:
            target[draw(st.sampled_from(["replicas", "Gpus", "x", "é"]))] = 1
        else:
            how = "unknown-skipped"
    else:
        key = next((k for k in reversed(path) if isinstance(k, str)), "")
        set_path(obj["spec"], path, draw(mutated_value(key, sub)))
    return f"{how} spec.{'.'.join(map(str, path))}"


@st.composite
def _rule_breaker(draw: st.DrawFn, kind: str, obj: dict[str, Any]) -> str:
    writes = draw(st.sampled_from(RULE_BREAKERS[kind]))
    for path, value in writes:
        set_path(obj["spec"], path, copy.deepcopy(value))
    return "rule " + ", ".join(f"spec.{'.'.join(map(str, p))}={v!r}" for p, v in writes)


@st.composite
def _envelope_mutation(draw: st.DrawFn, obj: dict[str, Any]) -> str:
    what = draw(st.sampled_from(["name", "name", "no-spec", "spec-type"]))
    if what == "name":
        obj["metadata"]["name"] = draw(
            st.one_of(
                st.sampled_from(NAMES), st.from_regex(r"[a-z][-a-z0-9]{0,50}", fullmatch=True)
            )
        )
    elif what == "no-spec":
        obj.pop("spec", None)
    else:
        obj["spec"] = draw(st.sampled_from([[], "x", 1]))
    return f"envelope {what}"


@st.composite
def mutate(draw: st.DrawFn, obj: dict[str, Any], max_mutations: int = 3) -> list[str]:
    """Apply 0..max_mutations mutations to `obj` in place; return what was done."""
    kind = obj["kind"]
    done: list[str] = []
    for _ in range(draw(st.integers(0, max_mutations))):
        if not isinstance(obj.get("spec"), dict):
            break
        which = draw(st.sampled_from(["field", "field", "field", "rule", "envelope"]))
        if which == "field":
            done.append(draw(_field_mutation(kind, obj)))
        elif which == "rule":
            done.append(draw(_rule_breaker(kind, obj)))
        elif draw(st.integers(0, 3)) == 0:
            done.append(draw(_envelope_mutation(obj)))
    return done


@dataclass
class Case:
    """One generated manifest and how it was made."""

    obj: dict[str, Any]
    mutations: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    def __repr__(self) -> str:  # shown by hypothesis on failure
        return (
            f"Case(mutations={self.mutations!r},\n  obj={json.dumps(self.obj, ensure_ascii=True)})"
        )


@st.composite
def manifests(
    draw: st.DrawFn, kinds: tuple[str, ...] = tuple(PLURALS), max_mutations: int = 3
) -> Case:
    """A valid resource of one of `kinds` with 0..max_mutations mutations."""
    kind = draw(st.sampled_from(kinds))
    obj = copy.deepcopy(draw(st.sampled_from(EXAMPLES[kind])))
    done = draw(mutate(obj, max_mutations))
    return Case(obj, done)


@st.composite
def spec_mutations(draw: st.DrawFn, live: Mapping[str, Any], max_mutations: int = 2) -> Case:
    """The spec of a live object with 1..max_mutations field or rule mutations (name kept)."""
    obj = {
        "apiVersion": live["apiVersion"],
        "kind": live["kind"],
        "metadata": {
            "name": live["metadata"]["name"],
            "resourceVersion": live["metadata"]["resourceVersion"],
        },
        "spec": copy.deepcopy(live["spec"]),
    }
    done: list[str] = []
    for _ in range(draw(st.integers(1, max_mutations))):
        if draw(st.booleans()):
            done.append(draw(_field_mutation(obj["kind"], obj)))
        else:
            done.append(draw(_rule_breaker(obj["kind"], obj)))
    return Case(obj, done)


# --------------------------------------------------------------------------- verdicts


def _all_rule_messages() -> set[str]:
    found: set[str] = set()

    def walk(s: Any) -> None:
        if isinstance(s, Mapping):
            for rule in s.get("x-kubernetes-validations", []):
                found.add(rule["message"])
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)

    walk(SCHEMAS)
    return found


RULE_MESSAGES: Final = _all_rule_messages()
NOT_CHECKED: Final = "some validation rules were not checked"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    layer: str = ""  # for a refusal: "schema", "CEL", "schema+CEL"; "crash" offline
    message: str = ""
    fields: tuple[str, ...] = ()  # the fields the API server's causes name
    body: Mapping[str, Any] | None = None  # what the server returned when it accepted


def kubectl_body(value: Any) -> Any:
    """`value` as kubectl sends it from YAML: sigs.k8s.io/yaml writes an integral float as an integer."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: kubectl_body(v) for k, v in value.items()}
    if isinstance(value, list):
        return [kubectl_body(v) for v in value]
    return value


def _layer(messages: Iterable[str]) -> str:
    cel = schema = False
    for m in messages:
        if NOT_CHECKED in m:
            continue
        if "evaluating rule" in m or any(r in m for r in RULE_MESSAGES):
            cel = True
        else:
            schema = True
    return "schema+CEL" if cel and schema else "CEL" if cel else "schema"


def verdict_from_error(exc: ApiException) -> Verdict:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = str(body.get("message") or exc.reason or "")
    causes = (body.get("details") or {}).get("causes") or []
    if exc.status == 400:  # strict decoding: unknown or duplicate fields
        names = tuple(re.findall(r'(?:unknown|duplicate) field "([^"]+)"', message))
        return Verdict(False, "schema", message, names)
    fields = tuple(
        str(c.get("field") or "") for c in causes if NOT_CHECKED not in str(c.get("message", ""))
    )
    return Verdict(False, _layer(str(c.get("message", "")) for c in causes) if causes else "schema", message, fields)  # fmt: skip


def server_verdict(
    api: Any, namespace: str, obj: Mapping[str, Any], dry_run: bool = True
) -> Verdict:
    """Create `obj` in `namespace` (dry-run by default, strict field validation)."""
    kind = obj.get("kind", "")
    try:
        created = api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[str(kind)], kubectl_body(obj),
            dry_run="All" if dry_run else None, field_validation="Strict",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        return verdict_from_error(exc)
    return Verdict(True, body=created)


def server_update_verdict(api: Any, namespace: str, obj: Mapping[str, Any]) -> Verdict:
    """Replace a live object with `obj` (a real update, strict field validation)."""
    try:
        updated = api.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[str(obj["kind"])], obj["metadata"]["name"],
            kubectl_body(obj), field_validation="Strict",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        return verdict_from_error(exc)
    return Verdict(True, body=updated)


def offline_verdict(obj: Mapping[str, Any], namespace: str = "default") -> Verdict:
    """What the typed parser (`smallfleet validate`, the operator) says of `obj`."""
    full = copy.deepcopy(dict(obj))
    meta = full.get("metadata")
    if isinstance(meta, dict):
        meta.setdefault("namespace", namespace)
    try:
        PARSERS[str(full.get("kind"))](full)
    except SpecError as err:
        return Verdict(False, "", str(err), tuple(e.path for e in err.errors))
    except Exception as exc:  # a crash of the validator is a finding of its own
        return Verdict(False, "crash", f"{type(exc).__name__}: {exc}")
    return Verdict(True)


FIELD_PREFIXES: Final = ("spec", "metadata.name")


def names_a_field(v: Verdict) -> bool:
    """Whether a refusal says which field it refuses (`spec...` or `metadata.name`)."""
    if v.accepted:
        return True
    if v.fields and all(f.startswith(FIELD_PREFIXES) for f in v.fields if f):
        return all(f or "metadata.name" in v.message for f in v.fields)
    return any(p in v.message for p in ("spec.", "metadata.name", "spec:"))


# --------------------------------------------------------------------------- live objects

MAX_REPLICAS_CREATED: Final = 3  # keep real creates small on two cores


def small_enough(obj: dict[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    scaling = spec.get("scaling") or {}
    return (
        int(scaling.get("minReplicas", 1) or 1) <= MAX_REPLICAS_CREATED
        and int((spec.get("placement") or {}).get("spread", 1) or 1) <= 2
        and int(spec.get("minServers", 1) or 1) <= 2
    )


class Writes:
    """Every resourceVersion each smallfleet object of a namespace goes through (a watch)."""

    def __init__(self, api: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
        self.versions: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(api, namespace, kind), daemon=True)
            for kind in PLURALS
        ]
        for t in self._threads:
            t.start()

    def _watch(self, api: kubernetes.client.CustomObjectsApi, namespace: str, kind: str) -> None:
        while not self._stop.is_set():
            w = kubernetes.watch.Watch()
            try:
                for event in w.stream(
                    api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURALS[kind],
                    timeout_seconds=5,
                ):  # fmt: skip
                    obj = event["object"]
                    key = (kind, obj["metadata"]["name"])
                    rv = obj["metadata"]["resourceVersion"]
                    seen = self.versions.setdefault(key, [])
                    if not seen or seen[-1][1] != rv:
                        seen.append((time.monotonic(), rv))
                    self.objects[key] = obj
                    if self._stop.is_set():
                        break
            except Exception:
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


def pooled(obj: dict[str, Any]) -> bool:
    """A pool, or a model loaded into one: Ready only when a real Triton answers."""
    spec = obj.get("spec") or {}
    return obj.get("kind") == "ServingPool" or bool((spec.get("serving") or {}).get("pool"))


def settled(obj: dict[str, Any]) -> str | None:
    """'Ready', 'Stalled/<reason>', or for pools on KWOK 'Waiting/<reason>', once the
    status describes the current generation.

    KWOK's pods run no Triton, so a pool's servers never answer and its models never
    load: as in the e2e pool tests, which run pools on the real local node, a pool on
    KWOK nodes is settled when its Ready condition says why it waits.
    """
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    ready = condition(obj, "Ready")
    if ready.get("status") == "True":
        return "Ready"
    stalled = condition(obj, "Stalled")
    if stalled.get("status") == "True" and stalled.get("reason"):
        return f"Stalled/{stalled['reason']}"
    if pooled(obj) and ready.get("status") == "False" and ready.get("reason"):
        return f"Waiting/{ready['reason']}"
    return None
