"""A ServingPool resource as typed values: defaults applied, the API server's checks repeated.

The parser reads the CRD's own schema (`crd_schemas`, generated from crds/)
so that it accepts and refuses what the API server does; the operator still
reports a refused pool as Stalled, in case it was written past the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from smallfleet.core.crd_schemas import SCHEMAS
from smallfleet.core.render.quantity import parse_quantity
from smallfleet.core.schema import apply as apply_schema
from smallfleet.core.schema import go_regex
from smallfleet.core.spec import (
    API_VERSION,
    MSG_LABEL_KEYS,
    MSG_TOLERATION_EXISTS,
    MSG_TOLERATION_KEY,
    FieldError,
    SpecError,
)

SERVING_POOL: Final = "ServingPool"
_NAME_RE: Final = go_regex(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # as CEL matches it
MAX_NAME_LENGTH: Final = 40

MSG_NAME: Final = (
    "metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, "
    "digits and '-', starting with a letter): it names the pool's StatefulSet and Service"
)
MSG_SERVERS: Final = "minServers must not exceed maxServers"
MSG_GPU_PRODUCT: Final = "gpuProduct needs gpus > 0: a CPU pool cannot ask for a GPU product"
MSG_GPU_MEMORY: Final = "gpuMemory needs gpus > 0: a CPU pool has no GPU memory to pack"
_LABEL_KEY_RE: Final = go_regex(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True)
class PoolServer:
    """What each server gets: the room models are packed into."""

    gpus: int = 0
    gpu_product: str | None = None
    gpu_memory: int | None = None  # bytes; None: not packed by GPU memory
    cpu: str = "2"
    memory: str = "8Gi"
    image: str | None = None

    @property
    def memory_bytes(self) -> int:
        return int(parse_quantity(self.memory))


@dataclass(frozen=True)
class PoolSpec:
    name: str
    namespace: str
    min_servers: int = 1
    max_servers: int = 4
    models_per_server: int = 50
    backends: frozenset[str] = frozenset()  # model formats; empty allows all
    server: PoolServer = field(default_factory=PoolServer)
    region: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()


def parse_serving_pool(obj: Mapping[str, Any]) -> PoolSpec:
    """Parse a whole ServingPool resource; raises `SpecError` listing every problem."""
    errors: list[FieldError] = []
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    if obj.get("apiVersion", API_VERSION) != API_VERSION:
        errors.append(FieldError("apiVersion", f"Unsupported value: must be {API_VERSION}"))
    if not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        errors.append(FieldError("metadata.name", f"Invalid value: {MSG_NAME}"))
    if "spec" not in obj:
        raise SpecError(SERVING_POOL, name, [*errors, FieldError("spec", "Required value")])
    spec, problems = apply_schema(SCHEMAS[SERVING_POOL]["properties"]["spec"], obj["spec"], "spec")
    errors += [FieldError(path, message) for path, message in problems]
    if not isinstance(spec, dict):
        raise SpecError(SERVING_POOL, name, errors)
    server = spec.get("server") or {}
    if not errors:
        if spec["minServers"] > spec["maxServers"]:
            errors.append(FieldError("spec.minServers", f"Invalid value: {MSG_SERVERS}"))
        if "gpuProduct" in server and server["gpus"] == 0:
            errors.append(FieldError("spec.server.gpuProduct", f"Forbidden: {MSG_GPU_PRODUCT}"))
        if "gpuMemory" in server and server["gpus"] == 0:
            errors.append(FieldError("spec.server.gpuMemory", f"Forbidden: {MSG_GPU_MEMORY}"))
        keys = spec.get("nodeSelector") or {}
        if not all(len(k) <= 316 and _LABEL_KEY_RE.search(k) for k in keys):
            errors.append(FieldError("spec.nodeSelector", f"Invalid value: {MSG_LABEL_KEYS}"))
        for i, t in enumerate(spec.get("tolerations") or ()):
            if t.get("operator") == "Exists" and t.get("value"):
                errors.append(
                    FieldError(f"spec.tolerations[{i}]", f"Invalid value: {MSG_TOLERATION_EXISTS}")
                )
            if not t.get("key") and t.get("operator") != "Exists":
                errors.append(
                    FieldError(f"spec.tolerations[{i}]", f"Invalid value: {MSG_TOLERATION_KEY}")
                )
    if errors:
        raise SpecError(SERVING_POOL, name, errors)
    gpu_memory = server.get("gpuMemory")
    return PoolSpec(
        name=name,
        namespace=namespace,
        min_servers=spec["minServers"],
        max_servers=spec["maxServers"],
        models_per_server=spec["modelsPerServer"],
        backends=frozenset(spec.get("backends") or ()),
        server=PoolServer(
            gpus=server["gpus"],
            gpu_product=server.get("gpuProduct"),
            gpu_memory=None if gpu_memory is None else int(parse_quantity(gpu_memory)),
            cpu=str(server["cpu"]),
            memory=str(server["memory"]),
            image=server.get("image"),
        ),
        region=spec.get("region"),
        node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
        tolerations=tuple(
            Toleration(
                key=t.get("key", ""),
                operator=t.get("operator", "Equal"),
                value=t.get("value", ""),
                effect=t.get("effect", ""),
            )
            for t in spec.get("tolerations") or ()
        ),
    )
