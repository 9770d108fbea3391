"""kopf's bookkeeping kept in the operator's memory instead of in annotations on the objects.

kopf records, per object, which handlers are in progress and the spec it
last handled (the "diff base" it compares the next event with). Kept in
annotations, that costs one more write per created or updated object (the
annotation patch after the handlers succeed), doubles the size of every
watched SmallModel (the last-handled spec is a copy of the spec) and makes
every object carry kopf's state.

The operator needs none of it to be durable: a reconcile is idempotent and
derives everything from the cluster, so an operator that starts without
kopf's memory (a restart, a new leader) sees every object as new and
reconciles it once, which is what resuming did anyway. Only a handler's
retry wakes itself by touching an annotation (`touch`, kopf's dummy), a
write on the error path alone.

Both stores are keyed by the object's uid; `forget` drops an object's
entries when its deletion is seen, so memory follows the live objects.
The diff base is kept as compact JSON (a few hundred bytes per object).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Final, cast

import kopf

PREFIX: Final = "smallfleet.io"
# The kinds with kopf create/update/resume/delete handlers (handlers.models, pipelines, pools).
COMPARED_KINDS: Final = frozenset({"SmallModel", "ModelPipeline", "ServingPool"})


def _uid(body: Any) -> str:
    return str((body.get("metadata") or {}).get("uid") or "")


class MemoryProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress in memory; only the retry wake-up ("touch") is an annotation."""

    def __init__(self) -> None:
        super().__init__(prefix=PREFIX)
        self._records: dict[tuple[str, str], kopf.ProgressRecord] = {}
        self._lock = threading.Lock()

    def fetch(self, *, key: Any, body: Any) -> kopf.ProgressRecord | None:
        with self._lock:
            return self._records.get((_uid(body), str(key)))

    def store(self, *, key: Any, record: kopf.ProgressRecord, body: Any, patch: Any) -> None:
        with self._lock:
            self._records[(_uid(body), str(key))] = record

    def purge(self, *, key: Any, body: Any, patch: Any) -> None:
        with self._lock:
            self._records.pop((_uid(body), str(key)), None)

    def forget(self, uid: str) -> None:
        with self._lock:
            for k in [k for k in self._records if k[0] == uid]:
                del self._records[k]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


class MemoryDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The last handled essence in memory, as JSON; annotations of older versions are ignored.

    kopf builds an essence on every event of every kind that has a handler,
    by deep-copying the whole body and then dropping most of it. Only kinds
    with create/update handlers (`COMPARED_KINDS`) ever compare essences, so
    every other kind (Deployments, Pods, Nodes, routes: their event
    handlers get no diff) gets an empty one, and the compared kinds are
    copied without their status and managedFields, which the essence drops.
    At a fleet's burst the copies were a fifth of the operator's CPU.
    """

    def __init__(self) -> None:
        super().__init__(prefix=PREFIX, key="last-handled-configuration")
        self._essences: dict[str, str] = {}
        self._lock = threading.Lock()

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if body.get("kind") not in COMPARED_KINDS:
            return {}
        if extra_fields:  # a handler filtered on a field, maybe in status: kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        slim = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        slim["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=extra_fields)

    def fetch(self, *, body: Any) -> Any:
        with self._lock:
            text = self._essences.get(_uid(body))
        return None if text is None else json.loads(text)

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        text = json.dumps(essence, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._essences[_uid(body)] = text

    def forget(self, uid: str) -> None:
        with self._lock:
            self._essences.pop(uid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._essences)


PROGRESS: Final = MemoryProgressStorage()
DIFFBASE: Final = MemoryDiffBaseStorage()


def forget(body: Any) -> None:
    """Drop what kopf remembered of an object that is gone."""
    uid = _uid(body)
    if uid:
        PROGRESS.forget(uid)
        DIFFBASE.forget(uid)
