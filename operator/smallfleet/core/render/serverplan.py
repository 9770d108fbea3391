"""The server plan: one Triton server and the models it holds.

Rendering is built around this unit rather than around a SmallModel because
the mapping from resources to servers is not one-to-one: a ModelPipeline is
one server holding its steps' models plus an ensemble, and small models are
cheaper packed many to a server (each python-backend process costs its own
CUDA context). Everything downstream (config.pbtxt, the model repository,
the Triton command line, the Kubernetes children) reads only the plan, so a
new way of grouping models needs a new planner and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final, Literal

from smallfleet.core.render.quantity import format_bytes, format_cpu, parse_quantity
from smallfleet.core.spec import (
    BACKENDS,
    Artifact,
    DynamicBatching,
    Expose,
    FieldError,
    ModelCard,
    ModelPipelineSpec,
    Placement,
    PodSettings,
    Resources,
    Scaling,
    SmallModelSpec,
    SpecError,
    Tensor,
    validate_pipeline_refs,
)
from smallfleet.settings import Settings

OwnerKind = Literal["SmallModel", "ModelPipeline"]

ENSEMBLE_PLATFORM: Final = "ensemble"


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble: a model and how its tensors map onto the ensemble's."""

    model_name: str
    input_map: tuple[tuple[str, str], ...]  # (model input, ensemble tensor), sorted
    output_map: tuple[tuple[str, str], ...]  # (model output, ensemble tensor), sorted


@dataclass(frozen=True)
class ModelEntry:
    """One model in a Triton model repository, with everything its config.pbtxt says."""

    name: str
    platform: str  # a Triton backend ("onnxruntime", "python", ...) or "ensemble"
    max_batch_size: int
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()
    artifact: Artifact | None = None  # None for an ensemble: it has no files of its own
    dynamic_batching: DynamicBatching | None = None  # None: no dynamic batching
    instance_count: int = 1
    gpu: bool = False  # instance_group kind: KIND_GPU or KIND_CPU
    parameters: tuple[tuple[str, str], ...] = ()
    steps: tuple[EnsembleStep, ...] = ()  # only for an ensemble

    @property
    def is_ensemble(self) -> bool:
        return self.platform == ENSEMBLE_PLATFORM


@dataclass(frozen=True)
class ServerPlan:
    """One Triton server (per region): image, resources, scaling and the models it loads."""

    name: str  # names the children: Service <name>, Deployments <name>-<region>
    namespace: str
    owner_kind: OwnerKind
    owner_name: str
    image: str  # the Triton image
    operator_image: str  # runs `smallfleet fetch` in the init containers
    resources: Resources
    scaling: Scaling
    placement: Placement
    models: tuple[ModelEntry, ...]  # load order: ensembles after the models they call
    card: ModelCard | None = None  # a single model's card, summarised in annotations
    prometheus_url: str | None = None  # where a KEDA scaler queries Triton's metrics
    pod: PodSettings = field(
        default_factory=PodSettings
    )  # the owner's spec.pod over the chart's podDefaults
    expose: Expose | None = None  # the owner's spec.expose: Gateway API routes to the Service

    @property
    def gpus(self) -> int:
        return self.resources.gpus


def _entry(spec: SmallModelSpec, *, server_has_gpu: bool) -> ModelEntry:
    t = spec.triton
    batching = t.dynamic_batching if t.max_batch_size > 0 and t.dynamic_batching.enabled else None
    return ModelEntry(
        name=spec.name,
        platform=BACKENDS[spec.model.format],
        max_batch_size=t.max_batch_size,
        inputs=t.inputs,
        outputs=t.outputs,
        artifact=spec.model,
        dynamic_batching=batching,
        instance_count=t.instance_count,
        gpu=server_has_gpu and spec.resources.gpus > 0,
        parameters=tuple(sorted(t.parameters)),
    )


def plan_for_model(spec: SmallModelSpec, settings: Settings) -> ServerPlan:
    """A SmallModel served alone: a plan of one entry."""
    return ServerPlan(
        name=spec.name,
        namespace=spec.namespace,
        owner_kind="SmallModel",
        owner_name=spec.name,
        image=spec.triton.image or settings.triton_image,
        operator_image=settings.operator_image,
        resources=spec.resources,
        scaling=spec.scaling,
        placement=spec.placement,
        models=(_entry(spec, server_has_gpu=spec.resources.gpus > 0),),
        card=spec.card,
        prometheus_url=settings.prometheus_url,
        pod=spec.pod.with_defaults(settings.pod_defaults),
        expose=spec.expose,
    )


def _derived_resources(steps: list[SmallModelSpec], errors: list[FieldError]) -> Resources:
    """The resources of one process holding every step: GPUs shared, CPU and memory summed."""
    gpus = max((m.resources.gpus for m in steps), default=0)
    products = sorted({m.resources.gpu_product for m in steps if m.resources.gpu_product})
    if len(products) > 1:
        errors.append(
            FieldError(
                "spec.resources",
                f"the steps' SmallModels ask for different GPU products ({', '.join(products)}); "
                "set spec.resources.gpuProduct to choose one for the pipeline's server",
            )
        )
    cpu = sum((parse_quantity(m.resources.cpu) for m in steps), Fraction(0))
    memory = sum((parse_quantity(m.resources.memory) for m in steps), Fraction(0))
    return Resources(
        gpus=gpus,
        gpu_product=products[0] if len(products) == 1 and gpus > 0 else None,
        cpu=format_cpu(cpu) if cpu else Resources().cpu,
        memory=format_bytes(memory) if memory else Resources().memory,
    )


def _image(steps: list[SmallModelSpec], settings: Settings, errors: list[FieldError]) -> str:
    images = sorted({m.triton.image for m in steps if m.triton.image})
    if len(images) > 1:
        errors.append(
            FieldError(
                "spec.steps",
                f"the steps' SmallModels ask for different Triton images ({', '.join(images)}); "
                "one pipeline runs in one server, so they must agree",
            )
        )
    return images[0] if len(images) == 1 else settings.triton_image


def plan_for_pipeline(
    spec: ModelPipelineSpec, models: Mapping[str, SmallModelSpec], settings: Settings
) -> ServerPlan:
    """A pipeline: its steps' models plus an ensemble that wires their tensors together.

    Raises SpecError when a step names a SmallModel missing from `models`,
    when the pipeline's tensors disagree with what the steps' models declare
    (`validate_pipeline_refs`), or when the steps cannot share one server.
    """
    errors = validate_pipeline_refs(spec, models)
    if errors:
        raise SpecError("ModelPipeline", spec.name, errors)
    step_models = {step.name: models[step.model] for step in spec.steps}
    step_index = {s.name: i for i, s in enumerate(spec.steps)}

    # A step output that is also a pipeline output keeps the pipeline's name for the
    # tensor, so the ensemble maps it once; other intermediates are "<step>.<output>".
    tensor_names: dict[tuple[str, str], str] = {}
    for j, out in enumerate(spec.outputs):
        src = out.source
        if src.step is None or src.step not in step_models:
            errors.append(
                FieldError(f"spec.outputs[{j}].from", f"{out.name} must come from a step's output")
            )
            continue
        key = (src.step, src.tensor)
        if key in tensor_names:
            errors.append(
                FieldError(
                    f"spec.outputs[{j}].from",
                    f"{src.step}.{src.tensor} is already the pipeline output "
                    f"{tensor_names[key]}; a Triton ensemble maps each step output once",
                )
            )
            continue
        tensor_names[key] = out.name

    ensemble_inputs: list[list[tuple[str, str]]] = []
    for i, step in enumerate(spec.steps):
        input_map: list[tuple[str, str]] = []
        for k, inp in enumerate(step.inputs):
            src = inp.source
            if src.step is not None and step_index.get(src.step, i) >= i:
                errors.append(
                    FieldError(
                        f"spec.steps[{i}].inputs[{k}].from",
                        f"{src.step} is not an earlier step of the pipeline",
                    )
                )
                continue
            tensor = (
                src.tensor
                if src.step is None
                else tensor_names.setdefault((src.step, src.tensor), f"{src.step}.{src.tensor}")
            )
            input_map.append((inp.name, tensor))
        ensemble_inputs.append(sorted(input_map))
    # Output maps last: a later step's `from` may be what names an earlier step's tensor.
    ensemble_steps = tuple(
        EnsembleStep(
            model_name=step_models[step.name].name,
            input_map=tuple(inputs),
            output_map=tuple(
                sorted((out, name) for (sn, out), name in tensor_names.items() if sn == step.name)
            ),
        )
        for step, inputs in zip(spec.steps, ensemble_inputs, strict=True)
    )

    distinct: dict[str, SmallModelSpec] = {}
    for step in spec.steps:
        distinct.setdefault(step_models[step.name].name, step_models[step.name])
    if spec.name in distinct:
        errors.append(
            FieldError(
                "metadata.name",
                f"the pipeline's ensemble would share the name {spec.name} with a step's "
                "SmallModel in one Triton server; rename the pipeline",
            )
        )
    batch_sizes = [m.triton.max_batch_size for m in distinct.values()]
    if any(b > 0 for b in batch_sizes) and any(b == 0 for b in batch_sizes):
        errors.append(
            FieldError(
                "spec.steps",
                "the steps mix batching models (maxBatchSize > 0) with non-batching ones; "
                "a Triton ensemble needs all of its models to batch or none",
            )
        )
    steps_list = list(distinct.values())
    resources = spec.resources or _derived_resources(steps_list, errors)
    image = _image(steps_list, settings, errors)
    if errors:
        raise SpecError("ModelPipeline", spec.name, errors)

    server_has_gpu = resources.gpus > 0
    ensemble = ModelEntry(
        name=spec.name,
        platform=ENSEMBLE_PLATFORM,
        max_batch_size=min(batch_sizes, default=0),
        inputs=spec.inputs,
        outputs=tuple(Tensor(o.name, o.datatype, o.dims) for o in spec.outputs),
        steps=ensemble_steps,
    )
    return ServerPlan(
        name=spec.name,
        namespace=spec.namespace,
        owner_kind="ModelPipeline",
        owner_name=spec.name,
        image=image,
        operator_image=settings.operator_image,
        resources=resources,
        scaling=spec.scaling,
        placement=spec.placement,
        models=(
            *(_entry(m, server_has_gpu=server_has_gpu) for m in steps_list),
            ensemble,
        ),
        prometheus_url=settings.prometheus_url,
        pod=spec.pod.with_defaults(settings.pod_defaults),
        expose=spec.expose,
    )
