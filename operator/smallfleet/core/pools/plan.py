"""One pool's reconcile plan: packing, the loads and unloads to send, and every status.

Pure: the control layer gathers what the servers' Tritons report (their
repository indexes), the pods, the models that name the pool and what its
own attempts concluded, and executes what this returns. Ready comes from
Triton only: a model is Ready when the server packing gave it reports it
READY, never because a pod runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Final

from smallfleet.core import conditions as c
from smallfleet.core import status as st
from smallfleet.core.modelload import summarize
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.core.pools.carbon import model_carbon, server_watts, shares
from smallfleet.core.pools.packing import Demand, Packing, pack
from smallfleet.core.pools.render import server_host, server_name
from smallfleet.core.pools.spec import PoolSpec
from smallfleet.core.render.quantity import format_bytes
from smallfleet.core.render.triton import GRPC_PORT, HTTP_PORT

READY_STATE: Final = "READY"
LOADING_STATE: Final = "LOADING"
UNAVAILABLE_STATE: Final = "UNAVAILABLE"
FETCH: Final = "fetch"
LOAD: Final = "load"


@dataclass(frozen=True)
class IndexEntry:
    """One model in a server's repository index, as Triton reports it."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class Server:
    """One pool server as observed: its pod, and its Triton's index when it could be read."""

    ordinal: int
    uid: str  # the pod's uid: a new pod is a new, empty server
    ready: bool  # the pod is Ready (Triton and the agent answer their probes)
    index: Mapping[str, IndexEntry] | None = None  # None: not read (not ready, or unreachable)
    problem: str = ""  # why the pod does not run, as its status says (unschedulable, ...)
    region: str | None = None  # the region of the node it runs on


@dataclass(frozen=True)
class Model:
    """A SmallModel that names the pool."""

    demand: Demand
    generation: int
    digest: str
    recorded_server: int | None = None  # status.pool.server, as last written


@dataclass(frozen=True)
class Failure:
    """What an attempt to fetch or load a model concluded; kept until the model or server changes."""

    step: str  # FETCH or LOAD
    message: str  # the agent's or Triton's own words
    generation: int
    server_uid: str


@dataclass(frozen=True)
class Action:
    model: str
    ordinal: int


@dataclass(frozen=True)
class PoolPlan:
    packing: Packing
    loads: tuple[Action, ...]  # fetch then load these (none already in flight)
    unloads: tuple[Action, ...]  # models a server holds that packing did not give it
    models: Mapping[str, st.Derived] = field(default_factory=dict)
    pool: st.Derived = field(default_factory=lambda: st.Derived(()))


def _previous(models: Sequence[Model], servers: Sequence[Server]) -> dict[str, int]:
    """Where each model is now: the server whose Triton holds it, else the one status recorded."""
    out = {m.demand.name: m.recorded_server for m in models if m.recorded_server is not None}
    for server in sorted(servers, key=lambda s: -s.ordinal):
        for name, entry in (server.index or {}).items():
            if entry.state in (READY_STATE, LOADING_STATE):
                out[name] = server.ordinal
    return {k: v for k, v in out.items() if v is not None}


def _ok(reason: str, message: str) -> tuple[c.Condition, ...]:
    return (
        c.Condition(c.READY, "True", reason, message),
        c.Condition(c.RECONCILING, "False", reason, ""),
        c.Condition(c.STALLED, "False", reason, ""),
    )


def _working(reason: str, message: str) -> tuple[c.Condition, ...]:
    return (
        c.Condition(c.READY, "False", reason, message),
        c.Condition(c.RECONCILING, "True", reason, message),
        c.Condition(c.STALLED, "False", reason, ""),
    )


def _status(
    pool: PoolSpec, model: Model, ordinal: int | None, state: str, conds: tuple[c.Condition, ...]
) -> st.Derived:
    fields: dict[str, object] = {
        "pool": {
            "name": pool.name,
            "server": "" if ordinal is None else server_name(pool.name, ordinal),
            "state": state,
        },
        "endpoint": None if ordinal is None else server_host(pool, ordinal),
        "url": None if ordinal is None else f"http://{server_host(pool, ordinal)}:{HTTP_PORT}",
        "grpcAddress": None if ordinal is None else f"{server_host(pool, ordinal)}:{GRPC_PORT}",
    }
    return st.Derived(conds, fields)


@dataclass(frozen=True)
class Carbon:
    """What attributing a server's emissions to its models needs."""

    readings: Mapping[str, CarbonReading]  # by region
    now: datetime
    pue: float


def plan_pool(
    pool: PoolSpec,
    models: Sequence[Model],
    servers: Sequence[Server],
    failures: Mapping[str, Failure],
    in_flight: frozenset[str],
    carbon: Carbon | None = None,
) -> PoolPlan:
    """What to load where, what to unload, and the status of every model and of the pool."""
    packing = pack(pool, [m.demand for m in models], _previous(models, servers))
    on_server: dict[int, dict[str, int]] = {}
    for m in models:
        if m.demand.name in packing.placed:
            on_server.setdefault(packing.placed[m.demand.name], {})[m.demand.name] = m.demand.memory
    watts = server_watts(pool, pue=carbon.pue) if carbon is not None else 0.0
    by_ordinal = {s.ordinal: s for s in servers}
    loads: list[Action] = []
    statuses: dict[str, st.Derived] = {}
    for model in sorted(models, key=lambda m: m.demand.name):
        name = model.demand.name
        waiting = packing.waiting.get(name)
        if waiting is not None:
            statuses[name] = _status(
                pool,
                model,
                None,
                waiting.reason,
                st.stalled(waiting.reason, waiting.message).conditions,
            )
            continue
        ordinal = packing.placed[name]
        server = by_ordinal.get(ordinal)
        where = server_name(pool.name, ordinal)
        entry = None if server is None or server.index is None else server.index.get(name)
        failure = failures.get(name)
        if (
            failure is not None
            and server is not None
            and (failure.generation, failure.server_uid) != (model.generation, server.uid)
        ):
            failure = None  # a new spec or a new server: try again
        if entry is not None and entry.state == READY_STATE and name not in in_flight:
            conds = _ok(c.REASON_LOADED, f"Triton on {where} reports the model READY")
            verified = st.Derived(
                (c.Condition(c.ARTIFACT_VERIFIED, "True", c.REASON_VERIFIED, model.digest),),
                {"artifact": {"digest": model.digest, "verified": True}},
            )
            base = _status(pool, model, ordinal, READY_STATE, conds)
            fields = {**base.fields, **verified.fields}
            if carbon is not None and server is not None:
                reading = carbon.readings.get(server.region or "")
                share = shares(on_server.get(ordinal, {})).get(name, 0.0)
                fields["carbon"] = model_carbon(watts, share, reading, carbon.now)
            statuses[name] = st.Derived(base.conditions + verified.conditions, fields)
            continue
        if failure is not None:
            reason = (
                c.REASON_ARTIFACT_FAILED if failure.step == FETCH else c.REASON_MODEL_LOAD_FAILED
            )
            text = failure.message if failure.step == FETCH else summarize(failure.message)
            message = f"{where}: {text}"
            statuses[name] = _status(
                pool, model, ordinal, UNAVAILABLE_STATE, st.stalled(reason, message).conditions
            )
            continue
        if server is None or not server.ready or server.index is None:
            if server is None:
                why = f"waiting for {where} to be created"
            else:
                why = f"waiting for {where} to start" + (
                    f": {server.problem}" if server.problem else ""
                )
            statuses[name] = _status(pool, model, ordinal, "", _working(c.REASON_LOADING, why))
            continue
        if name not in in_flight:
            loads.append(Action(name, ordinal))
        statuses[name] = _status(
            pool,
            model,
            ordinal,
            LOADING_STATE,
            _working(c.REASON_LOADING, f"fetching and loading into {where}"),
        )

    unloads: list[Action] = []
    for server in servers:
        for name, entry in (server.index or {}).items():
            if (
                entry.state in (READY_STATE, LOADING_STATE)
                and packing.placed.get(name) != server.ordinal
            ) and name not in in_flight:
                unloads.append(Action(name, server.ordinal))

    ready_servers = sum(1 for s in servers if s.ready and s.ordinal < packing.servers)
    ready_models = sum(1 for d in statuses.values() if _is_ready(d))
    fields = {
        "servers": packing.servers,
        "readyServers": ready_servers,
        "models": len(models),
        "readyModels": ready_models,
        "waiting": len(packing.waiting),
        "serverModels": [
            {
                "server": server_name(pool.name, i),
                "models": use.models,
                "memory": format_bytes(Fraction(use.memory)) if use.memory else "0",
            }
            for i, use in enumerate(packing.use)
        ],
    }
    problems = sorted(
        f"{server_name(pool.name, s.ordinal)}: {s.problem}"
        for s in servers
        if s.problem and s.ordinal < packing.servers
    )
    if ready_servers >= packing.servers:
        pool_conds = _ok(
            c.REASON_SERVERS_READY,
            f"{ready_servers} server(s) ready, {ready_models} model(s) READY",
        )
    else:
        pool_conds = _working(
            c.REASON_SERVERS_STARTING,
            f"{ready_servers} of {packing.servers} server(s) ready"
            + (f"; {'; '.join(problems)}" if problems else ""),
        )
    return PoolPlan(
        packing=packing,
        loads=tuple(loads),
        unloads=tuple(sorted(unloads, key=lambda a: (a.ordinal, a.model))),
        models=statuses,
        pool=st.Derived(pool_conds, fields),
    )


def _is_ready(derived: st.Derived) -> bool:
    return any(x.type == c.READY and x.status == "True" for x in derived.conditions)
