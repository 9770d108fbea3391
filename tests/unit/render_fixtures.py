"""Specs shared by the render and plan tests: one GPU ONNX model, one CPU python model, a pipeline."""

from __future__ import annotations

from typing import Final

from smallfleet.core.spec import (
    Artifact,
    DynamicBatching,
    ModelCard,
    ModelPipelineSpec,
    PipelineOutput,
    Placement,
    Resources,
    Scaling,
    SmallModelSpec,
    Step,
    StepInput,
    Tensor,
    TensorSource,
    TritonSpec,
)

DIGEST_A: Final = "sha256:" + "a" * 64
DIGEST_B: Final = "sha256:" + "b" * 64

GPU_ONNX: Final = SmallModelSpec(
    name="minilm",
    namespace="models",
    model=Artifact(uri="s3://models/minilm-l6/model.onnx", digest=DIGEST_A, format="onnx"),
    card=ModelCard(owner="search-team", license="Apache-2.0", description="MiniLM-L6 int8"),
    triton=TritonSpec(
        max_batch_size=32,
        dynamic_batching=DynamicBatching(
            max_queue_delay_microseconds=200, preferred_batch_sizes=(16, 8)
        ),
        instance_count=2,
        inputs=(
            Tensor("input_ids", "INT64", (-1,)),
            Tensor("attention_mask", "INT64", (-1,)),
        ),
        outputs=(Tensor("last_hidden_state", "FP32", (-1, 384)),),
    ),
    resources=Resources(gpus=1, gpu_product="NVIDIA-L4", cpu="2", memory="4Gi"),
    scaling=Scaling(mode="operator", min_replicas=2, max_replicas=6),
    placement=Placement(regions=("eu-north-1", "eu-west-1")),
)

CPU_PYTHON: Final = SmallModelSpec(
    name="tokenizer",
    namespace="models",
    model=Artifact(uri="https://example.org/tokenizer.tar.gz", digest=DIGEST_B, format="python"),
    card=ModelCard(owner="search-team", license="MIT", description="A tokenizer"),
    triton=TritonSpec(
        max_batch_size=0,
        inputs=(Tensor("text", "BYTES", (1,)),),
        outputs=(Tensor("input_ids", "INT64", (128,)),),
        parameters=(("EXECUTION_ENV_PATH", "/models/tokenizer/env"),),
    ),
    resources=Resources(gpus=0, cpu="500m", memory="512Mi"),
    scaling=Scaling(mode="hpa", min_replicas=1, max_replicas=3, metric="inferencesPerSecond"),
)

RETRIEVE: Final = SmallModelSpec(
    name="retrieve",
    namespace="models",
    model=Artifact(uri="s3://models/minilm-l3/model.onnx", digest=DIGEST_A, format="onnx"),
    card=ModelCard(owner="search-team", license="Apache-2.0", description="MiniLM-L3"),
    triton=TritonSpec(
        max_batch_size=16,
        inputs=(
            Tensor("input_ids", "INT64", (-1,)),
            Tensor("attention_mask", "INT64", (-1,)),
        ),
        outputs=(Tensor("461", "FP32", (384,)),),
    ),
    resources=Resources(gpus=1, cpu="1", memory="2Gi"),
)

RERANK: Final = SmallModelSpec(
    name="rerank",
    namespace="models",
    model=Artifact(uri="s3://models/rerank/model.py", digest=DIGEST_B, format="python"),
    card=ModelCard(owner="search-team", license="Apache-2.0", description="Re-scorer"),
    triton=TritonSpec(
        max_batch_size=16,
        dynamic_batching=DynamicBatching(enabled=False),
        inputs=(Tensor("embedding", "FP32", (384,)), Tensor("attention_mask", "INT64", (-1,))),
        outputs=(Tensor("score", "FP32", (1,)),),
    ),
    resources=Resources(gpus=1, gpu_product="NVIDIA-L4", cpu="500m", memory="1536Mi"),
)

PIPELINE: Final = ModelPipelineSpec(
    name="search",
    namespace="models",
    inputs=(
        Tensor("input_ids", "INT64", (-1,)),
        Tensor("attention_mask", "INT64", (-1,)),
    ),
    outputs=(
        PipelineOutput("score", "FP32", (1,), TensorSource("score", "rerank")),
        PipelineOutput("embedding", "FP32", (384,), TensorSource("461", "retrieve")),
    ),
    steps=(
        Step(
            "retrieve",
            "retrieve",
            (
                StepInput("input_ids", TensorSource("input_ids")),
                StepInput("attention_mask", TensorSource("attention_mask")),
            ),
        ),
        Step(
            "rerank",
            "rerank",
            (
                StepInput("embedding", TensorSource("461", "retrieve")),
                StepInput("attention_mask", TensorSource("attention_mask")),
            ),
        ),
    ),
    scaling=Scaling(mode="operator", min_replicas=1, max_replicas=2),
)

PIPELINE_MODELS: Final = {"retrieve": RETRIEVE, "rerank": RERANK}
