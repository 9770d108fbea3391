"""Table-driven tests of spec parsing: good resources, every kind of bad input, cross-references."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from smallfleet.core.spec import (
    CarbonCap,
    DynamicBatching,
    FieldError,
    ModelPipelineSpec,
    Placement,
    Resources,
    Scaling,
    SmallModelSpec,
    SpecError,
    Tensor,
    TensorSource,
    TritonSpec,
    parse_model_pipeline,
    parse_small_model,
    validate_pipeline_refs,
)

ROOT: Final = Path(__file__).resolve().parents[2]
DELETE: Final = object()

MODEL: Final[dict[str, Any]] = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "SmallModel",
    "metadata": {"name": "embed", "namespace": "team-a"},
    "spec": {
        "model": {
            "uri": "https://models.example.com/embed.onnx",
            "digest": "sha256:" + "ab" * 32,
            "format": "onnx",
        },
        "triton": {
            "inputs": [{"name": "input_ids", "datatype": "INT64", "dims": [-1]}],
            "outputs": [{"name": "embedding", "datatype": "FP32", "dims": [384]}],
        },
        "card": {"owner": "team-a", "license": "MIT", "description": "Embeds text."},
    },
}

PIPELINE: Final[dict[str, Any]] = {
    "apiVersion": "serving.smallfleet.io/v1alpha1",
    "kind": "ModelPipeline",
    "metadata": {"name": "search", "namespace": "team-a"},
    "spec": {
        "inputs": [{"name": "ids", "datatype": "INT64", "dims": [-1]}],
        "outputs": [{"name": "hits", "datatype": "BYTES", "dims": [5], "from": "rank.hits"}],
        "steps": [
            {"name": "embed", "model": "embed", "inputs": [{"name": "input_ids", "from": "ids"}]},
            {
                "name": "rank",
                "model": "rank",
                "inputs": [{"name": "query", "from": "embed.embedding"}],
            },
        ],
    },
}


def edit(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with dotted paths (`spec__scaling__minReplicas`) set or deleted."""
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node: Any = out
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        last: Any = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


def test_minimal_model_gets_the_dataclass_defaults() -> None:
    m = parse_small_model(edit(MODEL, spec__triton=DELETE))
    assert m.name == "embed" and m.namespace == "team-a"
    assert m.triton == TritonSpec()
    assert m.resources == Resources()
    assert m.scaling == Scaling()
    assert m.placement == Placement()
    assert m.model.parameter_count is None


def test_namespace_defaults_to_default() -> None:
    assert parse_small_model(edit(MODEL, metadata__namespace=DELETE)).namespace == "default"


def test_model_fields_are_read() -> None:
    m = parse_small_model(
        edit(
            MODEL,
            spec__triton__maxBatchSize=16,
            spec__triton__dynamicBatching={"preferredBatchSizes": [4, 8]},
            spec__triton__parameters={"B": "2", "A": "1"},
            spec__resources={"gpus": 2, "gpuProduct": "NVIDIA-L4", "cpu": 3, "memory": "8Gi"},
            spec__scaling={
                "mode": "hpa",
                "maxReplicas": 5,
                "carbonCap": {"aboveIntensity": 300, "maxReplicas": 2},
            },
            spec__placement={"regions": ["a", "b"], "latencyPenalty": {"b": 10, "a": 5}},
        )
    )
    assert m.triton.dynamic_batching == DynamicBatching(True, 0, (4, 8))
    assert m.triton.parameters == (("A", "1"), ("B", "2"))
    assert m.triton.inputs == (Tensor("input_ids", "INT64", (-1,)),)
    assert m.resources == Resources(gpus=2, gpu_product="NVIDIA-L4", cpu="3", memory="8Gi")
    assert m.scaling.carbon_cap == CarbonCap(above_intensity=300.0, max_replicas=2)
    assert m.placement.latency_penalty == (("a", 5.0), ("b", 10.0))


def test_pipeline_sources_are_split_at_the_first_dot() -> None:
    p = parse_model_pipeline(PIPELINE)
    assert p.steps[0].inputs[0].source == TensorSource(tensor="ids")
    assert p.steps[1].inputs[0].source == TensorSource(tensor="embedding", step="embed")
    assert p.outputs[0].source == TensorSource(tensor="hits", step="rank")
    assert p.resources is None and p.scaling == Scaling()


# (case, base, changes, path, substring of the message)
BAD: Final[list[tuple[str, dict[str, Any], dict[str, Any], str, str]]] = [
    (
        "bad digest",
        MODEL,
        {"spec__model__digest": "sha256:abc"},
        "spec.model.digest",
        "should match '^sha256:[a-f0-9]{64}$'",
    ),
    (
        "uppercase digest",
        MODEL,
        {"spec__model__digest": "sha256:" + "AB" * 32},
        "spec.model.digest",
        "should match",
    ),
    (
        "ftp uri",
        MODEL,
        {"spec__model__uri": "ftp://host/m.onnx"},
        "spec.model.uri",
        'Invalid value: "ftp://host/m.onnx": uri must start with s3://',
    ),
    (
        "pvc without path",
        MODEL,
        {"spec__model__uri": "pvc://claim"},
        "spec.model.uri",
        "need a bucket or claim and a path",
    ),
    (
        "s3 without key",
        MODEL,
        {"spec__model__uri": "s3://bucket/"},
        "spec.model.uri",
        "need a bucket or claim and a path",
    ),
    (
        "unknown format",
        MODEL,
        {"spec__model__format": "keras"},
        "spec.model.format",
        'Unsupported value: "keras"',
    ),
    ("no card", MODEL, {"spec__card": DELETE}, "spec.card", "Required value"),
    ("no owner", MODEL, {"spec__card__owner": DELETE}, "spec.card.owner", "Required value"),
    (
        "empty description",
        MODEL,
        {"spec__card__description": ""},
        "spec.card.description",
        "should be at least 1 chars long",
    ),
    (
        "min above max",
        MODEL,
        {"spec__scaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.scaling.minReplicas",
        "Invalid value: minReplicas must not exceed maxReplicas (5 > 2)",
    ),
    (
        "max too high",
        MODEL,
        {"spec__scaling": {"maxReplicas": 2000}},
        "spec.scaling.maxReplicas",
        "should be less than or equal to 1000",
    ),
    (
        "zero min with operator",
        MODEL,
        {"spec__scaling": {"minReplicas": 0}},
        "spec.scaling.minReplicas",
        "needs mode keda or none",
    ),
    (
        "gpu metric on cpu",
        MODEL,
        {"spec__resources": {"gpus": 0}, "spec__scaling": {"metric": "gpuUtilization"}},
        "spec.scaling.metric",
        "gpuUtilization needs resources.gpus > 0",
    ),
    (
        "gpu target above 100",
        MODEL,
        {"spec__scaling": {"metric": "gpuUtilization", "target": 150}},
        "spec.scaling.target",
        "at most 100",
    ),
    (
        "tolerance too high",
        MODEL,
        {"spec__scaling": {"tolerance": 2}},
        "spec.scaling.tolerance",
        "less than or equal to 0.9",
    ),
    (
        "zero target",
        MODEL,
        {"spec__scaling": {"target": 0}},
        "spec.scaling.target",
        "should be greater than 0",
    ),
    (
        "cap above max",
        MODEL,
        {
            "spec__scaling": {
                "maxReplicas": 4,
                "carbonCap": {"aboveIntensity": 200, "maxReplicas": 9},
            }
        },
        "spec.scaling.carbonCap.maxReplicas",
        "within [minReplicas, maxReplicas]",
    ),
    (
        "cap without scaler",
        MODEL,
        {"spec__scaling": {"mode": "none", "carbonCap": {"aboveIntensity": 200, "maxReplicas": 1}}},
        "spec.scaling.carbonCap",
        "mode none keeps a fixed replica count",
    ),
    (
        "cap without intensity",
        MODEL,
        {"spec__scaling": {"carbonCap": {"maxReplicas": 1}}},
        "spec.scaling.carbonCap.aboveIntensity",
        "Required value",
    ),
    (
        "gpu product on cpu",
        MODEL,
        {"spec__resources": {"gpus": 0, "gpuProduct": "NVIDIA-L4"}},
        "spec.resources.gpuProduct",
        "Forbidden: gpuProduct needs gpus > 0",
    ),
    (
        "too many gpus",
        MODEL,
        {"spec__resources": {"gpus": 9}},
        "spec.resources.gpus",
        "less than or equal to 8",
    ),
    (
        "cpu not a quantity",
        MODEL,
        {"spec__resources": {"cpu": "lots"}},
        "spec.resources.cpu",
        "positive Kubernetes quantity",
    ),
    (
        "zero memory",
        MODEL,
        {"spec__resources": {"memory": "0"}},
        "spec.resources.memory",
        "positive Kubernetes quantity",
    ),
    (
        "cpu as float",
        MODEL,
        {"spec__resources": {"cpu": 0.5}},
        "spec.resources.cpu",
        'Invalid value: "number": spec.resources.cpu in body must be of type integer,string: "number"',
    ),
    (
        "tensorrt on cpu",
        MODEL,
        {"spec__resources": {"gpus": 0}, "spec__model__format": "tensorrt"},
        "spec.model.format",
        "TensorRT plan runs only on a GPU",
    ),
    (
        "batching without batch",
        MODEL,
        {"spec__triton__maxBatchSize": 0, "spec__triton__dynamicBatching": {}},
        "spec.triton.dynamicBatching",
        "Forbidden: dynamicBatching needs maxBatchSize > 0",
    ),
    (
        "preferred above max",
        MODEL,
        {"spec__triton__dynamicBatching": {"preferredBatchSizes": [4, 16]}},
        "spec.triton.dynamicBatching.preferredBatchSizes",
        "at most maxBatchSize",
    ),
    (
        "batch size as string",
        MODEL,
        {"spec__triton__maxBatchSize": "8"},
        "spec.triton.maxBatchSize",
        "must be of type integer",
    ),
    (
        "batching flag as string",
        MODEL,
        {"spec__triton__dynamicBatching": {"enabled": "yes"}},
        "spec.triton.dynamicBatching.enabled",
        "must be of type boolean",
    ),
    (
        "duplicate input",
        MODEL,
        {
            "spec__triton__inputs": [
                {"name": "x", "datatype": "FP32", "dims": [1]},
                {"name": "x", "datatype": "FP32", "dims": [2]},
            ]
        },
        "spec.triton.inputs[1]",
        "Duplicate value",
    ),
    (
        "zero dim",
        MODEL,
        {"spec__triton__outputs__0__dims": [0]},
        "spec.triton.outputs[0].dims",
        "dims must be positive",
    ),
    (
        "bad datatype",
        MODEL,
        {"spec__triton__outputs__0__datatype": "FLOAT"},
        "spec.triton.outputs[0].datatype",
        "Unsupported value",
    ),
    (
        "too many dims",
        MODEL,
        {"spec__triton__outputs__0__dims": [1] * 9},
        "spec.triton.outputs[0].dims",
        "must have at most 8 items",
    ),
    (
        "parameter key",
        MODEL,
        {"spec__triton__parameters": {"not an id": "x"}},
        "spec.triton.parameters",
        "parameter keys must be identifiers",
    ),
    (
        "unknown field",
        MODEL,
        {"spec__scaling": {"bogus": 1}},
        "spec.scaling.bogus",
        'unknown field "spec.scaling.bogus"',
    ),
    (
        "pinned without regions",
        MODEL,
        {"spec__placement": {"policy": "pinned"}},
        "spec.placement.regions",
        "Required value: policy pinned needs regions",
    ),
    (
        "spread above regions",
        MODEL,
        {"spec__placement": {"regions": ["a", "b"], "spread": 3}},
        "spec.placement.spread",
        "spread must not exceed the number of regions (3 > 2)",
    ),
    (
        "duplicate region",
        MODEL,
        {"spec__placement": {"regions": ["a", "a"]}},
        "spec.placement.regions[1]",
        "Duplicate value",
    ),
    (
        "penalty outside regions",
        MODEL,
        {"spec__placement": {"regions": ["a"], "latencyPenalty": {"b": 5}}},
        "spec.placement.latencyPenalty",
        "only name regions listed in regions",
    ),
    (
        "penalty negative",
        MODEL,
        {"spec__placement": {"latencyPenalty": {"b": -5}}},
        "spec.placement.latencyPenalty.b",
        "greater than or equal to 0",
    ),
    (
        "bad region name",
        MODEL,
        {"spec__placement": {"regions": ["EU West"]}},
        "spec.placement.regions[0]",
        "should match",
    ),
    (
        "uppercase name",
        MODEL,
        {"metadata__name": "Embed"},
        "metadata.name",
        "DNS-1035 label of at most 40 characters",
    ),
    ("long name", MODEL, {"metadata__name": "m" * 41}, "metadata.name", "DNS-1035 label"),
    ("no name", MODEL, {"metadata": {}}, "metadata.name", "Required value"),
    ("no spec", MODEL, {"spec": DELETE}, "spec", "Required value"),
    (
        "wrong version",
        MODEL,
        {"apiVersion": "serving.smallfleet.io/v1"},
        "apiVersion",
        "must be serving.smallfleet.io/v1alpha1",
    ),
    ("wrong kind", MODEL, {"kind": "ModelPipeline"}, "kind", "must be SmallModel"),
    (
        "unknown pipeline input",
        PIPELINE,
        {"spec__steps__0__inputs__0__from": "tokens"},
        "spec.steps",
        "a pipeline input that does not exist: a from without a dot must name one of spec.inputs (step embed)",
    ),
    (
        "step reads later step",
        PIPELINE,
        {"spec__steps__0__inputs__0__from": "rank.hits"},
        "spec.steps",
        'not listed before it: "<step>.<tensor>" must name an earlier step (step embed)',
    ),
    (
        "step reads itself",
        PIPELINE,
        {"spec__steps__1__inputs__0__from": "rank.hits"},
        "spec.steps",
        "must name an earlier step (step rank)",
    ),
    (
        "step reads missing step",
        PIPELINE,
        {"spec__steps__1__inputs__0__from": "nope.x"},
        "spec.steps",
        "must name an earlier step (step rank)",
    ),
    (
        "output from missing step",
        PIPELINE,
        {"spec__outputs__0__from": "nope.hits"},
        "spec.outputs",
        "of one of spec.steps (output hits)",
    ),
    (
        "output without step",
        PIPELINE,
        {"spec__outputs__0__from": "hits"},
        "spec.outputs[0].from",
        "should match",
    ),
    (
        "unused input",
        PIPELINE,
        {
            "spec__inputs": [
                {"name": "ids", "datatype": "INT64", "dims": [-1]},
                {"name": "extra", "datatype": "INT64", "dims": [1]},
            ]
        },
        "spec.inputs",
        "a pipeline input is not read by any step (input extra)",
    ),
    (
        "dotted input name",
        PIPELINE,
        {"spec__inputs__0__name": "a.b"},
        "spec.inputs[0].name",
        "should match",
    ),
    (
        "duplicate step",
        PIPELINE,
        {"spec__steps__1__name": "embed"},
        "spec.steps[1]",
        "Duplicate value",
    ),
    ("no steps", PIPELINE, {"spec__steps": []}, "spec.steps", "should have at least 1 items"),
    (
        "step without model",
        PIPELINE,
        {"spec__steps__0__model": DELETE},
        "spec.steps[0].model",
        "Required value",
    ),
    (
        "output named like input",
        PIPELINE,
        {"spec__outputs__0__name": "ids"},
        "spec.outputs[0].name",
        "has the name of a pipeline input",
    ),
    (
        "two outputs, one source",
        PIPELINE,
        {
            "spec__outputs": [
                {"name": "a", "datatype": "BYTES", "dims": [5], "from": "rank.hits"},
                {"name": "b", "datatype": "BYTES", "dims": [5], "from": "rank.hits"},
            ]
        },
        "spec.outputs[1].from",
        "maps each step output to one tensor",
    ),
    (
        "pipeline gpu metric on cpu",
        PIPELINE,
        {"spec__resources": {"gpus": 0}, "spec__scaling": {"metric": "gpuUtilization"}},
        "spec.scaling.metric",
        "gpuUtilization needs resources.gpus > 0",
    ),
    (
        "pipeline min above max",
        PIPELINE,
        {"spec__scaling": {"minReplicas": 3}},
        "spec.scaling.minReplicas",
        "must not exceed maxReplicas",
    ),
]


@pytest.mark.parametrize(
    ("base", "changes", "path", "message"),
    [pytest.param(b, c, p, m, id=case) for case, b, c, p, m in BAD],
)
def test_bad_input_is_reported_at_its_path(
    base: dict[str, Any], changes: dict[str, Any], path: str, message: str
) -> None:
    obj = edit(base, **changes)
    parse = parse_small_model if base is MODEL else parse_model_pipeline
    with pytest.raises(SpecError) as info:
        parse(obj)
    found = [(e.path, e.message) for e in info.value.errors]
    assert any(p == path and message in m for p, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    obj = edit(
        MODEL,
        spec__model__digest="md5:x",
        spec__card__owner=DELETE,
        spec__scaling={"minReplicas": 3},
    )
    with pytest.raises(SpecError) as info:
        parse_small_model(obj)
    paths = {e.path for e in info.value.errors}
    assert {"spec.model.digest", "spec.card.owner", "spec.scaling.minReplicas"} <= paths
    assert info.value.kind == "SmallModel" and info.value.name == "embed"
    assert "spec.model.digest" in str(info.value)


def test_parse_does_not_change_its_input() -> None:
    obj = copy.deepcopy(MODEL)
    parse_small_model(obj)
    assert obj == MODEL


def _model(
    name: str, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]
) -> SmallModelSpec:
    def tensors(ts: list[tuple[str, str, list[int]]]) -> list[dict[str, Any]]:
        return [{"name": n, "datatype": d, "dims": dims} for n, d, dims in ts]

    return parse_small_model(
        edit(
            MODEL,
            metadata__name=name,
            spec__triton={"inputs": tensors(inputs), "outputs": tensors(outputs)},
        )
    )


MODELS: Final = {
    "embed": _model("embed", [("input_ids", "INT64", [-1])], [("embedding", "FP32", [384])]),
    "rank": _model("rank", [("query", "FP32", [384])], [("hits", "BYTES", [5])]),
}


def refs(pipeline: ModelPipelineSpec, models: dict[str, SmallModelSpec]) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in validate_pipeline_refs(pipeline, models)]


def test_consistent_pipeline_has_no_reference_errors() -> None:
    assert refs(parse_model_pipeline(PIPELINE), MODELS) == []


def test_models_without_declared_tensors_are_not_second_guessed() -> None:
    bare = {n: parse_small_model(edit(MODEL, metadata__name=n, spec__triton={})) for n in MODELS}
    assert refs(parse_model_pipeline(PIPELINE), bare) == []


# (case, pipeline changes, models, path, substring)
BAD_REFS: Final[list[tuple[str, dict[str, Any], dict[str, SmallModelSpec], str, str]]] = [
    (
        "missing model",
        {},
        {"embed": MODELS["embed"]},
        "spec.steps[1].model",
        "SmallModel rank not found in namespace team-a",
    ),
    (
        "wrong input name",
        {"spec__steps__0__inputs__0__name": "ids"},
        MODELS,
        "spec.steps[0].inputs[0].name",
        "SmallModel embed has no input ids (it has input_ids)",
    ),
    (
        "unfed model input",
        {},
        {
            **MODELS,
            "rank": _model(
                "rank", [("query", "FP32", [384]), ("k", "INT32", [1])], [("hits", "BYTES", [5])]
            ),
        },
        "spec.steps[1].inputs",
        "needs input k, which no entry feeds",
    ),
    (
        "unknown step output",
        {"spec__steps__1__inputs__0__from": "embed.vector"},
        MODELS,
        "spec.steps[1].inputs[0].from",
        "(step embed) has no output vector",
    ),
    (
        "datatype mismatch",
        {"spec__inputs__0__datatype": "INT32"},
        MODELS,
        "spec.steps[0].inputs[0].from",
        "ids is INT32 but input_ids expects INT64",
    ),
    (
        "dims mismatch",
        {},
        {**MODELS, "rank": _model("rank", [("query", "FP32", [768])], [("hits", "BYTES", [5])])},
        "spec.steps[1].inputs[0].from",
        "embedding has dims [384] but query expects [768]",
    ),
    (
        "output datatype mismatch",
        {"spec__outputs__0__datatype": "FP32"},
        MODELS,
        "spec.outputs[0].from",
        "hits is BYTES but hits expects FP32",
    ),
    (
        "output not produced",
        {"spec__outputs__0__from": "rank.scores"},
        MODELS,
        "spec.outputs[0].from",
        "has no output scores",
    ),
]


@pytest.mark.parametrize(
    ("changes", "models", "path", "message"),
    [pytest.param(c, m, p, msg, id=case) for case, c, m, p, msg in BAD_REFS],
)
def test_bad_reference_is_reported(
    changes: dict[str, Any], models: dict[str, SmallModelSpec], path: str, message: str
) -> None:
    found = refs(parse_model_pipeline(edit(PIPELINE, **changes)), models)
    assert any(p == path and message in m for p, m in found), found


def test_every_example_parses_and_its_pipelines_resolve() -> None:
    models: dict[str, SmallModelSpec] = {}
    pipelines: list[ModelPipelineSpec] = []
    files = sorted((ROOT / "examples").glob("*.yaml"))
    assert files, "examples/ holds no YAML files"
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc["kind"] == "SmallModel":
                m = parse_small_model(doc)
                assert m.card.owner and m.card.license and m.card.description
                models[m.name] = m
            else:
                pipelines.append(parse_model_pipeline(doc))
    assert pipelines
    for p in pipelines:
        assert validate_pipeline_refs(p, models) == []
    modes = {m.scaling.mode for m in models.values()}
    assert {"operator", "hpa", "keda"} <= modes


def test_field_error_shows_its_line() -> None:
    assert str(FieldError("spec.x", "bad", line=7)) == "line 7: spec.x: bad"
    assert str(FieldError("spec.x", "bad")) == "spec.x: bad"


def test_null_fields_count_as_absent_like_the_api_server_prunes_them() -> None:
    m = parse_small_model(edit(MODEL, spec__placement=None, spec__scaling={"maxReplicas": None}))
    assert m.placement == Placement() and m.scaling == Scaling()
    with pytest.raises(SpecError) as info:
        parse_small_model(edit(MODEL, spec__card__owner=None))
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("spec.card.owner", "Required value")
    ]


def test_a_wrongly_typed_value_is_reported_not_crashed_on() -> None:
    with pytest.raises(SpecError) as info:
        parse_small_model(edit(MODEL, spec__placement={"regions": 3, "spread": 2}))
    assert [e.path for e in info.value.errors] == ["spec.placement.regions"]
