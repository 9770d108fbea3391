"""config.pbtxt, the model repository and the Triton command line, detail by detail."""

from __future__ import annotations

import dataclasses
from typing import Final

import pytest
from render_fixtures import CPU_PYTHON, GPU_ONNX, PIPELINE, PIPELINE_MODELS

from smallfleet.core.render import (
    ModelEntry,
    model_repository,
    plan_for_model,
    plan_for_pipeline,
    triton_args,
    triton_config,
)
from smallfleet.core.spec import (
    DynamicBatching,
    Resources,
    SmallModelSpec,
    SpecError,
    Tensor,
    TritonSpec,
)
from smallfleet.settings import Settings

SETTINGS: Final = Settings()


def _model(**changes: object) -> SmallModelSpec:
    triton = changes.pop("triton", GPU_ONNX.triton)
    resources = changes.pop("resources", GPU_ONNX.resources)
    fmt = changes.pop("format", "onnx")
    return dataclasses.replace(
        GPU_ONNX,
        triton=triton,  # type: ignore[arg-type]
        resources=resources,  # type: ignore[arg-type]
        model=dataclasses.replace(GPU_ONNX.model, format=fmt),  # type: ignore[arg-type]
        **changes,  # type: ignore[arg-type]
    )


def _config(spec: SmallModelSpec) -> str:
    return triton_config(plan_for_model(spec, SETTINGS).models[0])


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("onnx", 'backend: "onnxruntime"'),
        ("python", 'backend: "python"'),
        ("pytorch", 'backend: "pytorch"'),
        ("tensorflow", 'backend: "tensorflow"'),
        ("tensorrt", 'backend: "tensorrt"'),
    ],
)
def test_backend_follows_the_artifact_format(fmt: str, line: str) -> None:
    assert _config(_model(format=fmt)).splitlines()[1] == line


@pytest.mark.parametrize(
    ("triton", "resources", "present", "absent"),
    [
        # Batching is on by default whenever the model can batch.
        (
            TritonSpec(max_batch_size=8),
            Resources(gpus=1),
            ["max_batch_size: 8", "dynamic_batching {", "  max_queue_delay_microseconds: 0"],
            ["preferred_batch_size"],
        ),
        (
            TritonSpec(
                max_batch_size=32,
                dynamic_batching=DynamicBatching(
                    max_queue_delay_microseconds=500, preferred_batch_sizes=(32, 8, 8)
                ),
            ),
            Resources(gpus=1),
            ["  preferred_batch_size: [ 8, 32 ]", "  max_queue_delay_microseconds: 500"],
            [],
        ),
        (
            TritonSpec(max_batch_size=8, dynamic_batching=DynamicBatching(enabled=False)),
            Resources(gpus=1),
            ["max_batch_size: 8"],
            ["dynamic_batching"],
        ),
        # A model that cannot batch gets no batcher, whatever the default says.
        (
            TritonSpec(max_batch_size=0),
            Resources(gpus=1),
            ["max_batch_size: 0"],
            ["dynamic_batching"],
        ),
        (
            TritonSpec(instance_count=3),
            Resources(gpus=1),
            ["    count: 3", "    kind: KIND_GPU"],
            ["KIND_CPU"],
        ),
        (TritonSpec(), Resources(gpus=0), ["    kind: KIND_CPU"], ["KIND_GPU"]),
        (
            TritonSpec(parameters=(("b", "2"), ("a", 'say "hi"\\'))),
            Resources(gpus=0),
            [
                'parameters {\n  key: "a"\n  value: { string_value: "say \\"hi\\"\\\\" }\n}\n'
                'parameters {\n  key: "b"\n  value: { string_value: "2" }\n}'
            ],
            [],
        ),
        (
            TritonSpec(
                inputs=(Tensor("text", "BYTES", (1,)), Tensor("x", "BF16", (-1, 3))),
                outputs=(Tensor("y", "BOOL", (2,)),),
            ),
            Resources(gpus=0),
            [
                'input [\n  {\n    name: "text"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n  },\n'
                '  {\n    name: "x"\n    data_type: TYPE_BF16\n    dims: [ -1, 3 ]\n  }\n]',
                'output [\n  {\n    name: "y"\n    data_type: TYPE_BOOL\n    dims: [ 2 ]\n  }\n]',
            ],
            [],
        ),
        # Undeclared tensors are left to Triton's auto-complete.
        (TritonSpec(), Resources(gpus=1), [], ["input [", "output ["]),
    ],
)
def test_config_details(
    triton: TritonSpec, resources: Resources, present: list[str], absent: list[str]
) -> None:
    text = _config(_model(triton=triton, resources=resources))
    for fragment in present:
        assert fragment in text
    for fragment in absent:
        assert fragment not in text
    assert text.startswith(f'name: "{GPU_ONNX.name}"\n')
    assert text.endswith("\n")


def test_gpu_model_in_a_cpu_server_runs_on_cpu() -> None:
    pipeline = dataclasses.replace(PIPELINE, resources=Resources(gpus=0, cpu="2", memory="4Gi"))
    plan = plan_for_pipeline(pipeline, PIPELINE_MODELS, SETTINGS)
    assert all(not m.gpu for m in plan.models)
    assert "KIND_GPU" not in "".join(model_repository(plan).values())


def test_ensemble_config_maps_tensors_between_steps() -> None:
    plan = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS)
    text = triton_config(plan.models[-1])
    assert 'platform: "ensemble"' in text
    assert "instance_group" not in text and "dynamic_batching" not in text
    # retrieve's output 461 is both a pipeline output and rerank's input: one tensor.
    assert 'output_map {\n        key: "461"\n        value: "embedding"\n      }' in text
    assert 'input_map {\n        key: "embedding"\n        value: "embedding"\n      }' in text
    assert text.count("model_version: -1") == 2
    assert "max_batch_size: 16" in text


def test_intermediate_tensors_are_named_after_their_step() -> None:
    pipeline = dataclasses.replace(PIPELINE, outputs=PIPELINE.outputs[:1])
    plan = plan_for_pipeline(pipeline, PIPELINE_MODELS, SETTINGS)
    retrieve = plan.models[-1].steps[0]
    assert retrieve.output_map == (("461", "retrieve.461"),)
    assert ("embedding", "retrieve.461") in plan.models[-1].steps[1].input_map


def test_pipeline_resources_sum_cpu_and_memory_and_share_gpus() -> None:
    plan = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS)
    assert plan.resources == Resources(
        gpus=1, gpu_product="NVIDIA-L4", cpu="1500m", memory="3584Mi"
    )
    assert [m.name for m in plan.models] == ["retrieve", "rerank", "search"]


@pytest.mark.parametrize(
    ("models", "path", "fragment"),
    [
        ({"retrieve": PIPELINE_MODELS["retrieve"]}, "spec.steps[1].model", "rerank"),
        (
            {
                **PIPELINE_MODELS,
                "rerank": dataclasses.replace(
                    PIPELINE_MODELS["rerank"],
                    resources=Resources(gpus=1, gpu_product="NVIDIA-H100"),
                    triton=dataclasses.replace(PIPELINE_MODELS["rerank"].triton, max_batch_size=16),
                ),
                "retrieve": dataclasses.replace(
                    PIPELINE_MODELS["retrieve"],
                    resources=Resources(gpus=1, gpu_product="NVIDIA-L4"),
                ),
            },
            "spec.resources",
            "NVIDIA-H100, NVIDIA-L4",
        ),
        (
            {
                **PIPELINE_MODELS,
                "rerank": dataclasses.replace(
                    PIPELINE_MODELS["rerank"],
                    triton=dataclasses.replace(PIPELINE_MODELS["rerank"].triton, max_batch_size=0),
                ),
            },
            "spec.steps",
            "batch",
        ),
        (
            {
                **PIPELINE_MODELS,
                "rerank": dataclasses.replace(
                    PIPELINE_MODELS["rerank"],
                    triton=dataclasses.replace(PIPELINE_MODELS["rerank"].triton, image="other:1"),
                ),
                "retrieve": dataclasses.replace(
                    PIPELINE_MODELS["retrieve"],
                    triton=dataclasses.replace(PIPELINE_MODELS["retrieve"].triton, image="mine:2"),
                ),
            },
            "spec.steps",
            "Triton images",
        ),
        (
            {
                **PIPELINE_MODELS,
                "rerank": dataclasses.replace(
                    PIPELINE_MODELS["rerank"],
                    triton=dataclasses.replace(
                        PIPELINE_MODELS["rerank"].triton,
                        inputs=(
                            Tensor("embedding", "FP16", (384,)),
                            Tensor("attention_mask", "INT64", (-1,)),
                        ),
                    ),
                ),
            },
            "spec.steps[1].inputs[0].from",
            "",
        ),
    ],
)
def test_pipeline_errors_name_the_field(
    models: dict[str, SmallModelSpec], path: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as raised:
        plan_for_pipeline(PIPELINE, models, SETTINGS)
    assert raised.value.kind == "ModelPipeline"
    matching = [e for e in raised.value.errors if e.path == path]
    assert matching, [str(e) for e in raised.value.errors]
    assert fragment in matching[0].message


def test_ensemble_name_may_not_shadow_a_step_model() -> None:
    pipeline = dataclasses.replace(PIPELINE, name="rerank")
    with pytest.raises(SpecError) as raised:
        plan_for_pipeline(pipeline, PIPELINE_MODELS, SETTINGS)
    assert [e.path for e in raised.value.errors] == ["metadata.name"]


def test_args_load_every_model_explicitly_ensemble_last() -> None:
    plan = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS)
    args = triton_args(plan, "/repo")
    assert args[0] == "--model-repository=/repo"
    assert "--model-control-mode=explicit" in args
    loads = [a.removeprefix("--load-model=") for a in args if a.startswith("--load-model=")]
    assert loads == ["retrieve", "rerank", "search"]
    for flag in (
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--strict-readiness=true",
        "--exit-on-error=false",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
    ):
        assert flag in args


def test_cpu_server_does_not_ask_for_gpu_metrics() -> None:
    args = triton_args(plan_for_model(CPU_PYTHON, SETTINGS))
    assert "--allow-gpu-metrics=false" in args
    assert args[0] == "--model-repository=/models"


def test_repository_of_a_single_model_is_its_config() -> None:
    plan = plan_for_model(CPU_PYTHON, SETTINGS)
    assert model_repository(plan) == {"tokenizer/config.pbtxt": triton_config(plan.models[0])}


def test_image_comes_from_the_spec_or_the_settings() -> None:
    custom = dataclasses.replace(
        GPU_ONNX, triton=dataclasses.replace(GPU_ONNX.triton, image="registry.local/triton:1")
    )
    assert plan_for_model(custom, SETTINGS).image == "registry.local/triton:1"
    assert plan_for_model(GPU_ONNX, Settings(triton_image="t:2")).image == "t:2"


def test_entry_of_an_ensemble_has_no_artifact() -> None:
    plan = plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS)
    ensemble: ModelEntry = plan.models[-1]
    assert ensemble.is_ensemble and ensemble.artifact is None
    assert [m.artifact for m in plan.models[:-1]] == [
        PIPELINE_MODELS["retrieve"].model,
        PIPELINE_MODELS["rerank"].model,
    ]


def test_step_models_keep_their_images_only_when_they_agree() -> None:
    models = {
        **PIPELINE_MODELS,
        "rerank": dataclasses.replace(
            PIPELINE_MODELS["rerank"],
            triton=dataclasses.replace(PIPELINE_MODELS["rerank"].triton, image="custom:1"),
        ),
    }
    assert plan_for_pipeline(PIPELINE, models, SETTINGS).image == "custom:1"
    assert plan_for_pipeline(PIPELINE, PIPELINE_MODELS, SETTINGS).image == SETTINGS.triton_image
