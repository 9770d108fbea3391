"""Properties of rendering over generated specs: schema-valid, name-valid, deterministic.

The schemas are the real API server's OpenAPI v3 documents for the rendered
kinds (tests/data/openapi, refreshed by hack/dump_openapi.py), tightened so
that an unknown field fails: the API server would otherwise drop it
silently (or reject it with field validation), and a misspelt field in a
manifest is exactly the bug these tests exist to catch.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_spec_properties import small_models as parser_small_models
from test_spec_properties import to_resource

from smallfleet.core.plan import plan_changes
from smallfleet.core.render import (
    UNPLACED,
    ServerPlan,
    plan_for_model,
    plan_for_pipeline,
    render_children,
)
from smallfleet.core.render.yamltext import dump
from smallfleet.core.spec import (
    Artifact,
    DynamicBatching,
    ModelCard,
    ModelPipelineSpec,
    PipelineOutput,
    Resources,
    Scaling,
    SmallModelSpec,
    Step,
    StepInput,
    Tensor,
    TensorSource,
    TritonSpec,
    parse_small_model,
)
from smallfleet.settings import Settings

OPENAPI: Final = Path(__file__).resolve().parent.parent / "data" / "openapi"
KIND_SCHEMAS: Final = {
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): "sh.keda.v1alpha1.ScaledObject",
}
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
PORT_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _tighten(node: Any) -> Any:
    """Unknown fields fail; int-or-string admits both; everything else as published."""
    if isinstance(node, list):
        return [_tighten(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tighten(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string") or out.get("format") == "int-or-string":
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _validators() -> dict[tuple[str, str], Draft202012Validator]:
    files = sorted(OPENAPI.glob("*.json"))
    if not files:
        pytest.fail(f"no OpenAPI documents in {OPENAPI}: run `python hack/dump_openapi.py`")
    schemas: dict[str, Any] = {}
    for f in files:
        schemas.update(json.loads(f.read_text())["components"]["schemas"])
    components = {"schemas": _tighten(schemas)}
    out = {}
    for key, name in KIND_SCHEMAS.items():
        if name not in schemas:
            pytest.fail(f"{name} missing from {OPENAPI}: rerun `python hack/dump_openapi.py`")
        out[key] = Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components}
        )
    return out


def schema_errors(obj: dict[str, Any]) -> list[str]:
    validator = _validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no schema for {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def name_errors(obj: dict[str, Any]) -> list[str]:
    """What the API server checks beyond the schema: names, label values, keys."""
    errors = []
    meta = obj["metadata"]
    pattern = DNS_LABEL if obj["kind"] == "Service" else DNS_SUBDOMAIN
    if not pattern.match(meta["name"]) or len(meta["name"]) > 63 + 190 * (pattern is DNS_SUBDOMAIN):
        errors.append(f"name {meta['name']!r}")
    labels = dict(meta.get("labels", {}))
    if obj["kind"] == "Deployment":
        labels.update(obj["spec"]["template"]["metadata"]["labels"])
        pod = obj["spec"]["template"]["spec"]
        for c in pod["initContainers"] + pod["containers"]:
            if not DNS_LABEL.match(c["name"]) or len(c["name"]) > 63:
                errors.append(f"container name {c['name']!r}")
            for p in c.get("ports", []):
                if not PORT_NAME.match(p["name"]) or len(p["name"]) > 15:
                    errors.append(f"port name {p['name']!r}")
    for k, v in labels.items():
        if len(v) > 63 or not LABEL_VALUE.match(v):
            errors.append(f"label {k}={v!r}")
    for key in obj.get("data", {}):
        if not CONFIG_KEY.match(key) or len(key) > 253:
            errors.append(f"ConfigMap key {key!r}")
    return errors


# --------------------------------------------------------------------------- strategies

names = st.from_regex(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", fullmatch=True)
regions = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
tensor_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,15}", fullmatch=True)
datatypes = st.sampled_from(
    ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]
)
dims = st.lists(st.one_of(st.just(-1), st.integers(1, 4096)), min_size=1, max_size=3).map(tuple)
digests = st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: f"sha256:{h}")
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[Tensor, ...]:
    ts = draw(st.lists(tensor_names, max_size=3, unique=True))
    return tuple(Tensor(n, draw(datatypes), draw(dims)) for n in ts)


@st.composite
def triton_specs(draw: st.DrawFn, max_batch: int | None = None) -> TritonSpec:
    mbs = draw(st.integers(0, 128)) if max_batch is None else max_batch
    preferred = draw(st.lists(st.integers(1, max(mbs, 1)), max_size=3)) if mbs else []
    return TritonSpec(
        max_batch_size=mbs,
        dynamic_batching=DynamicBatching(
            enabled=draw(st.booleans()) if mbs else False,
            max_queue_delay_microseconds=draw(st.integers(0, 1_000_000)),
            preferred_batch_sizes=tuple(preferred),
        ),
        instance_count=draw(st.integers(1, 8)),
        inputs=draw(tensors()),
        outputs=draw(tensors()),
        image=draw(st.none() | st.just("registry.local/triton:24.10")),
        parameters=tuple(
            sorted(
                draw(
                    st.dictionaries(
                        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
                        text,
                        max_size=3,
                    )
                ).items()
            )
        ),
    )


@st.composite
def resources(draw: st.DrawFn) -> Resources:
    gpus = draw(st.integers(0, 8))
    product = (
        draw(st.none() | st.sampled_from(["NVIDIA-L4", "NVIDIA-H100-80GB-HBM3"])) if gpus else None
    )
    return Resources(
        gpus=gpus,
        gpu_product=product,
        cpu=draw(st.sampled_from(["1", "250m", "2", "1.5", "16"])),
        memory=draw(st.sampled_from(["2Gi", "512Mi", "1G", "3000Mi", "64Gi"])),
    )


@st.composite
def scalings(draw: st.DrawFn) -> Scaling:
    lo = draw(st.integers(0, 5))
    return Scaling(
        mode=draw(st.sampled_from(["operator", "hpa", "keda", "none"])),
        min_replicas=lo,
        max_replicas=draw(st.integers(max(lo, 1), 20)),
    )


@st.composite
def small_models(
    draw: st.DrawFn,
    name: str | None = None,
    namespace: str = "models",
    max_batch: int | None = None,
) -> SmallModelSpec:
    return SmallModelSpec(
        name=name or draw(names),
        namespace=namespace,
        model=Artifact(
            uri=draw(
                st.sampled_from(
                    ["s3://b/m.onnx", "https://example.org/a.tar.gz", "pvc://claim/dir"]
                )
            ),
            digest=draw(digests),
            format=draw(st.sampled_from(["onnx", "pytorch", "tensorflow", "tensorrt", "python"])),
        ),
        card=ModelCard(owner=draw(text), license=draw(text), description=draw(text)),
        triton=draw(triton_specs(max_batch)),
        resources=draw(resources()),
        scaling=draw(scalings()),
    )


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[ModelPipelineSpec, dict[str, SmallModelSpec]]:
    """A chain of steps, each feeding `y` of the previous into `x` of the next."""
    count = draw(st.integers(1, 4))
    model_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    pipeline_name = draw(names.filter(lambda n: n not in model_names))
    dtype = draw(datatypes)
    shape = draw(dims)
    batch = draw(st.sampled_from([0, 8]))
    models: dict[str, SmallModelSpec] = {}
    steps = []
    for i, n in enumerate(model_names):
        m = draw(small_models(name=n, max_batch=batch))
        t = m.triton
        models[n] = SmallModelSpec(
            name=m.name,
            namespace=m.namespace,
            model=m.model,
            card=m.card,
            triton=TritonSpec(
                max_batch_size=t.max_batch_size,
                dynamic_batching=t.dynamic_batching,
                instance_count=t.instance_count,
                inputs=(Tensor("x", dtype, shape),),
                outputs=(Tensor("y", dtype, shape),),
                image=None,
                parameters=t.parameters,
            ),
            resources=Resources(
                gpus=m.resources.gpus,
                gpu_product=None,
                cpu=m.resources.cpu,
                memory=m.resources.memory,
            ),
        )
        source = TensorSource("x") if i == 0 else TensorSource("y", f"s{i - 1}")
        steps.append(Step(f"s{i}", n, (StepInput("x", source),)))
    spec = ModelPipelineSpec(
        name=pipeline_name,
        namespace="models",
        inputs=(Tensor("x", dtype, shape),),
        outputs=(PipelineOutput("out", dtype, shape, TensorSource("y", f"s{count - 1}")),),
        steps=tuple(steps),
        scaling=draw(scalings()),
    )
    return spec, models


placements = st.one_of(
    st.dictionaries(regions, st.integers(0, 10), min_size=1, max_size=3),
    st.integers(0, 10).map(lambda n: {UNPLACED: n}),
)
owners = st.one_of(
    st.none(),
    st.builds(
        lambda kind, name: {
            "apiVersion": "serving.smallfleet.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "uid": "0b8a3c55-7d1e-4a8b-9d51-6b0f3e2a9c10"},
        },
        st.sampled_from(["SmallModel", "ModelPipeline"]),
        names,
    ),
)


def _check(plan: ServerPlan, regions_: dict[str, int], owner: dict[str, Any] | None) -> None:
    children = render_children(plan, owner=owner, regions=regions_)
    for child in children:
        problems = schema_errors(child) + name_errors(child)
        assert not problems, f"{child['kind']} {child['metadata']['name']}: {problems}"
    # What was just rendered is, read back unchanged, up to date for the apply plan.
    assert {c.action for c in plan_changes(children, children)} == {"noop"}
    # Deterministic: the same inputs (in any mapping order) give the same bytes.
    again = render_children(plan, owner=owner, regions=dict(reversed(list(regions_.items()))))
    assert dump(again) == dump(children)


PROPERTY_SETTINGS: Final = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(small_models(), placements, owners)
def test_every_small_model_renders_schema_valid_deterministic_children(
    spec: SmallModelSpec, regions_: dict[str, int], owner: dict[str, Any] | None
) -> None:
    _check(plan_for_model(spec, Settings()), regions_, owner)


@PROPERTY_SETTINGS
@given(pipelines(), placements, owners)
def test_every_pipeline_renders_schema_valid_deterministic_children(
    pipeline: tuple[ModelPipelineSpec, dict[str, SmallModelSpec]],
    regions_: dict[str, int],
    owner: dict[str, Any] | None,
) -> None:
    spec, models = pipeline
    plan = plan_for_pipeline(spec, models, Settings())
    assert [m.name for m in plan.models][-1] == spec.name
    _check(plan, regions_, owner)


def test_the_validator_rejects_a_misspelt_field() -> None:
    from render_fixtures import GPU_ONNX

    (d,) = [
        c
        for c in render_children(plan_for_model(GPU_ONNX, Settings()), owner=None, regions={"a": 1})
        if c["kind"] == "Deployment"
    ]
    assert schema_errors(d) == []
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    d["spec"]["replicas"] = "two"
    errors = schema_errors(d)
    assert any("readinesProbe" in e for e in errors), errors
    assert any(e.startswith("spec.replicas") for e in errors), errors


@PROPERTY_SETTINGS
@given(parser_small_models(), placements, owners)
def test_every_spec_the_parser_accepts_renders_schema_valid_children(
    spec: SmallModelSpec, regions_: dict[str, int], owner: dict[str, Any] | None
) -> None:
    """Specs from the parser's own generator, passed through their resource form and back."""
    _check(plan_for_model(parse_small_model(to_resource(spec)), Settings()), regions_, owner)
