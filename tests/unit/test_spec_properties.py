"""Property-based tests: any valid spec, written out as a resource, parses back to itself."""

from __future__ import annotations

import string
from typing import Any, Final

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.core.spec import (
    Artifact,
    CarbonCap,
    DynamicBatching,
    Evaluation,
    ModelCard,
    ModelPipelineSpec,
    PipelineOutput,
    Placement,
    Resources,
    Scaling,
    SmallModelSpec,
    SpecError,
    Step,
    StepInput,
    Tensor,
    TensorSource,
    TritonSpec,
    parse_model_pipeline,
    parse_small_model,
)

API: Final = "serving.smallfleet.io/v1alpha1"
DATATYPES: Final = ["BOOL", "INT32", "INT64", "FP16", "FP32", "BF16", "BYTES", "UINT8"]

label = st.from_regex(r"\A[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,6})?\Z")
ident = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z")
text = st.text(alphabet=string.ascii_letters + string.digits + " .,-", min_size=1, max_size=40)
dims = st.lists(st.sampled_from([-1, 1, 3, 384, 1024]), min_size=1, max_size=4).map(tuple)
number = st.floats(min_value=0.001, max_value=1000, allow_nan=False, allow_infinity=False)


def tensors(names: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[Tensor, ...]]:
    return st.lists(
        st.builds(Tensor, name=names, datatype=st.sampled_from(DATATYPES), dims=dims),
        max_size=4,
        unique_by=lambda t: t.name,
    ).map(tuple)


@st.composite
def tritons(draw: st.DrawFn) -> TritonSpec:
    mbs = draw(st.integers(0, 4096))
    if mbs == 0:
        db = DynamicBatching(
            enabled=False, max_queue_delay_microseconds=draw(st.integers(0, 10**7))
        )
    else:
        sizes = draw(st.lists(st.integers(1, mbs), max_size=4, unique=True))
        db = DynamicBatching(draw(st.booleans()), draw(st.integers(0, 10**7)), tuple(sizes))
    params = draw(st.dictionaries(ident, text, max_size=3))
    return TritonSpec(
        max_batch_size=mbs,
        dynamic_batching=db,
        instance_count=draw(st.integers(1, 64)),
        inputs=draw(tensors(ident)),
        outputs=draw(tensors(ident)),
        image=draw(st.none() | st.just("nvcr.io/nvidia/tritonserver:24.10-py3")),
        parameters=tuple(sorted(params.items())),
    )


@st.composite
def resources(draw: st.DrawFn, gpus: int | None = None) -> Resources:
    g = draw(st.integers(0, 8)) if gpus is None else gpus
    return Resources(
        gpus=g,
        gpu_product=draw(st.none() | st.sampled_from(["NVIDIA-L4", "NVIDIA-A10G"])) if g else None,
        cpu=draw(st.sampled_from(["1", "250m", "2", "0.5"])),
        memory=draw(st.sampled_from(["2Gi", "512Mi", "16G", "1e9"])),
    )


@st.composite
def scalings(draw: st.DrawFn, gpus: int) -> Scaling:
    mode = draw(st.sampled_from(["operator", "hpa", "keda", "none"]))
    lo = draw(st.integers(0 if mode in ("keda", "none") else 1, 1000))
    hi = draw(st.integers(max(lo, 1), 1000))
    metric = draw(
        st.sampled_from(
            ["queueTime", "pendingRequests", "inferencesPerSecond"]
            + (["gpuUtilization"] if gpus else [])
        )
    )
    cap = None
    if mode != "none" and draw(st.booleans()):
        cap = CarbonCap(
            above_intensity=draw(st.floats(0, 2000, allow_nan=False)),
            max_replicas=draw(st.integers(lo, hi)),
        )
    return Scaling(
        mode=mode,
        min_replicas=lo,
        max_replicas=hi,
        metric=metric,
        target=draw(st.floats(0.01, 100 if metric == "gpuUtilization" else 10**6, allow_nan=False)),
        tolerance=draw(st.floats(0, 0.9, allow_nan=False)),
        scale_up_stabilization_seconds=draw(st.integers(0, 3600)),
        scale_down_stabilization_seconds=draw(st.integers(0, 3600)),
        max_scale_up_step=draw(st.integers(1, 1000)),
        max_scale_down_step=draw(st.integers(1, 1000)),
        carbon_cap=cap,
    )


@st.composite
def placements(draw: st.DrawFn) -> Placement:
    regions = tuple(draw(st.lists(label, max_size=5, unique=True)))
    policy = draw(st.sampled_from(["carbon-aware", "pinned"] if regions else ["carbon-aware"]))
    spread = draw(st.integers(1, len(regions) if regions else 16))
    keys = st.sampled_from(regions) if regions else label
    penalty = draw(st.dictionaries(keys, st.floats(0, 2000, allow_nan=False), max_size=3))
    return Placement(
        policy=policy,
        regions=regions,
        residency=draw(st.none() | st.sampled_from(["eu", "us", "uk"])),
        spread=spread,
        max_intensity=draw(st.none() | st.floats(0, 2000, allow_nan=False)),
        latency_penalty=tuple(sorted(penalty.items())),
        min_improvement_percent=draw(st.none() | st.floats(0, 100, allow_nan=False)),
        min_dwell_seconds=draw(st.none() | st.integers(0, 604800)),
    )


@st.composite
def small_models(draw: st.DrawFn) -> SmallModelSpec:
    res = draw(resources())
    fmt = draw(
        st.sampled_from(
            ["onnx", "pytorch", "tensorflow", "python"] + (["tensorrt"] if res.gpus else [])
        )
    )
    uri = draw(
        st.sampled_from(
            [
                "https://models.example.com/a/m.onnx",
                "s3://bucket/key/m",
                "gs://b/k",
                "pvc://claim/models/m",
                "http://h/x",
            ]
        )
    )
    digest = "sha256:" + draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
    card = ModelCard(
        owner=draw(text),
        license=draw(st.sampled_from(["MIT", "Apache-2.0", "proprietary"])),
        description=draw(text),
        training_data=draw(st.none() | text),
        intended_use=draw(st.none() | text),
        limitations=draw(st.none() | text),
        evaluation=tuple(
            draw(
                st.lists(
                    st.builds(Evaluation, metric=text, value=text, dataset=st.none() | text),
                    max_size=3,
                )
            )
        ),
    )
    return SmallModelSpec(
        name=draw(label),
        namespace=draw(label),
        model=Artifact(uri, digest, fmt, draw(st.none() | st.integers(1, 10**12))),
        card=card,
        triton=draw(tritons()),
        resources=res,
        scaling=draw(scalings(res.gpus)),
        placement=draw(placements()),
    )


def tensor_dict(t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "dims": list(t.dims)}


def optional(**items: Any) -> dict[str, Any]:
    return {k: v for k, v in items.items() if v is not None}


def resources_dict(r: Resources) -> dict[str, Any]:
    return optional(gpus=r.gpus, gpuProduct=r.gpu_product, cpu=r.cpu, memory=r.memory)


def scaling_dict(s: Scaling) -> dict[str, Any]:
    return optional(
        mode=s.mode,
        minReplicas=s.min_replicas,
        maxReplicas=s.max_replicas,
        metric=s.metric,
        target=s.target,
        tolerance=s.tolerance,
        scaleUpStabilizationSeconds=s.scale_up_stabilization_seconds,
        scaleDownStabilizationSeconds=s.scale_down_stabilization_seconds,
        maxScaleUpStep=s.max_scale_up_step,
        maxScaleDownStep=s.max_scale_down_step,
        carbonCap=None
        if s.carbon_cap is None
        else {
            "aboveIntensity": s.carbon_cap.above_intensity,
            "maxReplicas": s.carbon_cap.max_replicas,
        },
    )


def placement_dict(p: Placement) -> dict[str, Any]:
    return optional(
        policy=p.policy,
        regions=list(p.regions) or None,
        residency=p.residency,
        spread=p.spread,
        maxIntensity=p.max_intensity,
        latencyPenalty=dict(p.latency_penalty) or None,
        minImprovementPercent=p.min_improvement_percent,
        minDwellSeconds=p.min_dwell_seconds,
    )


def to_resource(m: SmallModelSpec) -> dict[str, Any]:
    t, db = m.triton, m.triton.dynamic_batching
    return {
        "apiVersion": API,
        "kind": "SmallModel",
        "metadata": {"name": m.name, "namespace": m.namespace},
        "spec": {
            "model": optional(
                uri=m.model.uri,
                digest=m.model.digest,
                format=m.model.format,
                parameterCount=m.model.parameter_count,
            ),
            "triton": optional(
                maxBatchSize=t.max_batch_size,
                dynamicBatching={
                    "enabled": db.enabled,
                    "maxQueueDelayMicroseconds": db.max_queue_delay_microseconds,
                    "preferredBatchSizes": list(db.preferred_batch_sizes),
                },
                instanceCount=t.instance_count,
                inputs=[tensor_dict(x) for x in t.inputs],
                outputs=[tensor_dict(x) for x in t.outputs],
                image=t.image,
                parameters=dict(t.parameters),
            ),
            "resources": resources_dict(m.resources),
            "scaling": scaling_dict(m.scaling),
            "placement": placement_dict(m.placement),
            "card": optional(
                owner=m.card.owner,
                license=m.card.license,
                description=m.card.description,
                trainingData=m.card.training_data,
                intendedUse=m.card.intended_use,
                limitations=m.card.limitations,
                evaluation=[
                    optional(metric=e.metric, value=e.value, dataset=e.dataset)
                    for e in m.card.evaluation
                ],
            ),
        },
    }


@settings(max_examples=60, deadline=None)
@given(small_models())
def test_small_model_round_trips(m: SmallModelSpec) -> None:
    assert parse_small_model(to_resource(m)) == m


@settings(max_examples=40, deadline=None)
@given(small_models())
def test_small_model_round_trips_through_yaml(m: SmallModelSpec) -> None:
    assert parse_small_model(yaml.safe_load(yaml.safe_dump(to_resource(m)))) == m


@st.composite
def pipelines(draw: st.DrawFn) -> ModelPipelineSpec:
    inputs = draw(tensors(ident).filter(bool))
    step_names = draw(st.lists(label, min_size=1, max_size=5, unique=True))
    steps: list[Step] = []
    fed: set[str] = set()
    for i, name in enumerate(step_names):
        sources = [TensorSource(tensor=t.name) for t in inputs] + [
            TensorSource(tensor=draw(ident), step=earlier) for earlier in step_names[:i]
        ]
        picked = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=3))
        step_inputs = tuple(StepInput(name=f"in{j}", source=s) for j, s in enumerate(picked))
        fed |= {s.tensor for s in picked if s.step is None}
        steps.append(Step(name=name, model=draw(label), inputs=step_inputs))
    # every pipeline input must be read: the first step takes the ones nobody else does
    missing = [t for t in inputs if t.name not in fed]
    first = steps[0]
    steps[0] = Step(
        first.name,
        first.model,
        first.inputs
        + tuple(StepInput(f"x{j}", TensorSource(t.name)) for j, t in enumerate(missing)),
    )
    input_names = {t.name for t in inputs}
    out_sources = draw(
        st.lists(st.tuples(st.sampled_from(step_names), ident), min_size=1, max_size=3, unique=True)
    )
    outputs = tuple(
        PipelineOutput(
            name=f"out{j}" if f"out{j}" not in input_names else f"out{j}_",
            datatype=draw(st.sampled_from(DATATYPES)),
            dims=draw(dims),
            source=TensorSource(tensor=tensor, step=step),
        )
        for j, (step, tensor) in enumerate(out_sources)
    )
    gpus = draw(st.none() | st.integers(0, 8))
    return ModelPipelineSpec(
        name=draw(label),
        namespace=draw(label),
        inputs=inputs,
        outputs=outputs,
        steps=tuple(steps),
        scaling=draw(scalings(1 if gpus is None else gpus)),
        placement=draw(placements()),
        resources=None if gpus is None else draw(resources(gpus)),
    )


def ref(s: TensorSource) -> str:
    return s.tensor if s.step is None else f"{s.step}.{s.tensor}"


def pipeline_resource(p: ModelPipelineSpec) -> dict[str, Any]:
    spec = optional(
        inputs=[tensor_dict(t) for t in p.inputs],
        outputs=[
            {**tensor_dict(Tensor(o.name, o.datatype, o.dims)), "from": ref(o.source)}
            for o in p.outputs
        ],
        steps=[
            {
                "name": s.name,
                "model": s.model,
                "inputs": [{"name": i.name, "from": ref(i.source)} for i in s.inputs],
            }
            for s in p.steps
        ],
        scaling=scaling_dict(p.scaling),
        placement=placement_dict(p.placement),
        resources=None if p.resources is None else resources_dict(p.resources),
    )
    return {
        "apiVersion": API,
        "kind": "ModelPipeline",
        "metadata": {"name": p.name, "namespace": p.namespace},
        "spec": spec,
    }


@settings(max_examples=40, deadline=None)
@given(pipelines())
def test_pipeline_round_trips(p: ModelPipelineSpec) -> None:
    assert parse_model_pipeline(pipeline_resource(p)) == p


@settings(max_examples=40, deadline=None)
@given(
    small_models(),
    st.sampled_from(["minReplicas", "maxReplicas", "target", "tolerance"]),
    st.integers(-5, -1),
)
def test_negative_scaling_values_are_always_rejected(
    m: SmallModelSpec, key: str, value: int
) -> None:
    obj = to_resource(m)
    obj["spec"]["scaling"][key] = value
    try:
        parse_small_model(obj)
    except SpecError as err:
        assert any(e.path == f"spec.scaling.{key}" for e in err.errors)
    else:
        raise AssertionError(f"{key}={value} was accepted")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 5000)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
MODEL_PATHS: Final = [
    ("spec",),
    ("spec", "model"),
    ("spec", "triton"),
    ("spec", "triton", "dynamicBatching"),
    ("spec", "triton", "inputs"),
    ("spec", "resources"),
    ("spec", "resources", "cpu"),
    ("spec", "scaling"),
    ("spec", "scaling", "carbonCap"),
    ("spec", "placement"),
    ("spec", "placement", "regions"),
    ("spec", "placement", "latencyPenalty"),
    ("spec", "card"),
    ("metadata",),
    ("metadata", "name"),
]
PIPELINE_PATHS: Final = [
    ("spec", "inputs"),
    ("spec", "outputs"),
    ("spec", "steps"),
    ("spec", "scaling"),
]


def _put(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@settings(max_examples=80, deadline=None)
@given(small_models(), st.sampled_from(MODEL_PATHS), json_values)
def test_any_value_anywhere_gives_a_spec_error_not_a_crash(
    m: SmallModelSpec, path: tuple[str, ...], value: Any
) -> None:
    obj = to_resource(m)
    _put(obj, path, value)
    try:
        parse_small_model(obj)
    except SpecError as err:
        assert err.errors


@settings(max_examples=40, deadline=None)
@given(pipelines(), st.sampled_from(PIPELINE_PATHS), json_values)
def test_any_pipeline_value_gives_a_spec_error_not_a_crash(
    p: ModelPipelineSpec, path: tuple[str, ...], value: Any
) -> None:
    obj = pipeline_resource(p)
    _put(obj, path, value)
    try:
        parse_model_pipeline(obj)
    except SpecError as err:
        assert err.errors
