"""Pools at run time: gather what the servers report, plan (pure), apply, load and unload.

One pass per ServingPool (`sync`, on the periodic thread and after a change
of the pool or of a model that names it):

1. facts: the pool, the SmallModels that name it (from the watches), its
   server pods (from the watches) and each ready server's repository index,
   read from its Triton (the only live reads, one small request per server);
2. `core.pools.plan.plan_pool` decides packing, what to load and unload,
   and every status;
3. the StatefulSet and headless Service are applied when their rendering
   changed; loads and unloads go to a small thread pool, one at a time per
   server, so a slow load never holds the pass; the agent fetches and
   verifies the artifact, then Triton loads it with the config in the
   request;
4. each model's status part is handed to the reconciler, the one writer of
   SmallModel status; the pool's own status is written here, its only
   writer.

A failed fetch or load is remembered with the model's generation and the
server pod's uid and not retried until one of them changes, so a broken
artifact is reported once instead of being hammered; the message is the
agent's or Triton's own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from smallfleet.control.facts import SERVING_POOL, SMALL_MODEL, Facts, Key
from smallfleet.core import conditions as c
from smallfleet.core import spec as specs
from smallfleet.core import status as st
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.core.pools.packing import demand
from smallfleet.core.pools.plan import (
    FETCH,
    LOAD,
    Action,
    Carbon,
    Failure,
    Model,
    Server,
    plan_pool,
)
from smallfleet.core.pools.render import AGENT_PORT, render_pool, server_ordinal
from smallfleet.core.pools.spec import PoolSpec, parse_serving_pool
from smallfleet.core.render.children import NODE_REGION_LABEL
from smallfleet.core.render.serverplan import plan_for_model
from smallfleet.core.render.triton import HTTP_PORT, triton_config_json
from smallfleet.kube import FIELD_MANAGER, Kube, KubeError, NotFound, Rejected
from smallfleet.settings import Settings
from smallfleet.tritonapi import Agent, ServerError, Triton

log = logging.getLogger("smallfleet.pools")

API_VERSION: Final = "serving.smallfleet.io/v1alpha1"
WORKERS: Final = 4

TritonFactory = Callable[[str], Triton]
AgentFactory = Callable[[str], Agent]


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conds)


class PoolController:
    """Keeps every ServingPool's servers holding the models packing gives them."""

    def __init__(
        self,
        kube: Kube,
        facts: Facts,
        settings: Settings,
        *,
        refresh_model: Callable[[Key], object],
        triton: TritonFactory = Triton,
        agent: AgentFactory = Agent,
        workers: int = WORKERS,
        readings: Callable[[], Mapping[str, CarbonReading]] | None = None,
    ) -> None:
        self.kube = kube
        self.facts = facts
        self.settings = settings
        self.refresh_model = refresh_model
        self.triton = triton
        self.agent = agent
        # The latest carbon readings by region (placement's), to attribute servers' emissions.
        self.readings = readings
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._failures: dict[Key, Failure] = {}
        self._in_flight: dict[Key, Future[None]] = {}
        self._busy_servers: set[tuple[Key, int]] = set()
        self._statuses: dict[Key, st.Derived] = {}
        self._applied: dict[Key, str] = {}
        self._refused: dict[Key, str] = {}  # pool -> the API server's refusal of its children
        self._pool_status: dict[Key, Mapping[str, Any]] = {}
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="pool-load")

    # -- what the reconciler asks ---------------------------------------------

    def model_status(self, key: Key, pool: str) -> st.Derived:
        """A pooled SmallModel's status part: the last plan's, or why there is none yet."""
        with self._lock:
            known = self._statuses.get(key)
        if known is not None and (known.fields.get("pool") or {}).get("name") == pool:
            return known
        if self.facts.owner((SERVING_POOL, key[1], pool)) is None:
            message = (
                f"ServingPool {pool!r} not found in namespace {key[1]!r}: create it, "
                "or unset spec.serving.pool to serve the model on dedicated servers"
            )
            derived = st.stalled(c.REASON_POOL_MISSING, message)
            return st.Derived(
                derived.conditions, {"pool": {"name": pool, "server": "", "state": ""}}
            )
        return st.Derived(
            (
                c.Condition(c.READY, "False", c.REASON_LOADING, f"waiting for ServingPool {pool}"),
                c.Condition(c.RECONCILING, "True", c.REASON_LOADING, "packing into the pool"),
                c.Condition(c.STALLED, "False", c.REASON_LOADING, ""),
            ),
            {"pool": {"name": pool, "server": "", "state": ""}},
        )

    def forget_model(self, key: Key) -> None:
        with self._lock:
            self._statuses.pop(key, None)
            self._failures.pop(key, None)

    def forget_pool(self, key: Key) -> list[Key]:
        """Drop what is known of a deleted pool; the models whose status it was part of."""
        dropped: list[Key] = []
        with self._lock:
            self._applied.pop(key, None)
            self._refused.pop(key, None)
            self._pool_status.pop(key, None)
            for mkey, derived in list(self._statuses.items()):
                named = (derived.fields.get("pool") or {}).get("name")
                if mkey[1] == key[1] and named == key[2]:
                    del self._statuses[mkey]
                    dropped.append(mkey)
        return sorted(dropped)

    # -- the pass ---------------------------------------------------------------

    def sync_all(self) -> None:
        """One pass over every pool; a pool deleted unseen has its models told (the safety net)."""
        live = set(self.facts.pools())
        with self._lock:
            known = set(self._applied) | set(self._pool_status)
            known |= {
                (SERVING_POOL, mkey[1], str((d.fields.get("pool") or {}).get("name")))
                for mkey, d in self._statuses.items()
            }
        for gone in sorted(known - live):
            for mkey in self.forget_pool(gone):
                try:
                    self.refresh_model(mkey)
                except KubeError as exc:
                    log.warning("status of %s/%s not written: %s", mkey[1], mkey[2], exc)
        for key in sorted(live):
            try:
                self.sync(key)
            except KubeError as exc:
                log.warning("pool %s/%s: %s; the next pass retries", key[1], key[2], exc)

    def sync(self, key: Key) -> None:
        with self._sync_lock:
            self._sync(key)

    def _sync(self, key: Key) -> None:
        _, namespace, _name = key
        body = self.facts.owner(key)
        if body is None:
            return
        try:
            pool = parse_serving_pool(body)
        except specs.SpecError as exc:
            message = "; ".join(str(e) for e in exc.errors) or str(exc)
            self._write_pool_status(key, body, st.stalled(c.REASON_INVALID_SPEC, message))
            return
        models = self._models(pool)
        servers = self._servers(key, pool)
        with self._lock:
            self._in_flight = {k: f for k, f in self._in_flight.items() if not f.done()}
            failures = {k[2]: f for k, f in self._failures.items() if k[1] == namespace}
            in_flight = frozenset(k[2] for k, f in self._in_flight.items() if not f.done())
        carbon = None
        if self.readings is not None:
            try:
                carbon = Carbon(self.readings(), dt.datetime.now(dt.UTC), self.settings.pue)
            except Exception as exc:  # no signal: statuses go without emissions, not without Ready
                log.warning("carbon readings unavailable for pool %s: %s", pool.name, exc)
        plan = plan_pool(pool, list(models.values()), servers, failures, in_flight, carbon)
        refused = self._apply(key, pool, body, plan.packing.servers)
        if refused is not None:
            self._write_pool_status(key, body, st.stalled(c.REASON_APPLY_FAILED, refused))
            return
        addresses = self._addresses(key, pool)
        for action in plan.unloads:
            self._submit(key, pool, action, addresses, unload=True)
        for action in plan.loads:
            self._submit(key, pool, action, addresses, unload=False)
        changed: list[Key] = []
        with self._lock:
            for model, derived in plan.models.items():
                mkey = (SMALL_MODEL, namespace, model)
                if self._statuses.get(mkey) != derived:
                    self._statuses[mkey] = derived
                    changed.append(mkey)
        for mkey in changed:
            try:
                self.refresh_model(mkey)
            except KubeError as exc:
                log.warning("status of %s/%s not written, the resync will: %s", *mkey[1:], exc)
        self._write_pool_status(key, body, plan.pool)

    def _models(self, pool: PoolSpec) -> dict[str, Model]:
        out: dict[str, Model] = {}
        for name in self.facts.pool_models(pool.namespace, pool.name):
            body = self.facts.owner((SMALL_MODEL, pool.namespace, name))
            if body is None:
                continue
            try:
                spec = specs.parse_small_model(body)
            except specs.SpecError:
                continue  # the reconciler reports it Stalled
            if spec.pool != pool.name:
                continue
            recorded = ((body.get("status") or {}).get("pool") or {}).get("server") or ""
            out[name] = Model(
                demand=demand(spec, pool),
                generation=int(body["metadata"].get("generation") or 0),
                digest=spec.model.digest,
                recorded_server=server_ordinal(pool.name, str(recorded)),
            )
        return out

    def _pods(self, key: Key, pool: PoolSpec) -> dict[int, Mapping[str, Any]]:
        out: dict[int, Mapping[str, Any]] = {}
        for pod in self.facts.pods(key):
            meta = pod.get("metadata") or {}
            ordinal = server_ordinal(pool.name, str(meta.get("name") or ""))
            if ordinal is not None and not meta.get("deletionTimestamp"):
                out[ordinal] = pod
        return out

    def _addresses(self, key: Key, pool: PoolSpec) -> dict[int, tuple[str, str]]:
        out = {}
        for ordinal, pod in self._pods(key, pool).items():
            ip = (pod.get("status") or {}).get("podIP")
            uid = str((pod.get("metadata") or {}).get("uid") or "")
            if ip:
                out[ordinal] = (str(ip), uid)
        return out

    def _servers(self, key: Key, pool: PoolSpec) -> list[Server]:
        regions = {
            str((n.get("metadata") or {}).get("name")): (
                (n.get("metadata") or {}).get("labels") or {}
            ).get(NODE_REGION_LABEL)
            for n in self.facts.nodes()
        }
        servers = []
        for ordinal, pod in sorted(self._pods(key, pool).items()):
            uid = str((pod.get("metadata") or {}).get("uid") or "")
            ip = (pod.get("status") or {}).get("podIP")
            ready = _pod_ready(pod) and bool(ip)
            index = None
            if ready:
                try:
                    index = self.triton(f"{ip}:{HTTP_PORT}").index()
                except ServerError as exc:
                    log.info("pool %s server %d: index unreadable: %s", pool.name, ordinal, exc)
            problem = st.pod_problem(pod)
            servers.append(
                Server(
                    ordinal=ordinal,
                    uid=uid,
                    ready=ready,
                    index=index,
                    problem="" if problem is None else problem.message,
                    region=regions.get(str((pod.get("spec") or {}).get("nodeName"))),
                )
            )
        return servers

    def _apply(self, key: Key, pool: PoolSpec, body: Mapping[str, Any], servers: int) -> str | None:
        """Apply the pool's children when their rendering changed; the API server's refusal, if any.

        A refused rendering is remembered like an applied one, so it is not sent
        again every pass: only a change of the pool (a new rendering) tries again.
        """
        children = render_pool(
            pool,
            servers=servers,
            owner={"metadata": body["metadata"]},
            triton_image=pool.server.image or self.settings.triton_image,
            agent_image=self.settings.operator_image,
        )
        fingerprint = hashlib.sha256(json.dumps(children, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if self._applied.get(key) == fingerprint:
                return self._refused.get(key)
        refused = None
        for child in children:
            try:
                self.kube.apply(child, manager=FIELD_MANAGER)
            except (Rejected, NotFound) as exc:
                refused = f"{child['kind']} {child['metadata']['name']}: {exc.message}"
                log.warning("pool %s/%s: %s", pool.namespace, pool.name, refused)
                break
        with self._lock:
            self._applied[key] = fingerprint
            if refused is None:
                self._refused.pop(key, None)
            else:
                self._refused[key] = refused
        if refused is None:
            log.info("pool %s/%s: applied %d server(s)", pool.namespace, pool.name, servers)
        return refused

    # -- loads and unloads --------------------------------------------------------

    def _submit(
        self,
        key: Key,
        pool: PoolSpec,
        action: Action,
        addresses: Mapping[int, tuple[str, str]],
        *,
        unload: bool,
    ) -> None:
        where = addresses.get(action.ordinal)
        if where is None:
            return
        mkey = (SMALL_MODEL, pool.namespace, action.model)
        slot = (key, action.ordinal)
        with self._lock:
            if mkey in self._in_flight and not self._in_flight[mkey].done():
                return
            if slot in self._busy_servers:
                return  # one load at a time per server: the next pass sends the next
            self._busy_servers.add(slot)
            work = self._unload if unload else self._load
            self._in_flight[mkey] = self._executor.submit(
                self._run, work, slot, mkey, pool, action, where
            )

    def _run(
        self,
        work: Callable[[Key, PoolSpec, Action, tuple[str, str]], None],
        slot: tuple[Key, int],
        mkey: Key,
        pool: PoolSpec,
        action: Action,
        where: tuple[str, str],
    ) -> None:
        try:
            work(mkey, pool, action, where)
        except Exception:
            log.exception("pool %s: %s of %s failed", pool.name, work.__name__, action.model)
        finally:
            with self._lock:
                self._busy_servers.discard(slot)
        try:
            self.sync((SERVING_POOL, pool.namespace, pool.name))
        except KubeError as exc:
            log.warning("pool %s: %s; the next pass retries", pool.name, exc)

    def _load(self, mkey: Key, pool: PoolSpec, action: Action, where: tuple[str, str]) -> None:
        ip, uid = where
        body = self.facts.owner(mkey)
        if body is None:
            return
        spec = specs.parse_small_model(body)
        generation = int(body["metadata"].get("generation") or 0)
        (entry,) = plan_for_model(spec, self.settings).models
        try:
            summary = self.agent(f"http://{ip}:{AGENT_PORT}").fetch(
                spec.name, spec.model.uri, spec.model.digest, spec.model.format
            )
            log.info("pool %s: %s", pool.name, summary)
        except ServerError as exc:
            if not exc.unreachable:
                self._fail(mkey, Failure(FETCH, exc.message, generation, uid))
            log.warning("pool %s: fetch of %s failed: %s", pool.name, spec.name, exc.message)
            return
        config = triton_config_json(entry)
        try:
            self.triton(f"{ip}:{HTTP_PORT}").load(spec.name, config)
        except ServerError as exc:
            if not exc.unreachable:
                self._fail(mkey, Failure(LOAD, exc.message, generation, uid))
            log.warning("pool %s: load of %s failed: %s", pool.name, spec.name, exc.message)
            return
        with self._lock:
            self._failures.pop(mkey, None)
        log.info("pool %s: loaded %s into server %d", pool.name, spec.name, action.ordinal)

    def _unload(self, mkey: Key, pool: PoolSpec, action: Action, where: tuple[str, str]) -> None:
        ip, _ = where
        try:
            self.triton(f"{ip}:{HTTP_PORT}").unload(action.model)
            self.agent(f"http://{ip}:{AGENT_PORT}").remove(action.model)
        except ServerError as exc:
            log.warning("pool %s: unload of %s failed: %s", pool.name, action.model, exc.message)
            return
        log.info("pool %s: unloaded %s from server %d", pool.name, action.model, action.ordinal)

    def _fail(self, mkey: Key, failure: Failure) -> None:
        with self._lock:
            self._failures[mkey] = failure

    # -- the pool's own status --------------------------------------------------------

    def _write_pool_status(self, key: Key, body: Mapping[str, Any], derived: st.Derived) -> None:
        _, namespace, name = key
        generation = int(body["metadata"].get("generation") or 0)
        with self._lock:
            current = self._pool_status.get(key) or body.get("status") or {}
        new, _ = st.merge(current, derived, now=_now(), generation=generation)
        patch = st.status_patch(current, new)
        if not patch:
            return
        try:
            self.kube.patch_status(API_VERSION, SERVING_POOL, namespace, name, patch)
        except NotFound:
            return
        with self._lock:
            self._pool_status[key] = new

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
