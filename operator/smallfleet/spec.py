"""Typed, validated views of SmallModel and ModelPipeline specs.

The CRD schema and its CEL rules reject most bad input at the API server. What
they cannot express (or what arrives from a file on disk, for `smallfleet
validate` and `render`) is checked here, with the same field paths, so the
operator, the CLI and the API server speak with one voice. Everything
downstream (render, placement, autoscaling) works on these frozen values and
never on raw dicts.

The parsing functions (`parse_small_model`, `parse_model_pipeline`) raise
`SpecError` carrying every problem found, each with a JSON path such as
`spec.scaling.maxReplicas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

ModelFormat = Literal["onnx", "pytorch", "tensorflow", "tensorrt", "python"]
DataType = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
ScalingMode = Literal["operator", "hpa", "keda", "none"]
ScalingMetric = Literal["queueTime", "pendingRequests", "inferencesPerSecond", "gpuUtilization"]
PlacementPolicy = Literal["carbon-aware", "pinned"]

# Triton backend for each artifact format.
BACKENDS: Final[dict[str, str]] = {
    "onnx": "onnxruntime",
    "pytorch": "pytorch",
    "tensorflow": "tensorflow",
    "tensorrt": "tensorrt",
    "python": "python",
}
URI_SCHEMES: Final = ("s3", "gs", "https", "http", "pvc")
DEFAULT_TRITON_IMAGE: Final = "nvcr.io/nvidia/tritonserver:24.10-py3"


@dataclass(frozen=True)
class FieldError:
    path: str  # e.g. "spec.scaling.maxReplicas"
    message: str  # says what is wrong and what would be right
    line: int | None = None  # 1-based line in the source file, when parsed from one

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message}"


class SpecError(ValueError):
    """Every problem found in one resource, with field paths."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: DataType
    dims: tuple[int, ...]  # -1 for a variable dimension; excludes the batch dimension


@dataclass(frozen=True)
class Artifact:
    uri: str  # s3://, gs://, https://, http://, pvc://claim/path
    digest: str  # "sha256:<64 hex>"
    format: ModelFormat
    parameter_count: int | None = None


@dataclass(frozen=True)
class DynamicBatching:
    enabled: bool = True
    max_queue_delay_microseconds: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class TritonSpec:
    max_batch_size: int = 8
    dynamic_batching: DynamicBatching = field(default_factory=DynamicBatching)
    instance_count: int = 1
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()
    image: str | None = None  # None: the operator's default Triton image
    parameters: tuple[tuple[str, str], ...] = ()  # config.pbtxt `parameters`, sorted by key


@dataclass(frozen=True)
class Resources:
    gpus: int = 1  # 0 means a CPU model
    gpu_product: str | None = None  # value of the node label nvidia.com/gpu.product
    cpu: str = "1"
    memory: str = "2Gi"


@dataclass(frozen=True)
class CarbonCap:
    """Lower maxReplicas to `max_replicas` while the region's intensity exceeds `above_intensity`."""

    above_intensity: float  # gCO2eq/kWh
    max_replicas: int


@dataclass(frozen=True)
class Scaling:
    mode: ScalingMode = "operator"
    min_replicas: int = 1
    max_replicas: int = 1
    metric: ScalingMetric = "queueTime"
    target: float = 50.0  # queueTime: ms per request; pendingRequests, inferencesPerSecond: per replica; gpuUtilization: percent
    tolerance: float = 0.1
    scale_up_stabilization_seconds: int = 0
    scale_down_stabilization_seconds: int = 120
    max_scale_up_step: int = 4
    max_scale_down_step: int = 1
    carbon_cap: CarbonCap | None = None


@dataclass(frozen=True)
class Placement:
    policy: PlacementPolicy = "carbon-aware"
    regions: tuple[str, ...] = ()  # allowed regions; empty: any region the cluster has
    residency: str | None = None  # e.g. "eu", "us": a jurisdiction every chosen region must lie in
    spread: int = 1  # keep this many regions for availability
    max_intensity: float | None = None  # gCO2eq/kWh ceiling
    latency_penalty: tuple[tuple[str, float], ...] = ()  # region -> gCO2eq/kWh-equivalent penalty
    min_improvement_percent: float | None = None  # None: operator default hysteresis
    min_dwell_seconds: int | None = None  # None: operator default dwell


@dataclass(frozen=True)
class Evaluation:
    metric: str
    value: str
    dataset: str | None = None


@dataclass(frozen=True)
class ModelCard:
    owner: str
    license: str
    description: str
    training_data: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    evaluation: tuple[Evaluation, ...] = ()


@dataclass(frozen=True)
class SmallModelSpec:
    name: str  # metadata.name; also the Triton model name
    namespace: str
    model: Artifact
    card: ModelCard
    triton: TritonSpec = field(default_factory=TritonSpec)
    resources: Resources = field(default_factory=Resources)
    scaling: Scaling = field(default_factory=Scaling)
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True)
class TensorSource:
    """Where a step's input tensor comes from: a pipeline input (step None) or an earlier step's output."""

    tensor: str
    step: str | None = None


@dataclass(frozen=True)
class StepInput:
    name: str  # the step model's input tensor
    source: TensorSource  # from the CRD field `from`: "<pipelineInput>" or "<step>.<output>"


@dataclass(frozen=True)
class Step:
    name: str
    model: str  # name of a SmallModel in the same namespace
    inputs: tuple[StepInput, ...]


@dataclass(frozen=True)
class PipelineOutput:
    name: str
    datatype: DataType
    dims: tuple[int, ...]
    source: TensorSource  # always a step output


@dataclass(frozen=True)
class ModelPipelineSpec:
    name: str
    namespace: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[PipelineOutput, ...]
    steps: tuple[Step, ...]
    scaling: Scaling = field(default_factory=Scaling)
    placement: Placement = field(default_factory=Placement)
    resources: Resources | None = None  # None: derived from the steps' SmallModels
