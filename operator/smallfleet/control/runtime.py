"""The runtime every handler shares: background passes and leadership.

Periodic work (the status resync; carbon refresh and autoscaling register
theirs with `every`) runs in one background thread rather than as kopf
timers: kopf guards each timer with a finalizer on the resource, and a
finalizer would block deleting a model, or its namespace, whenever the
operator is not running.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from smallfleet import telemetry
from smallfleet.control.facts import IndexFacts, Key
from smallfleet.control.pools import PoolController
from smallfleet.control.reconcile import STATUS_THREADS, Reconciler
from smallfleet.control.workqueue import WorkQueue
from smallfleet.core import leadership
from smallfleet.kube import Kube, KubeError, Transient

log = logging.getLogger("smallfleet.runtime")

PERIODIC_TICK_SECONDS: Final = 1.0
LEADERSHIP_CACHE_SECONDS: Final = 2.0
# A failed reconcile comes back after 1, 2, 4 ... seconds, at most this many.
MAX_BACKOFF_SECONDS: Final = 60.0
# A replica that stands by keeps its queued keys and looks again after this long.
STANDBY_RETRY_SECONDS: Final = 2.0


@dataclass
class Runtime:
    """What every handler shares; passed to kopf as its `memo`.

    Periodic work (the status resync here; carbon refresh and autoscaling
    register theirs with `every`) runs in one background thread rather than
    as kopf timers: kopf guards each timer with a finalizer on the resource,
    and a finalizer would block deleting a model, or its namespace, whenever
    the operator is not running.
    """

    reconciler: Reconciler
    facts: IndexFacts = field(default_factory=IndexFacts)
    generations: dict[tuple[str, str], Any] = field(default_factory=dict)
    tasks: list[Periodic] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    # Whether this replica leads (always, when standalone); kopf pauses only its handlers.
    leading: Callable[[], bool] = lambda: True
    # Loads models into ServingPools' servers; None when pools are not served.
    pools: PoolController | None = None
    # The reconcile queue the handlers feed (`enqueue`); None until `start_queue`.
    queue: WorkQueue | None = None
    # Owners whose children had news (`refresh_soon`): a status refresh each, however many.
    refreshes: WorkQueue | None = None
    failures: dict[Key, int] = field(default_factory=dict)  # failed reconciles in a row
    # Set when every watched kind is indexed (`indices_complete`): until then keys wait in the
    # queues, and the periodic passes wait, since a plan made from part of the fleet is wrong.
    indexed: threading.Event = field(default_factory=threading.Event)
    _starting: threading.Lock = field(default_factory=threading.Lock)

    def start_queue(self, threads: int, refresh_threads: int = STATUS_THREADS) -> None:
        """Make the queues; their threads take keys once the indices are complete."""
        queue = self.queue = WorkQueue(self.reconcile_key, threads)
        telemetry.RECONCILE_QUEUE.set_function(lambda: len(queue))
        self.refreshes = WorkQueue(self.refresh_key, refresh_threads, name="smallfleet-status")
        if self.indexed.is_set():
            self._start_queues()

    def indices_complete(self) -> None:
        """Every watched kind is in kopf's indices: the queues and periodic passes start."""
        self.indexed.set()
        self._start_queues()

    def _start_queues(self) -> None:
        with self._starting:
            for queue in (self.queue, self.refreshes):
                if queue is not None and not queue.started():
                    queue.start()

    def stop_queues(self) -> None:
        for queue in (self.queue, self.refreshes):
            if queue is not None:
                queue.stop()

    def refresh_soon(self, key: Key) -> None:
        """Have `key`'s status brought up to date from its children (once, however many ask)."""
        if self.refreshes is None:
            raise RuntimeError("the refresh queue is not started")
        self.refreshes.add(key)

    def refresh_key(self, key: Key, _: bool) -> float | None:
        """The refresh queue's work; a failure is left to the resync, as a lost event would be."""
        if not self.leading():
            return STANDBY_RETRY_SECONDS
        try:
            self.reconciler.refresh(*key)
        except KubeError as exc:
            telemetry.ERRORS.labels(kind=key[0], error_class="transient").inc()
            log.warning("refresh of %s %s/%s failed, the resync will retry: %s", *key, exc)
        return None

    def enqueue(self, key: Key, *, once: bool = False) -> None:
        """Have `key` reconciled from its freshest body (`once`: unless this generation was)."""
        if self.queue is None:
            raise RuntimeError("the reconcile queue is not started")
        self.queue.add(key, once=once)

    def reconcile_key(self, key: Key, once: bool) -> float | None:
        """The queue's work: one full reconcile; seconds until the next try when it failed."""
        if not self.leading():
            return STANDBY_RETRY_SECONDS
        try:
            self.reconciler.reconcile_named(*key, once=once)
        except Exception as exc:
            failures = self.failures[key] = self.failures.get(key, 0) + 1
            delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1))
            if not isinstance(exc, KubeError):
                log.exception("reconcile of %s %s/%s failed; again in %.0f s", *key, delay)
                return delay
            transient = isinstance(exc, Transient)
            delay = delay if transient else MAX_BACKOFF_SECONDS
            error_class = "transient" if transient else "rejected"
            telemetry.ERRORS.labels(kind=key[0], error_class=error_class).inc()
            log.warning("reconcile of %s %s/%s: %s; again in %.0f s", *key, exc, delay)
            return delay
        self.failures.pop(key, None)
        return None

    def every(self, seconds: float, fn: Callable[[], None], name: str) -> None:
        """Run `fn` every `seconds` in the background thread (first run after one period)."""
        self.tasks.append(Periodic(name, seconds, fn, time.monotonic() + seconds))

    def run_periodic(self) -> None:
        """Every tick: whether this replica leads (which a replica on standby says too), then
        the passes that are due, once every watched kind is indexed."""
        while not self.stop.wait(PERIODIC_TICK_SECONDS):
            try:
                leading = self.leading()
            except Exception:  # unknown counts as not leading: two actors are worse than none
                log.exception("could not tell whether this replica leads")
                leading = False
            if not leading or not self.indexed.is_set():
                continue
            now = time.monotonic()
            for task in self.tasks:
                if now < task.due:
                    continue
                task.due = now + task.seconds
                try:
                    task.fn()
                except Exception:  # one failing task must not stop the others
                    log.exception("periodic task %s failed", task.name)

    def resync(self) -> None:
        """Refresh every watched resource's status from its children (the safety net).

        Reads come from the watches, so a pass over a quiet fleet sends nothing.
        """
        for kind, namespace, name in self.reconciler.known():
            if self.stop.is_set():
                return
            try:
                self.reconciler.refresh(kind, namespace, name)
            except KubeError as exc:
                log.warning("resync of %s %s/%s failed: %s", kind, namespace, name, exc)


def peering_leader(
    kube: Kube, name: str, namespace: str | None, identity: str, priority: int
) -> Callable[[], bool]:
    """`Runtime.leading` for a replica in kopf peering `name` (cluster-wide when no namespace)."""
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    cached: list[tuple[float, bool]] = []

    def leading() -> bool:
        now = time.monotonic()
        if cached and now - cached[0][0] < LEADERSHIP_CACHE_SECONDS:
            return cached[0][1]
        peering = kube.get("kopf.dev/v1", kind, namespace, name)
        answer = leadership.leads(
            (peering or {}).get("status"), identity, priority, dt.datetime.now(dt.UTC)
        )
        if not cached or cached[0][1] != answer:
            log.info("replica %s %s", identity, "leads" if answer else "stands by")
        cached[:] = [(now, answer)]
        return answer

    return leading


@dataclass
class Periodic:
    name: str
    seconds: float
    fn: Callable[[], None]
    due: float
