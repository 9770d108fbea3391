"""Which server of a pool loads which model: stable first-fit packing by memory.

Small models are worth serving only if many share a server, and a shared
server is worth trusting only if adding a model never disturbs the models it
already holds. So packing is stable: a model keeps the server it has (as long
as that server still exists and the model still fits it), and only the new
ones are placed, largest first, into the lowest-numbered server with room
(first fit decreasing: low-numbered servers fill up, the last ones empty out
and the pool can shrink). When no server has room the pool grows by one,
up to its maximum; past that the model waits, and says why.

A model's size is what it declares (`spec.resources.memory`, host memory),
plus, on a GPU pool, the GPU memory that each python-backend instance holds
for its own CUDA context (measured: ~750 MiB on an H200).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from smallfleet.core import conditions as c
from smallfleet.core.pools.spec import PoolSpec
from smallfleet.core.render.quantity import format_bytes, parse_quantity
from smallfleet.core.spec import SmallModelSpec

MIB: Final = 1 << 20
PYTHON_CUDA_CONTEXT_BYTES: Final = 750 * MIB


@dataclass(frozen=True)
class Demand:
    """One model as packing sees it."""

    name: str
    memory: int  # bytes of host memory
    gpu_memory: int  # bytes of GPU memory (0 on a CPU pool)
    format: str
    gpus: int  # what the model asks for; > 0 needs a GPU pool


@dataclass(frozen=True)
class Waiting:
    reason: str  # conditions.REASON_POOL_FULL or REASON_NOT_POOLABLE
    message: str


@dataclass(frozen=True)
class ServerUse:
    models: int
    memory: int
    gpu_memory: int


@dataclass(frozen=True)
class Packing:
    servers: int  # servers the pool should run
    placed: Mapping[str, int]  # model -> server ordinal
    waiting: Mapping[str, Waiting]
    use: tuple[ServerUse, ...]  # per server ordinal, for status


def demand(spec: SmallModelSpec, pool: PoolSpec) -> Demand:
    """A model's size in a pool: declared memory, and the CUDA contexts on a GPU pool."""
    gpu_memory = 0
    if pool.server.gpus > 0 and spec.model.format == "python":
        gpu_memory = PYTHON_CUDA_CONTEXT_BYTES * spec.triton.instance_count
    return Demand(
        name=spec.name,
        memory=int(parse_quantity(spec.resources.memory)),
        gpu_memory=gpu_memory,
        format=spec.model.format,
        gpus=spec.resources.gpus,
    )


def _refusal(d: Demand, pool: PoolSpec) -> Waiting | None:
    """Why no server of this pool could ever hold the model, or None."""
    if pool.backends and d.format not in pool.backends:
        allowed = ", ".join(sorted(pool.backends))
        return Waiting(
            c.REASON_NOT_POOLABLE,
            f"ServingPool {pool.name} loads only {allowed} models; this model's format is "
            f"{d.format}: serve it on dedicated servers (unset spec.serving.pool) or use another pool",
        )
    if d.gpus > 0 and pool.server.gpus == 0:
        return Waiting(
            c.REASON_NOT_POOLABLE,
            f"the model asks for {d.gpus} GPU(s) but ServingPool {pool.name} runs on CPU: "
            "set spec.resources.gpus to 0, or use a GPU pool",
        )
    capacity = pool.server.memory_bytes
    if d.memory > capacity:
        return Waiting(
            c.REASON_NOT_POOLABLE,
            f"the model declares {format_bytes(parse_quantity(d.memory))} of memory but each "
            f"server of ServingPool {pool.name} has {pool.server.memory}: lower "
            "spec.resources.memory, raise the pool's spec.server.memory, or serve it dedicated",
        )
    gpu_capacity = pool.server.gpu_memory
    if gpu_capacity is not None and d.gpu_memory > gpu_capacity:
        return Waiting(
            c.REASON_NOT_POOLABLE,
            f"the model needs {d.gpu_memory // MIB} MiB of GPU memory but each server of "
            f"ServingPool {pool.name} has {gpu_capacity // MIB} MiB",
        )
    return None


def pack(pool: PoolSpec, demands: Sequence[Demand], previous: Mapping[str, int]) -> Packing:
    """Assign models to server ordinals; `previous` holds where models are now.

    Deterministic for the same input, and stable: a model in `previous` keeps
    its server unless that server is beyond `max_servers` or no longer has
    room for it (a pool made smaller); only then is it placed again.
    """
    cap_memory = pool.server.memory_bytes
    cap_gpu = pool.server.gpu_memory
    used: list[list[int]] = []  # per server: [models, memory, gpu_memory]
    placed: dict[str, int] = {}
    waiting: dict[str, Waiting] = {}

    def fits(server: int, d: Demand) -> bool:
        while len(used) <= server:
            used.append([0, 0, 0])
        models, memory, gpu = used[server]
        return (
            models + 1 <= pool.models_per_server
            and memory + d.memory <= cap_memory
            and (cap_gpu is None or gpu + d.gpu_memory <= cap_gpu)
        )

    def take(server: int, d: Demand) -> None:
        used[server][0] += 1
        used[server][1] += d.memory
        used[server][2] += d.gpu_memory
        placed[d.name] = server

    fresh: list[Demand] = []
    for d in sorted(demands, key=lambda d: (previous.get(d.name, 1 << 30), d.name)):
        refusal = _refusal(d, pool)
        if refusal is not None:
            waiting[d.name] = refusal
            continue
        server = previous.get(d.name)
        if server is not None and 0 <= server < pool.max_servers and fits(server, d):
            take(server, d)
        else:
            fresh.append(d)
    for d in sorted(fresh, key=lambda d: (-d.memory, -d.gpu_memory, d.name)):
        target = next((s for s in range(pool.max_servers) if fits(s, d)), None)
        if target is None:
            waiting[d.name] = Waiting(
                c.REASON_POOL_FULL,
                f"no server of ServingPool {pool.name} has room for it "
                f"({pool.max_servers} servers of {pool.server.memory}, at most "
                f"{pool.models_per_server} models each, all taken): raise the pool's "
                "spec.maxServers or remove models from it; it loads as soon as there is room",
            )
            continue
        take(target, d)
    servers = max(pool.min_servers, max(placed.values(), default=-1) + 1)
    servers = min(servers, pool.max_servers)
    use = tuple(ServerUse(*(used[s] if s < len(used) else [0, 0, 0])) for s in range(servers))
    return Packing(servers=servers, placed=placed, waiting=waiting, use=use)
