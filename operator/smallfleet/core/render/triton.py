"""What Triton reads: config.pbtxt, the model repository layout, the command line.

The configuration is written in full (inputs, outputs, instance groups,
batching) rather than left to Triton's auto-complete, so the model a pod
serves is exactly the one the spec describes and a golden file can show it.
The text is protobuf text format, built by hand because it is small and its
order must be deterministic: a changed byte rolls every pod of the server.
"""

from __future__ import annotations

from typing import Any, Final

from smallfleet.core.render.serverplan import ModelEntry, ServerPlan
from smallfleet.core.spec import Tensor

HTTP_PORT: Final = 8000
GRPC_PORT: Final = 8001
METRICS_PORT: Final = 8002
DEFAULT_REPOSITORY: Final = "/models"
# Triton refreshes its GPU and CPU gauges at this period; the autoscaler scrapes
# every few seconds, so a 2 s default would hand it stale utilisation.
METRICS_INTERVAL_MS: Final = 1000
# Seconds Triton waits for in-flight requests after SIGTERM; the pod's grace
# period is longer so the kubelet never cuts the drain short.
EXIT_TIMEOUT_SECONDS: Final = 30
VERSION_DIR_MARKER: Final = "1/"


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _dims(dims: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensors(field: str, tensors: tuple[Tensor, ...]) -> list[str]:
    if not tensors:
        return []
    blocks = [
        "  {\n"
        f"    name: {_quote(t.name)}\n"
        f"    data_type: TYPE_{'STRING' if t.datatype == 'BYTES' else t.datatype}\n"
        f"    dims: {_dims(t.dims)}\n"
        "  }"
        for t in tensors
    ]
    return [f"{field} [\n" + ",\n".join(blocks) + "\n]"]


def _ensemble_scheduling(entry: ModelEntry) -> list[str]:
    steps = []
    for step in entry.steps:
        lines = [
            "    {",
            f"      model_name: {_quote(step.model_name)}",
            "      model_version: -1",
        ]
        for field, pairs in (("input_map", step.input_map), ("output_map", step.output_map)):
            for key, value in pairs:
                lines += [
                    f"      {field} {{",
                    f"        key: {_quote(key)}",
                    f"        value: {_quote(value)}",
                    "      }",
                ]
        lines.append("    }")
        steps.append("\n".join(lines))
    return ["ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"]


def triton_config(entry: ModelEntry) -> str:
    """The exact config.pbtxt of one model (or ensemble), ending in a newline."""
    parts = [f"name: {_quote(entry.name)}"]
    if entry.is_ensemble:
        parts.append(f"platform: {_quote(entry.platform)}")
    else:
        parts.append(f"backend: {_quote(entry.platform)}")
    parts.append(f"max_batch_size: {entry.max_batch_size}")
    parts += _tensors("input", entry.inputs)
    parts += _tensors("output", entry.outputs)
    if entry.is_ensemble:
        parts += _ensemble_scheduling(entry)
    else:
        kind = "KIND_GPU" if entry.gpu else "KIND_CPU"
        parts.append(
            f"instance_group [\n  {{\n    count: {entry.instance_count}\n    kind: {kind}\n  }}\n]"
        )
    batching = entry.dynamic_batching
    if batching is not None and entry.max_batch_size > 0 and not entry.is_ensemble:
        lines = ["dynamic_batching {"]
        if batching.preferred_batch_sizes:
            sizes = ", ".join(str(b) for b in sorted(set(batching.preferred_batch_sizes)))
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines.append(f"  max_queue_delay_microseconds: {batching.max_queue_delay_microseconds}")
        lines.append("}")
        parts.append("\n".join(lines))
    for key, value in sorted(entry.parameters):
        parts.append(
            f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}"
        )
    return "\n".join(parts) + "\n"


def triton_config_json(entry: ModelEntry) -> dict[str, Any]:
    """The same config as `triton_config`, as the JSON that Triton's load request takes.

    A pool server loads models through the repository API with the config in
    the request, so nothing but the artifact's files sits in its repository.
    Ensembles are not loaded this way (a pooled pipeline is not served yet).
    """
    if entry.is_ensemble:
        raise ValueError(f"{entry.name}: an ensemble is not loaded through the repository API")

    def tensors(items: tuple[Tensor, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "data_type": f"TYPE_{'STRING' if t.datatype == 'BYTES' else t.datatype}",
                "dims": list(t.dims),
            }
            for t in items
        ]

    config: dict[str, Any] = {
        "name": entry.name,
        "backend": entry.platform,
        "max_batch_size": entry.max_batch_size,
        "input": tensors(entry.inputs),
        "output": tensors(entry.outputs),
        "instance_group": [
            {"count": entry.instance_count, "kind": "KIND_GPU" if entry.gpu else "KIND_CPU"}
        ],
    }
    batching = entry.dynamic_batching
    if batching is not None and entry.max_batch_size > 0:
        config["dynamic_batching"] = {
            "preferred_batch_size": sorted(set(batching.preferred_batch_sizes)),
            "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
        }
    if entry.parameters:
        config["parameters"] = {k: {"string_value": v} for k, v in sorted(entry.parameters)}
    return config


def config_key(model_name: str) -> str:
    """The ConfigMap key holding a model's config.pbtxt (ConfigMap keys cannot hold '/')."""
    return f"{model_name}.config.pbtxt"


def model_repository(plan: ServerPlan) -> dict[str, str]:
    """Every file (and empty directory, ending in '/') the operator writes into the repository.

    Artifacts are not listed: `smallfleet fetch` unpacks them beside these files.
    An ensemble has no files of its own, but Triton still requires its version
    directory, hence the `<ensemble>/1/` marker.
    """
    files: dict[str, str] = {}
    for entry in plan.models:
        files[f"{entry.name}/config.pbtxt"] = triton_config(entry)
        if entry.is_ensemble:
            files[f"{entry.name}/{VERSION_DIR_MARKER}"] = ""
    return dict(sorted(files.items()))


def triton_args(plan: ServerPlan, repository_path: str = DEFAULT_REPOSITORY) -> list[str]:
    """The tritonserver command line for a plan.

    Explicit model control: only the plan's models load, whatever else sits in
    the repository, and the operator can later load and unload models of a
    packed server through the repository API without a restart. Models load
    in plan order (ensembles last, after the models they call).

    `--exit-on-error=false` keeps a server running when one of its models
    fails to load, so the others serve and the failure stays readable from
    the repository index; `--strict-readiness=true` keeps such a pod out of
    the Service and stops a rollout of a broken model before it replaces
    working pods.
    """
    return [
        f"--model-repository={repository_path}",
        "--model-control-mode=explicit",
        *(f"--load-model={m.name}" for m in plan.models),
        "--strict-readiness=true",
        "--exit-on-error=false",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'true' if plan.gpus > 0 else 'false'}",
        "--allow-cpu-metrics=true",
        f"--metrics-interval-ms={METRICS_INTERVAL_MS}",
    ]
