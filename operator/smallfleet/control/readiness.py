"""Readiness from Triton for dedicated servers: a model that fails to load, in status within seconds.

A dedicated server runs `--exit-on-error=false --strict-readiness=true`: when
Triton cannot load a model, the server keeps running and its pod stays
unready. The Kubernetes objects say nothing more until the Deployment's
progress deadline (15 minutes) turns the rollout into RolloutFailed, whose
message does not say what went wrong. Triton does: its repository index
carries each model's state and the load error.

So every `READ_SECONDS` the periodic thread calls `TritonReadiness.run`,
which takes from the watches (`Facts.waiting_on_triton`, an index of
just those pods' owners) the pods of each SmallModel and ModelPipeline
whose Triton runs but which are not Ready, asks each of them
for its repository index (one small HTTP request, the only live read), and
keeps what it said. The reconciler hands these observations to the pure
`status.derive` (through `Reconciler.triton_index`), which turns an
UNAVAILABLE model into `Stalled`/ModelLoadFailed in Triton's words; a changed
observation asks the one status writer for a refresh. Nothing here writes
status or decides a condition.

Cost: pods that are Ready, Pending, fetching or KWOK-simulated are never
asked. A pod whose Triton reported a failure is not asked again while the
same container runs (a server does not retry a failed load by itself); a pod
still loading is asked once per pass until it turns Ready or fails.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

from smallfleet.control.facts import MODEL_PIPELINE, SMALL_MODEL, Key
from smallfleet.control.reconcile import Reconciler, owned, pooled
from smallfleet.core import status as st
from smallfleet.core.modelload import failures_from_index
from smallfleet.core.pools.plan import IndexEntry
from smallfleet.core.render.triton import HTTP_PORT
from smallfleet.kube import KubeError
from smallfleet.tritonapi import ServerError, Triton

log = logging.getLogger("smallfleet.readiness")

READ_SECONDS: Final = 2.0
# Index reads of one pass run side by side, so one unreachable pod does not hold up the rest.
MAX_PARALLEL_READS: Final = 8
TRITON_CONTAINER: Final = "triton"


class IndexReader(Protocol):
    """What this pass needs of a Triton client (`tritonapi.Triton`)."""

    def index(self) -> dict[str, IndexEntry]: ...


def _restarts(pod: Mapping[str, Any]) -> int:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if isinstance(c, Mapping) and c.get("name") == TRITON_CONTAINER:
            return int(c.get("restartCount") or 0)
    return 0


def _identity(pod: Mapping[str, Any]) -> tuple[str, int]:
    """One run of one pod's Triton container: what a read result belongs to."""
    return str((pod.get("metadata") or {}).get("uid")), _restarts(pod)


class TritonReadiness:
    """Reads the repository index of dedicated server pods that run unready; keeps what they said."""

    def __init__(
        self,
        reconciler: Reconciler,
        triton: Callable[[str], IndexReader] = Triton,
        *,
        parallel: int = MAX_PARALLEL_READS,
    ) -> None:
        self.reconciler = reconciler
        self.facts = reconciler.facts
        self.triton = triton
        self.parallel = parallel
        self._lock = threading.Lock()
        # resource -> (pod uid, restarts) -> what that pod's Triton reported
        self._seen: dict[Key, dict[tuple[str, int], st.ServerIndex]] = {}

    def observations(self, key: Key) -> list[st.ServerIndex]:
        """What the unready pods of one resource reported (the reconciler's `triton_index`)."""
        with self._lock:
            return list(self._seen.get(key, {}).values())

    def waiting(self, key: Key) -> list[dict[str, Any]]:
        """This dedicated resource's pods whose Triton runs but which are not Ready."""
        body = self.facts.owner(key)
        if body is None or (key[0] == SMALL_MODEL and pooled(body)):
            return []
        uid = (body.get("metadata") or {}).get("uid")
        if not owned(self.facts.deployments(key), uid):
            return []
        return [p for p in self.facts.pods(key) if st.waits_on_triton(p, TRITON_CONTAINER)]

    def run(self) -> None:
        """One pass over the resources with a pod waiting on Triton (called by `Runtime.every`)."""
        keys = [k for k in self.facts.waiting_on_triton() if k[0] in (SMALL_MODEL, MODEL_PIPELINE)]
        waiting = {key: self.waiting(key) for key in keys}
        with self._lock:
            before = {k: dict(v) for k, v in self._seen.items()}
        reads: list[tuple[Key, dict[str, Any]]] = []
        kept: dict[Key, dict[tuple[str, int], st.ServerIndex]] = {}
        for key, pods in waiting.items():
            for pod in pods:
                ident = _identity(pod)
                old = before.get(key, {}).get(ident)
                if old is not None and failures_from_index(old.entries):
                    kept.setdefault(key, {})[ident] = old  # a failed load stays failed
                else:
                    reads.append((key, pod))
        if reads:
            with ThreadPoolExecutor(max_workers=min(self.parallel, len(reads))) as pool:
                results = list(pool.map(lambda kp: self._read(kp[1]), reads))
            for (key, pod), found in zip(reads, results, strict=True):
                if found is not None:
                    kept.setdefault(key, {})[_identity(pod)] = found
        with self._lock:
            self._seen = kept
        for key in sorted(set(before) | set(kept)):
            if before.get(key, {}) != kept.get(key, {}):
                self._refresh(key)

    def _read(self, pod: Mapping[str, Any]) -> st.ServerIndex | None:
        """This pod's repository index; None while its Triton does not answer (still loading)."""
        meta = pod.get("metadata") or {}
        ip = str((pod.get("status") or {}).get("podIP"))
        try:
            index = self.triton(f"{ip}:{HTTP_PORT}").index()
        except ServerError as exc:
            log.debug(
                "pod %s/%s: index unreadable: %s", meta.get("namespace"), meta.get("name"), exc
            )
            return None
        return st.ServerIndex(
            pod=str(meta.get("name")),
            uid=str(meta.get("uid")),
            entries=tuple(
                {"name": name, "state": entry.state, "reason": entry.reason}
                for name, entry in sorted(index.items())
            ),
        )

    def _refresh(self, key: Key) -> None:
        try:
            self.reconciler.refresh(*key, settle=False)
        except KubeError as exc:
            log.warning("status of %s %s/%s not written, the resync will: %s", *key, exc)


def install(
    reconciler: Reconciler, every: Callable[[float, Callable[[], None], str], None]
) -> TritonReadiness:
    """Plug the pass into a reconciler and the periodic thread; returns it."""
    readiness = TritonReadiness(reconciler)
    reconciler.triton_index = readiness.observations
    every(READ_SECONDS, readiness.run, "triton-readiness")
    return readiness
