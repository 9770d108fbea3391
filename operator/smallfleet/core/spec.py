"""Typed, validated views of SmallModel and ModelPipeline resources.

The API server checks every resource against the CRD's schema and CEL rules
before the operator sees it, but `smallfleet validate` and `render` read files
that no API server has seen, and the operator must not trust that objects
stored under older rules pass today's. So parsing here checks what the API
server checks: the CRD's own schema (embedded in `crd_schemas`, interpreted by
`schema`, defaults included) and its CEL rules, restated below with the same
words and field paths so that the operator, the CLI and the API server speak
with one voice. What no schema can express, the wiring between a pipeline and
the SmallModels it names, is `validate_pipeline_refs`. Everything downstream
(render, placement, autoscaling) works on these frozen values, never on raw
dicts.

`parse_small_model` and `parse_model_pipeline` take a whole resource
(apiVersion, kind, metadata, spec) and raise `SpecError` carrying every
problem found, each a `FieldError` with a path such as
`spec.scaling.maxReplicas`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from smallfleet.core.crd_schemas import SCHEMAS
from smallfleet.core.schema import apply as apply_schema
from smallfleet.core.schema import describe, go_regex, matches

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


HttpAuth = Literal["bearer", "basic"]


@dataclass(frozen=True)
class S3Access:
    """`credentials.s3`: where S3 requests go and how they are signed."""

    region: str = "us-east-1"
    endpoint: str | None = None  # None: AWS, virtual-hosted; set: path-style on this endpoint
    role_arn: str | None = None  # webIdentity: the role STS is asked to assume
    audience: str = "sts.amazonaws.com"  # webIdentity: the projected token's audience
    sts_endpoint: str | None = None  # webIdentity: None means https://sts.<region>.amazonaws.com


@dataclass(frozen=True)
class GsAccess:
    """`credentials.gs`: the JSON API endpoint, and whether the pod's own identity signs."""

    endpoint: str | None = None  # None: https://storage.googleapis.com
    workload_identity: bool = False


@dataclass(frozen=True)
class Credentials:
    """`spec.model.credentials`: only names and endpoints, never a secret value.

    The operator renders these into the fetch init container (secretKeyRef env,
    a secret volume or a projected token); it never reads the Secret itself.
    """

    secret_name: str | None = None
    s3: S3Access | None = None
    gs: GsAccess | None = None
    http_auth: HttpAuth = "bearer"


@dataclass(frozen=True)
class Artifact:
    uri: str  # s3://, gs://, https://, http://, pvc://claim/path
    digest: str  # "sha256:<64 hex>"
    format: ModelFormat
    parameter_count: int | None = None
    credentials: Credentials | None = None  # None: an anonymous download


@dataclass(frozen=True)
class DynamicBatching:
    enabled: bool = True
    # 0: never hold a request for others; batches form from what queued while the model was
    # busy (bench/triton_batching.py: never slower than no batching, unlike a fixed delay).
    max_queue_delay_microseconds: int = 0
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


TolerationOperator = Literal["Equal", "Exists"]
TaintEffect = Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Toleration:
    """One toleration of the server pods, as in a pod's spec (None: not written)."""

    key: str | None = None
    operator: TolerationOperator | None = None
    value: str | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class Affinity:
    """The user's scheduling affinity; each part a core/v1 object the API server checks.

    Kept as written (free-form JSON objects): the operator only joins its own
    node requirements into `node_affinity`'s required terms when rendering.
    """

    node_affinity: Mapping[str, Any] | None = field(default=None, hash=False)
    pod_affinity: Mapping[str, Any] | None = field(default=None, hash=False)
    pod_anti_affinity: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class PodSettings:
    """`spec.pod`: what a model owner (or the chart's podDefaults) adds to the server pods.

    None or empty means "not set", so that a chart-wide default can fill the
    field (`with_defaults`); the operator's own settings are merged in at render.
    """

    tolerations: tuple[Toleration, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()  # sorted by key
    affinity: Affinity | None = None
    image_pull_secrets: tuple[str, ...] = ()
    service_account_name: str | None = None
    priority_class_name: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # (name, value), in the order written
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    annotations: tuple[tuple[str, str], ...] = ()  # sorted by key

    def with_defaults(self, defaults: PodSettings) -> PodSettings:
        """Each field this one leaves unset taken from `defaults` (a field set here wins whole)."""
        return PodSettings(
            **{
                f.name: getattr(self, f.name) or getattr(defaults, f.name)
                for f in dataclasses.fields(self)
            }
        )


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway a model's routes attach to (their parentRef)."""

    name: str
    namespace: str | None = None  # None: the model's namespace
    section_name: str | None = None  # None: every listener that allows the route


@dataclass(frozen=True)
class HTTPExpose:
    enabled: bool = True
    path_prefix: str | None = None  # None: /v2/models/<name>


@dataclass(frozen=True)
class GRPCExpose:
    enabled: bool = False
    section_name: str | None = None  # None: the gateway's sectionName
    hostnames: tuple[str, ...] = ()  # empty: the shared hostnames


@dataclass(frozen=True)
class Expose:
    """`spec.expose`: Gateway API routes from a Gateway to the model's Service."""

    gateway: GatewayRef
    hostnames: tuple[str, ...] = ()
    http: HTTPExpose = field(default_factory=HTTPExpose)
    grpc: GRPCExpose = field(default_factory=GRPCExpose)


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
    pool: str | None = None  # spec.serving.pool: loaded into a ServingPool's shared servers
    pod: PodSettings = field(default_factory=PodSettings)
    expose: Expose | None = None  # spec.expose: Gateway API routes to the model's Service


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
    pod: PodSettings = field(default_factory=PodSettings)
    expose: Expose | None = None  # spec.expose: Gateway API routes to the pipeline's Service


# --- Parsing -----------------------------------------------------------------

API_GROUP: Final = "serving.smallfleet.io"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
SMALL_MODEL: Final = "SmallModel"
MODEL_PIPELINE: Final = "ModelPipeline"
MAX_NAME_LENGTH: Final = 40

# Compiled with Go's regexp semantics, as the API server's CEL matches them (`$` is the
# end of the text, `\d` is ASCII).
_NAME_RE: Final = go_regex(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY_RE: Final = go_regex(
    r"^\+?(?P<num>\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$"
)

# Rule messages, word for word as in the CRDs' x-kubernetes-validations, so that
# offline validation and the API server say the same thing (a unit test checks).
MSG_NAME: Final = (
    "metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, "
    "digits and '-', starting with a letter): it names the {what} in Triton and the "
    "{owner}'s Service and Deployments"
)
MSG_GPU_METRIC: Final = (
    "scaling.metric gpuUtilization needs resources.gpus > 0: a CPU model has no GPU to measure"
)
MSG_TENSORRT_GPU: Final = (
    "model.format tensorrt needs resources.gpus > 0: a TensorRT plan runs only on a GPU"
)
MSG_URI_SCHEME: Final = "uri must start with s3://, gs://, https://, http:// or pvc://"
MSG_URI_PATH: Final = "s3://, gs:// and pvc:// URIs need a bucket or claim and a path after it, as in pvc://claim/path"
MSG_URI_HOST: Final = "http:// and https:// URIs need a host"
MSG_BATCHING: Final = (
    "dynamicBatching needs maxBatchSize > 0: a model that cannot batch cannot be batched "
    "dynamically (set enabled: false or raise maxBatchSize)"
)
MSG_PREFERRED: Final = "every preferredBatchSizes entry must be at most maxBatchSize"
MSG_DIMS: Final = "dims must be positive, or -1 for a variable dimension"
MSG_PARAM_KEYS: Final = (
    "parameter keys must be identifiers of at most 128 characters (letters, digits, '_')"
)
MSG_GPU_PRODUCT: Final = "gpuProduct needs gpus > 0: a CPU model cannot ask for a GPU product"
MSG_CPU: Final = 'cpu must be a positive Kubernetes quantity such as "2" or "500m"'
MSG_MEMORY: Final = 'memory must be a positive Kubernetes quantity such as "2Gi"'
MSG_MIN_MAX: Final = "minReplicas must not exceed maxReplicas"
MSG_SCALE_TO_ZERO: Final = (
    "minReplicas 0 (scale to zero) needs mode keda or none: the operator and an HPA read "
    "metrics from a running replica"
)
MSG_GPU_TARGET: Final = "target is a percentage for metric gpuUtilization and must be at most 100"
MSG_CAP_RANGE: Final = "carbonCap.maxReplicas must lie within [minReplicas, maxReplicas]"
MSG_CAP_MODE: Final = "carbonCap needs a scaling mode: mode none keeps a fixed replica count"
MSG_PINNED: Final = "policy pinned needs regions"
MSG_SPREAD: Final = "spread must not exceed the number of regions"
MSG_PENALTY_REGIONS: Final = "latencyPenalty may only name regions listed in regions"
MSG_PENALTY_KEYS: Final = "latencyPenalty keys must be region names (lower case letters, digits and '-', at most 63 characters)"
MSG_STEP_INPUT: Final = (
    "a step reads a pipeline input that does not exist: a from without a dot must name one "
    "of spec.inputs"
)
MSG_STEP_ORDER: Final = (
    'a step reads from a step that is not listed before it: "<step>.<tensor>" must name an '
    "earlier step"
)
MSG_OUTPUT_STEP: Final = (
    'an output comes from a step that does not exist: from must be "<step>.<tensor>" of one '
    "of spec.steps"
)
MSG_UNUSED_INPUT: Final = "a pipeline input is not read by any step"
MSG_OUTPUT_NAME: Final = (
    "an output has the name of a pipeline input: the ensemble's tensor names must be unique"
)
MSG_OUTPUT_SHARED: Final = (
    "two outputs come from the same step output: a Triton ensemble maps each step output to "
    "one tensor"
)
MSG_POD_LABELS: Final = (
    "pod.labels must not set the operator's own keys (app.kubernetes.io/* and "
    "serving.smallfleet.io/*): the operator selects and describes its pods by them"
)
MSG_POD_ANNOTATIONS: Final = (
    "pod.annotations must not set the operator's own keys (app.kubernetes.io/* and "
    "serving.smallfleet.io/*): the operator records the digest and config hash under them"
)
MSG_POD_ENV: Final = "pod.env must not set HOME or SMALLFLEET_* variables: the operator sets them"
MSG_LABEL_KEYS: Final = (
    "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 "
    "letters, digits, '-', '_' or '.'"
)
MSG_TOLERATION_EXISTS: Final = "a toleration with operator Exists must not have a value"
MSG_TOLERATION_KEY: Final = (
    "a toleration without a key must have operator Exists (it then tolerates every taint)"
)
MSG_TOLERATION_SECONDS: Final = "tolerationSeconds needs effect NoExecute"
MSG_EXPOSE_NOTHING: Final = (
    "expose needs http or grpc enabled: with both off there is nothing to route"
)
MSG_EXPOSE_POOLED: Final = (
    "expose is not available with serving.pool: a pooled model has no Service of its own "
    "to route to"
)
MSG_CREDENTIALS_SOURCE: Final = (
    "credentials need secretRef, s3.webIdentity or gs.workloadIdentity: name where the fetch "
    "step's identity comes from"
)
MSG_CREDENTIALS_EXCLUSIVE: Final = (
    "secretRef and a workload identity (s3.webIdentity, gs.workloadIdentity) exclude each "
    "other: name one source of credentials"
)
MSG_CREDENTIALS_PVC: Final = (
    "credentials do not apply to pvc:// artifacts: the claim is mounted, not downloaded"
)
MSG_CREDENTIALS_S3: Final = "credentials.s3 needs an s3:// uri"
MSG_CREDENTIALS_GS: Final = "credentials.gs needs a gs:// uri"
MSG_CREDENTIALS_HTTPS: Final = "credentials.https needs an https:// or http:// uri"
MSG_CREDENTIALS_POOLED: Final = (
    "model.credentials is not available with serving.pool: a pool server's fetch agent is "
    "shared by the models of every owner in the pool, so it would hold each one's "
    "credentials; serve a private artifact on its own server"
)
# The label and annotation prefixes the operator owns on its pods.
RESERVED_POD_KEY_PREFIXES: Final = ("app.kubernetes.io/", f"{API_GROUP}/")
# The Triton container's variables the operator sets itself.
RESERVED_ENV: Final = "HOME"
RESERVED_ENV_PREFIX: Final = "SMALLFLEET_"
_LABEL_KEY_RE: Final = go_regex(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

# Reasons, worded as the API server words each x-kubernetes-validations reason.
INVALID: Final = "Invalid value"
FORBIDDEN: Final = "Forbidden"
REQUIRED: Final = "Required value"


def _is_positive_quantity(value: object) -> bool:
    m = _QUANTITY_RE.match(str(value))
    return m is not None and float(m.group("num")) > 0


class _Rules:
    """Collects rule failures; a rule that meets a value of the wrong type is skipped,
    because the structural check has already reported that value."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def check(
        self,
        path: str,
        message: str,
        ok: Callable[..., bool],
        *args: Any,
        reason: str = INVALID,
        value: Any = None,
    ) -> None:
        """Record `message` at `path` unless `ok(*args)` holds.

        Worded like the API server: the rule's reason first, then the refused
        value when it is a scalar and the rule names no fieldPath.
        """
        try:
            passed = ok(*args)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError):
            return
        if not passed:
            shown = f"{describe(value)}: " if value is not None else ""
            self.errors.append(FieldError(path, f"{reason}: {shown}{message}"))


def _envelope(obj: Mapping[str, Any], kind: str, rules: _Rules) -> tuple[str, str]:
    what, owner = ("model", "model") if kind == SMALL_MODEL else ("ensemble", "pipeline")
    if obj.get("apiVersion", API_VERSION) != API_VERSION:
        rules.errors.append(
            FieldError(
                "apiVersion", f"Unsupported value: {obj.get('apiVersion')!r}: must be {API_VERSION}"
            )
        )
    if obj.get("kind", kind) != kind:
        rules.errors.append(
            FieldError("kind", f"Unsupported value: {obj.get('kind')!r}: must be {kind}")
        )
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        rules.errors.append(FieldError("metadata.name", "Required value"))
        name = ""
    else:
        rules.check(
            "metadata.name",
            MSG_NAME.format(what=what, owner=owner),
            lambda: _NAME_RE.match(name) is not None and len(name) <= MAX_NAME_LENGTH,
        )
    namespace = meta.get("namespace")
    return name, namespace if isinstance(namespace, str) and namespace else "default"


def _structural(obj: Mapping[str, Any], kind: str, rules: _Rules) -> dict[str, Any]:
    body = {k: v for k, v in obj.items() if k in ("apiVersion", "kind", "metadata", "spec")}
    if "spec" not in body:
        rules.errors.append(FieldError("spec", "Required value"))
        return {}
    checked, problems = apply_schema(SCHEMAS[kind]["properties"]["spec"], body["spec"], "spec")
    rules.errors.extend(FieldError(path, message) for path, message in problems)
    return checked if isinstance(checked, dict) else {}


def _tensor_rules(tensors: Any, path: str, rules: _Rules) -> None:
    if not isinstance(tensors, list):
        return
    for i, t in enumerate(tensors):
        rules.check(
            f"{path}[{i}].dims", MSG_DIMS, lambda t: all(d == -1 or d > 0 for d in t["dims"]), t
        )


def _resources_rules(res: Mapping[str, Any], path: str, rules: _Rules) -> None:
    rules.check(
        f"{path}.gpuProduct",
        MSG_GPU_PRODUCT,
        lambda: "gpuProduct" not in res or res["gpus"] > 0,
        reason=FORBIDDEN,
    )
    for key, message in (("cpu", MSG_CPU), ("memory", MSG_MEMORY)):
        value = res.get(key)
        if value is not None:
            rules.check(f"{path}.{key}", message, _is_positive_quantity, value, value=value)


def _scaling_rules(sc: Mapping[str, Any], path: str, rules: _Rules) -> None:
    rules.check(
        f"{path}.minReplicas",
        f"{MSG_MIN_MAX} ({sc.get('minReplicas')} > {sc.get('maxReplicas')})",
        lambda: sc["minReplicas"] <= sc["maxReplicas"],
    )
    rules.check(
        f"{path}.minReplicas",
        MSG_SCALE_TO_ZERO,
        lambda: sc["minReplicas"] > 0 or sc["mode"] in ("keda", "none"),
    )
    rules.check(
        f"{path}.target",
        MSG_GPU_TARGET,
        lambda: sc["metric"] != "gpuUtilization" or sc["target"] <= 100.0,
    )
    cap = sc.get("carbonCap")
    if cap is not None:
        rules.check(
            f"{path}.carbonCap.maxReplicas",
            MSG_CAP_RANGE,
            lambda: sc["minReplicas"] <= cap["maxReplicas"] <= sc["maxReplicas"],
        )
        rules.check(
            f"{path}.carbonCap", MSG_CAP_MODE, lambda: sc["mode"] != "none", reason=FORBIDDEN
        )


def _placement_rules(pl: Mapping[str, Any], path: str, rules: _Rules) -> None:
    regions = pl.get("regions")
    regions = regions if isinstance(regions, list) else []
    rules.check(
        f"{path}.regions",
        MSG_PINNED,
        lambda: pl["policy"] != "pinned" or len(regions) > 0,
        reason=REQUIRED,
    )
    rules.check(
        f"{path}.spread",
        f"{MSG_SPREAD} ({pl.get('spread')} > {len(regions)})",
        lambda: not regions or pl["spread"] <= len(regions),
    )
    penalty = pl.get("latencyPenalty")
    if penalty is not None:
        rules.check(
            f"{path}.latencyPenalty",
            MSG_PENALTY_KEYS,
            lambda: all(matches(k, r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$") for k in penalty),
        )
        rules.check(
            f"{path}.latencyPenalty",
            MSG_PENALTY_REGIONS,
            lambda: not regions or all(k in regions for k in penalty),
        )


def _label_keys_ok(keys: Any) -> bool:
    return all(len(k) <= 316 and _LABEL_KEY_RE.match(k) is not None for k in keys)


def _pod_rules(pod: Mapping[str, Any], path: str, rules: _Rules) -> None:
    """The CEL rules of `spec.pod`, in the order the CRD lists them."""
    for key, message in (("labels", MSG_POD_LABELS), ("annotations", MSG_POD_ANNOTATIONS)):
        found = pod.get(key)
        if found is None:
            continue
        rules.check(
            f"{path}.{key}",
            message,
            lambda m: not any(k.startswith(RESERVED_POD_KEY_PREFIXES) for k in m),
            found,
            reason=FORBIDDEN,
        )
    env = pod.get("env")
    if env is not None:
        rules.check(
            f"{path}.env",
            MSG_POD_ENV,
            lambda: all(
                e["name"] != RESERVED_ENV and not e["name"].startswith(RESERVED_ENV_PREFIX)
                for e in env
            ),
            reason=FORBIDDEN,
        )
    for i, t in enumerate(pod.get("tolerations") or ()):
        where = f"{path}.tolerations[{i}]"
        rules.check(
            where,
            MSG_TOLERATION_EXISTS,
            lambda t: t.get("operator") != "Exists" or not t.get("value"),
            t,
        )
        rules.check(
            where,
            MSG_TOLERATION_KEY,
            lambda t: bool(t.get("key")) or t.get("operator") == "Exists",
            t,
        )
        rules.check(
            where,
            MSG_TOLERATION_SECONDS,
            lambda t: "tolerationSeconds" not in t or t.get("effect") == "NoExecute",
            t,
        )
    for key in ("nodeSelector", "labels", "annotations"):
        found = pod.get(key)
        if found is not None:
            rules.check(f"{path}.{key}", MSG_LABEL_KEYS, _label_keys_ok, found)


def _expose_rules(expose: Mapping[str, Any], path: str, rules: _Rules) -> None:
    rules.check(
        path, MSG_EXPOSE_NOTHING, lambda: expose["http"]["enabled"] or expose["grpc"]["enabled"]
    )


def _credentials_rules(creds: Mapping[str, Any], path: str, rules: _Rules) -> None:
    def identity() -> bool:
        s3, gs = creds.get("s3") or {}, creds.get("gs") or {}
        return "webIdentity" in s3 or bool(gs.get("workloadIdentity"))

    rules.check(path, MSG_CREDENTIALS_SOURCE, lambda: "secretRef" in creds or identity())
    rules.check(path, MSG_CREDENTIALS_EXCLUSIVE, lambda: "secretRef" not in creds or not identity())


def _model_rules(model: Mapping[str, Any], path: str, rules: _Rules) -> None:
    """The CEL rules of `spec.model` (credentials against the URI's scheme), in CRD order."""
    creds = model.get("credentials")
    if creds is None:
        return
    uri = model["uri"]
    rules.check(
        f"{path}.credentials",
        MSG_CREDENTIALS_PVC,
        lambda: not uri.startswith("pvc://"),
        reason=FORBIDDEN,
    )
    for key, message, pattern in (
        ("s3", MSG_CREDENTIALS_S3, r"^s3://"),
        ("gs", MSG_CREDENTIALS_GS, r"^gs://"),
        ("https", MSG_CREDENTIALS_HTTPS, r"^https?://"),
    ):
        rules.check(
            f"{path}.credentials.{key}",
            message,
            lambda k, p: k not in creds or matches(uri, p),
            key,
            pattern,
            reason=FORBIDDEN,
        )
    _credentials_rules(creds, f"{path}.credentials", rules)


def _small_model_rules(spec: Mapping[str, Any], rules: _Rules) -> None:
    model, triton = spec.get("model", {}), spec.get("triton", {})
    resources, scaling = spec.get("resources", {}), spec.get("scaling", {})
    rules.check(
        "spec.scaling.metric",
        MSG_GPU_METRIC,
        lambda: scaling["metric"] != "gpuUtilization" or resources["gpus"] > 0,
    )
    rules.check(
        "spec.model.format",
        MSG_TENSORRT_GPU,
        lambda: model["format"] != "tensorrt" or resources["gpus"] > 0,
    )
    rules.check(
        "spec.expose",
        MSG_EXPOSE_POOLED,
        lambda: "expose" not in spec or not (spec.get("serving") or {}).get("pool"),
        reason=FORBIDDEN,
    )
    rules.check(
        "spec.model.credentials",
        MSG_CREDENTIALS_POOLED,
        lambda: "credentials" not in model or not (spec.get("serving") or {}).get("pool"),
        reason=FORBIDDEN,
    )
    if "expose" in spec:
        _expose_rules(spec["expose"], "spec.expose", rules)
    _model_rules(model, "spec.model", rules)
    uri = model.get("uri")
    if isinstance(uri, str):
        for message, ok in (
            (MSG_URI_SCHEME, lambda u: matches(u, r"^(s3|gs|https|http|pvc)://")),
            (
                MSG_URI_PATH,
                lambda u: (
                    not matches(u, r"^(s3|gs|pvc)://")
                    or matches(u, r"^(s3|gs|pvc)://[^/]+/[^/].*$")
                ),
            ),
            (
                MSG_URI_HOST,
                lambda u: not matches(u, r"^https?://") or matches(u, r"^https?://[^/]+"),
            ),
        ):
            rules.check("spec.model.uri", message, ok, uri, value=uri)
    batching = triton.get("dynamicBatching")
    if batching is not None:
        rules.check(
            "spec.triton.dynamicBatching",
            MSG_BATCHING,
            lambda: not batching["enabled"] or triton["maxBatchSize"] > 0,
            reason=FORBIDDEN,
        )
        rules.check(
            "spec.triton.dynamicBatching.preferredBatchSizes",
            MSG_PREFERRED,
            lambda: all(
                b <= triton["maxBatchSize"] for b in batching.get("preferredBatchSizes", [])
            ),
        )
    _tensor_rules(triton.get("inputs"), "spec.triton.inputs", rules)
    _tensor_rules(triton.get("outputs"), "spec.triton.outputs", rules)
    params = triton.get("parameters")
    if params is not None:
        rules.check(
            "spec.triton.parameters",
            MSG_PARAM_KEYS,
            lambda: all(matches(k, r"^[A-Za-z_][A-Za-z0-9_]{0,127}$") for k in params),
        )
    _resources_rules(resources, "spec.resources", rules)
    _scaling_rules(scaling, "spec.scaling", rules)
    _placement_rules(spec.get("placement", {}), "spec.placement", rules)
    if "pod" in spec:
        _pod_rules(spec["pod"], "spec.pod", rules)


def _source(ref: str) -> TensorSource:
    step, dot, tensor = ref.partition(".")
    return TensorSource(tensor=tensor, step=step) if dot else TensorSource(tensor=ref)


def _reads_earlier_steps(step: Mapping[str, Any], step_names: list[str]) -> bool:
    here = step_names.index(step["name"])
    for i in step["inputs"]:
        src = _source(i["from"]).step
        if src is not None and (src not in step_names or step_names.index(src) >= here):
            return False
    return True


def _pipeline_rules(spec: Mapping[str, Any], rules: _Rules) -> None:
    inputs, outputs, steps = spec.get("inputs", []), spec.get("outputs", []), spec.get("steps", [])
    try:
        input_names = [p["name"] for p in inputs]
        step_names = [s["name"] for s in steps]
    except (TypeError, KeyError):
        return
    # The API server reports each of these rules once; offline, each offender is named.
    for s in steps:
        rules.check(
            "spec.steps",
            f"{MSG_STEP_INPUT} (step {s.get('name')})",
            lambda s: all("." in i["from"] or i["from"] in input_names for i in s["inputs"]),
            s,
        )
    for s in steps:
        rules.check(
            "spec.steps",
            f"{MSG_STEP_ORDER} (step {s.get('name')})",
            _reads_earlier_steps,
            s,
            step_names,
        )
    for o in outputs:
        rules.check(
            "spec.outputs",
            f"{MSG_OUTPUT_STEP} (output {o.get('name')})",
            lambda o: _source(o["from"]).step in step_names,
            o,
        )
    for p in inputs:
        rules.check(
            "spec.inputs",
            f"{MSG_UNUSED_INPUT} (input {p.get('name')})",
            lambda p: any(i["from"] == p["name"] for s in steps for i in s["inputs"]),
            p,
        )
    rules.check(
        "spec.scaling.metric",
        MSG_GPU_METRIC,
        lambda: (
            spec["scaling"]["metric"] != "gpuUtilization"
            or "resources" not in spec
            or spec["resources"]["gpus"] > 0
        ),
    )
    _tensor_rules(inputs, "spec.inputs", rules)
    _tensor_rules(outputs, "spec.outputs", rules)
    if "resources" in spec:
        _resources_rules(spec["resources"], "spec.resources", rules)
    _scaling_rules(spec.get("scaling", {}), "spec.scaling", rules)
    _placement_rules(spec.get("placement", {}), "spec.placement", rules)
    if "pod" in spec:
        _pod_rules(spec["pod"], "spec.pod", rules)
    if "expose" in spec:
        _expose_rules(spec["expose"], "spec.expose", rules)
    # The ensemble's tensor names must not clash (two CEL rules; offline, each offender is named).
    seen: dict[str, str] = {}
    for i, o in enumerate(outputs):
        if not isinstance(o, Mapping):
            continue
        if o.get("name") in input_names:
            rules.errors.append(
                FieldError(
                    f"spec.outputs[{i}].name",
                    f"{INVALID}: {describe(o.get('name'))}: {MSG_OUTPUT_NAME} "
                    f"(output {o.get('name')})",
                )
            )
        src = o.get("from")
        if isinstance(src, str) and src in seen:
            rules.errors.append(
                FieldError(
                    f"spec.outputs[{i}].from",
                    f"{INVALID}: {describe(src)}: {MSG_OUTPUT_SHARED} "
                    f"({src} already feeds output {seen[src]})",
                )
            )
        elif isinstance(src, str):
            seen[src] = str(o.get("name"))


def _tensor(d: Mapping[str, Any]) -> Tensor:
    return Tensor(name=d["name"], datatype=d["datatype"], dims=tuple(d["dims"]))


def _resources(d: Mapping[str, Any]) -> Resources:
    return Resources(
        gpus=d["gpus"], gpu_product=d.get("gpuProduct"), cpu=str(d["cpu"]), memory=str(d["memory"])
    )


def _scaling(d: Mapping[str, Any]) -> Scaling:
    cap = d.get("carbonCap")
    return Scaling(
        mode=d["mode"],
        min_replicas=d["minReplicas"],
        max_replicas=d["maxReplicas"],
        metric=d["metric"],
        target=float(d["target"]),
        tolerance=float(d["tolerance"]),
        scale_up_stabilization_seconds=d["scaleUpStabilizationSeconds"],
        scale_down_stabilization_seconds=d["scaleDownStabilizationSeconds"],
        max_scale_up_step=d["maxScaleUpStep"],
        max_scale_down_step=d["maxScaleDownStep"],
        carbon_cap=None
        if cap is None
        else CarbonCap(
            above_intensity=float(cap["aboveIntensity"]), max_replicas=cap["maxReplicas"]
        ),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _placement(d: Mapping[str, Any]) -> Placement:
    return Placement(
        policy=d["policy"],
        regions=tuple(d.get("regions", ())),
        residency=d.get("residency"),
        spread=d["spread"],
        max_intensity=_optional_float(d.get("maxIntensity")),
        latency_penalty=tuple(
            sorted((k, float(v)) for k, v in d.get("latencyPenalty", {}).items())
        ),
        min_improvement_percent=_optional_float(d.get("minImprovementPercent")),
        min_dwell_seconds=d.get("minDwellSeconds"),
    )


def _credentials(d: Mapping[str, Any] | None) -> Credentials | None:
    """`spec.model.credentials` (schema-checked, defaults applied) as values; None when unset."""
    if d is None:
        return None
    s3, gs = d.get("s3"), d.get("gs")
    web = (s3 or {}).get("webIdentity")
    return Credentials(
        secret_name=(d.get("secretRef") or {}).get("name"),
        s3=None
        if s3 is None
        else S3Access(
            region=s3["region"],
            endpoint=s3.get("endpoint"),
            role_arn=None if web is None else web["roleArn"],
            audience="sts.amazonaws.com" if web is None else web["audience"],
            sts_endpoint=None if web is None else web.get("stsEndpoint"),
        ),
        gs=None
        if gs is None
        else GsAccess(endpoint=gs.get("endpoint"), workload_identity=gs["workloadIdentity"]),
        http_auth=(d.get("https") or {}).get("auth", "bearer"),
    )


def _card(d: Mapping[str, Any]) -> ModelCard:
    return ModelCard(
        owner=d["owner"],
        license=d["license"],
        description=d["description"],
        training_data=d.get("trainingData"),
        intended_use=d.get("intendedUse"),
        limitations=d.get("limitations"),
        evaluation=tuple(
            Evaluation(metric=e["metric"], value=e["value"], dataset=e.get("dataset"))
            for e in d.get("evaluation", ())
        ),
    )


def pod_settings(d: Mapping[str, Any]) -> PodSettings:
    """`spec.pod` (schema-checked, as `parse_pod_settings` or a resource parse leaves it) as values."""
    aff = d.get("affinity")
    return PodSettings(
        tolerations=tuple(
            Toleration(
                key=t.get("key"),
                operator=t.get("operator"),
                value=t.get("value"),
                effect=t.get("effect"),
                toleration_seconds=t.get("tolerationSeconds"),
            )
            for t in d.get("tolerations") or ()
        ),
        node_selector=tuple(sorted((d.get("nodeSelector") or {}).items())),
        affinity=None
        if not aff
        else Affinity(
            node_affinity=aff.get("nodeAffinity"),
            pod_affinity=aff.get("podAffinity"),
            pod_anti_affinity=aff.get("podAntiAffinity"),
        ),
        image_pull_secrets=tuple(s["name"] for s in d.get("imagePullSecrets") or ()),
        service_account_name=d.get("serviceAccountName"),
        priority_class_name=d.get("priorityClassName"),
        env=tuple((e["name"], e.get("value", "")) for e in d.get("env") or ()),
        labels=tuple(sorted((d.get("labels") or {}).items())),
        annotations=tuple(sorted((d.get("annotations") or {}).items())),
    )


def parse_pod_settings(value: Any, path: str = "podDefaults") -> PodSettings:
    """A `spec.pod` block on its own (the chart's podDefaults), checked as the CRD checks it.

    Raises SpecError with every problem, paths under `path`.
    """
    rules = _Rules()
    schema = SCHEMAS[SMALL_MODEL]["properties"]["spec"]["properties"]["pod"]
    checked, problems = apply_schema(schema, value, path)
    rules.errors.extend(FieldError(p, m) for p, m in problems)
    if not rules.errors and isinstance(checked, Mapping):
        _run_rules(lambda pod, r: _pod_rules(pod, path, r), checked, rules)
    if rules.errors or not isinstance(checked, Mapping):
        raise SpecError("podDefaults", path, rules.errors)
    return pod_settings(checked)


def _expose(d: Mapping[str, Any] | None) -> Expose | None:
    """`spec.expose` (schema-checked, defaults applied) as values; None when unset."""
    if d is None:
        return None
    gateway, http, grpc = d["gateway"], d["http"], d["grpc"]
    return Expose(
        gateway=GatewayRef(
            name=gateway["name"],
            namespace=gateway.get("namespace"),
            section_name=gateway.get("sectionName"),
        ),
        hostnames=tuple(d.get("hostnames") or ()),
        http=HTTPExpose(enabled=http["enabled"], path_prefix=http.get("pathPrefix")),
        grpc=GRPCExpose(
            enabled=grpc["enabled"],
            section_name=grpc.get("sectionName"),
            hostnames=tuple(grpc.get("hostnames") or ()),
        ),
    )


def _triton(d: Mapping[str, Any]) -> TritonSpec:
    db = d.get("dynamicBatching")
    return TritonSpec(
        max_batch_size=d["maxBatchSize"],
        dynamic_batching=DynamicBatching()
        if db is None
        else DynamicBatching(
            enabled=db["enabled"],
            max_queue_delay_microseconds=db["maxQueueDelayMicroseconds"],
            preferred_batch_sizes=tuple(db.get("preferredBatchSizes", ())),
        ),
        instance_count=d["instanceCount"],
        inputs=tuple(_tensor(t) for t in d.get("inputs", ())),
        outputs=tuple(_tensor(t) for t in d.get("outputs", ())),
        image=d.get("image"),
        parameters=tuple(sorted(d.get("parameters", {}).items())),
    )


def _run_rules(
    check: Callable[[Mapping[str, Any], _Rules], None], spec: Mapping[str, Any], rules: _Rules
) -> None:
    """Run the CEL-equivalent rules. A value of the wrong type may stop them, but only
    when the structural check has already reported it (the API server, too, skips
    rules on values that fail the schema)."""
    try:
        check(spec, rules)
    except (TypeError, KeyError, AttributeError, ValueError):
        if not rules.errors:
            raise


def parse_small_model(obj: Mapping[str, Any]) -> SmallModelSpec:
    """Parse a whole SmallModel resource (apiVersion, kind, metadata, spec) into typed values.

    Applies the CRD's defaults and checks what the API server checks (schema
    and CEL rules); raises `SpecError` listing every problem.
    """
    rules = _Rules()
    name, namespace = _envelope(obj, SMALL_MODEL, rules)
    spec = _structural(obj, SMALL_MODEL, rules)
    if spec:
        _run_rules(_small_model_rules, spec, rules)
    if rules.errors:
        raise SpecError(SMALL_MODEL, name, rules.errors)
    return SmallModelSpec(
        name=name,
        namespace=namespace,
        model=Artifact(
            uri=spec["model"]["uri"],
            digest=spec["model"]["digest"],
            format=spec["model"]["format"],
            parameter_count=spec["model"].get("parameterCount"),
            credentials=_credentials(spec["model"].get("credentials")),
        ),
        card=_card(spec["card"]),
        triton=_triton(spec["triton"]),
        resources=_resources(spec["resources"]),
        scaling=_scaling(spec["scaling"]),
        placement=_placement(spec["placement"]),
        pool=(spec.get("serving") or {}).get("pool"),
        pod=pod_settings(spec.get("pod") or {}),
        expose=_expose(spec.get("expose")),
    )


def parse_model_pipeline(obj: Mapping[str, Any]) -> ModelPipelineSpec:
    """Parse a whole ModelPipeline resource into typed values; raises `SpecError` with every problem."""
    rules = _Rules()
    name, namespace = _envelope(obj, MODEL_PIPELINE, rules)
    spec = _structural(obj, MODEL_PIPELINE, rules)
    if spec:
        _run_rules(_pipeline_rules, spec, rules)
    if rules.errors:
        raise SpecError(MODEL_PIPELINE, name, rules.errors)
    return ModelPipelineSpec(
        name=name,
        namespace=namespace,
        inputs=tuple(_tensor(t) for t in spec["inputs"]),
        outputs=tuple(
            PipelineOutput(
                name=o["name"],
                datatype=o["datatype"],
                dims=tuple(o["dims"]),
                source=_source(o["from"]),
            )
            for o in spec["outputs"]
        ),
        steps=tuple(
            Step(
                name=s["name"],
                model=s["model"],
                inputs=tuple(
                    StepInput(name=i["name"], source=_source(i["from"])) for i in s["inputs"]
                ),
            )
            for s in spec["steps"]
        ),
        scaling=_scaling(spec["scaling"]),
        placement=_placement(spec["placement"]),
        resources=_resources(spec["resources"]) if "resources" in spec else None,
        pod=pod_settings(spec.get("pod") or {}),
        expose=_expose(spec.get("expose")),
    )


def _dims_fit(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _find(tensors: tuple[Tensor, ...], name: str) -> Tensor | None:
    return next((t for t in tensors if t.name == name), None)


def validate_pipeline_refs(
    pipeline: ModelPipelineSpec, models: Mapping[str, SmallModelSpec]
) -> list[FieldError]:
    """Check a pipeline against the SmallModels its steps name (those of its namespace).

    Checks what no schema can: that each step's SmallModel exists, that the
    tensors wired between steps exist on the models that declare their
    tensors, and that data types and shapes agree along each wire.
    """
    errors: list[FieldError] = []
    by_step: dict[str, SmallModelSpec] = {}
    for si, step in enumerate(pipeline.steps):
        model = models.get(step.model)
        if model is None:
            errors.append(
                FieldError(
                    f"spec.steps[{si}].model",
                    f"SmallModel {step.model} not found in namespace {pipeline.namespace}",
                )
            )
            continue
        by_step[step.name] = model
        declared = model.triton.inputs
        for ii, inp in enumerate(step.inputs):
            path = f"spec.steps[{si}].inputs[{ii}]"
            target = _find(declared, inp.name)
            if declared and target is None:
                names = ", ".join(t.name for t in declared)
                errors.append(
                    FieldError(
                        f"{path}.name",
                        f"SmallModel {model.name} has no input {inp.name} (it has {names})",
                    )
                )
                continue
            source = _resolve(pipeline, by_step, inp.source)
            if isinstance(source, str):
                errors.append(FieldError(f"{path}.from", source))
            elif source is not None and target is not None:
                errors.extend(_wire_errors(f"{path}.from", source, target))
        wired = {i.name for i in step.inputs}
        for t in declared:
            if t.name not in wired:
                errors.append(
                    FieldError(
                        f"spec.steps[{si}].inputs",
                        f"SmallModel {model.name} needs input {t.name}, which no entry feeds",
                    )
                )
    for oi, out in enumerate(pipeline.outputs):
        source = _resolve(pipeline, by_step, out.source)
        if isinstance(source, str):
            errors.append(FieldError(f"spec.outputs[{oi}].from", source))
        elif source is not None:
            want = Tensor(name=out.name, datatype=out.datatype, dims=out.dims)
            errors.extend(_wire_errors(f"spec.outputs[{oi}].from", source, want))
    return errors


def _resolve(
    pipeline: ModelPipelineSpec, by_step: Mapping[str, SmallModelSpec], source: TensorSource
) -> Tensor | str | None:
    """The tensor a source names; a message when it names nothing; None when unknowable."""
    if source.step is None:
        return _find(pipeline.inputs, source.tensor)
    model = by_step.get(source.step)
    if model is None or not model.triton.outputs:
        return None
    found = _find(model.triton.outputs, source.tensor)
    if found is None:
        names = ", ".join(t.name for t in model.triton.outputs)
        return f"SmallModel {model.name} (step {source.step}) has no output {source.tensor} (it has {names})"
    return found


def _wire_errors(path: str, source: Tensor, target: Tensor) -> list[FieldError]:
    errors: list[FieldError] = []
    if source.datatype != target.datatype:
        errors.append(
            FieldError(
                path,
                f"{source.name} is {source.datatype} but {target.name} expects {target.datatype}",
            )
        )
    if not _dims_fit(source.dims, target.dims):
        errors.append(
            FieldError(
                path,
                f"{source.name} has dims {list(source.dims)} but {target.name} expects {list(target.dims)}",
            )
        )
    return errors
