"""The fleet loop under concurrency: events, resyncs and status writes at once, invariants after.

kopf runs handlers in worker threads while the periodic thread resyncs,
places and scales; they meet on the same resources. This drives the real
`Reconciler` (and its status writer; in one variant fed by the reconcile
queue, as the handlers feed it) from many threads against an in-memory
API server that enforces resourceVersion preconditions the way the real one
does (409 on a stale write), with watches that may lag, and then checks what
must hold once the dust settles:

- every live SmallModel has exactly its rendered children, owned by its uid,
  and nothing else of ours is left (no duplicates, no orphans of a deleted one);
- its status describes its current generation, and exactly one of Ready,
  Reconciling and Stalled is True;
- no thread failed, no per-resource lock is left behind;
- a resync of the settled fleet writes nothing.

The end-to-end suite repeats the important parts against a real API server;
this one explores interleavings cheaply and often.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import random
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from smallfleet.control.facts import SMALL_MODEL, Key
from smallfleet.control.reconcile import API_VERSION, Reconciler
from smallfleet.control.runtime import Runtime
from smallfleet.core import conditions as c
from smallfleet.core.render import plan_for_model, render_children
from smallfleet.core.spec import parse_small_model
from smallfleet.kube import NotFound, Transient
from smallfleet.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cpu-classifier.yaml"
LABEL_KIND = "serving.smallfleet.io/owner-kind"
LABEL_NAME = "serving.smallfleet.io/owner-name"
NAMESPACE = "stress"


class FakeApi:
    """An in-memory API server: objects, resourceVersions, 409s, owner-reference garbage collection."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rv = itertools.count(1)
        self.writes = 0
        self.requests = 0
        self.random = random.Random(seed)
        # What the watches last delivered, per owner: may lag one write behind.
        self.seen: dict[tuple[str, str, str], dict[str, Any]] = {}

    # -- the Kube surface the reconciler uses -------------------------------------------------

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.writes += 1
        return obj

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        force: bool = True,
        manager: str = "",
        create_only: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            self.requests += 1
            key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            if create_only and key in self.objects:
                raise Transient(409, "the object has been modified")  # the precondition fails
            owners = obj["metadata"].get("ownerReferences") or []
            if owners and not any(o.get("uid") == owners[0]["uid"] for o in self._live_owners()):
                raise NotFound(404, "owner gone")  # the GC would remove it at once
            old = self.objects.get(key)
            new = copy.deepcopy(dict(obj))
            new["metadata"]["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
            generation = int((old or {}).get("metadata", {}).get("generation") or 0)
            if old is None or old.get("spec") != new.get("spec"):
                generation += 1
            new["metadata"]["generation"] = generation
            new["status"] = (old or {}).get("status", {})
            self.objects[key] = self._stamp(new)
            return copy.deepcopy(new)

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        with self.lock:
            self.requests += 1
            found = self.objects.get((kind, namespace or "", name))
            return copy.deepcopy(found) if found is not None else None

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        with self.lock:
            self.requests += 1
            self.writes += 1
            return self.objects.pop((kind, namespace or "", name), None) is not None

    def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            self.requests += 1
            key = (kind, namespace or "", name)
            found = self.objects.get(key)
            if found is None:
                raise NotFound(404, "gone")
            if (
                resource_version is not None
                and resource_version != found["metadata"]["resourceVersion"]
            ):
                raise Transient(409, "the object has been modified")
            merged = _merge_patch(found.get("status") or {}, status)
            found["status"] = merged
            self._stamp(found)
            return copy.deepcopy(found)

    def event(self, regarding: Mapping[str, Any], **_: Any) -> None:
        with self.lock:
            self.requests += 1

    # -- what the cluster does on its own -----------------------------------------------------

    def _live_owners(self) -> list[dict[str, Any]]:
        return [
            {"uid": o["metadata"]["uid"]}
            for (k, _, _), o in self.objects.items()
            if k == SMALL_MODEL
        ]

    def user_apply(self, name: str, description: str) -> None:
        """A person applies a SmallModel (a new one, or a new spec)."""
        (doc,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
        doc["metadata"] = {"name": name, "namespace": NAMESPACE}
        doc["spec"]["card"]["description"] = description
        with self.lock:
            key = (SMALL_MODEL, NAMESPACE, name)
            old = self.objects.get(key)
            body = copy.deepcopy(doc)
            body["metadata"]["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            body["metadata"]["generation"] = (
                (old["metadata"]["generation"] + (old["spec"] != body["spec"])) if old else 1
            )
            body["status"] = old["status"] if old else {"observedGeneration": 0}
            self.objects[key] = self._stamp(body)

    def user_delete(self, name: str) -> None:
        """A person deletes a SmallModel; the garbage collector takes its children at once."""
        with self.lock:
            gone = self.objects.pop((SMALL_MODEL, NAMESPACE, name), None)
            if gone is None:
                return
            uid = gone["metadata"]["uid"]
            for key, obj in list(self.objects.items()):
                if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or []):
                    del self.objects[key]

    def controllers(self) -> None:
        """The Deployment controller and kubelet: every Deployment rolls out and gets ready."""
        with self.lock:
            for (kind, _, _), obj in self.objects.items():
                if kind != "Deployment":
                    continue
                n = int(obj["spec"].get("replicas") or 0)
                want = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": n,
                    "availableReplicas": n,
                }
                if obj.get("status") != want:
                    obj["status"] = want
                    self._stamp(obj)

    def watch(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """What a watch has delivered of one object: now, or (at random) one step behind."""
        with self.lock:
            current = self.objects.get(key)
            if current is None:
                self.seen.pop(key, None)
                return None
            if key in self.seen and self.random.random() < 0.3:
                return copy.deepcopy(self.seen[key])
            self.seen[key] = copy.deepcopy(current)
            return copy.deepcopy(current)


def _merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge_patch(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class WatchedFacts:
    """`Facts` as kopf's indices would give them: from the fake API's (possibly lagging) watches."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def owner(self, key: Key) -> dict[str, Any] | None:
        return self.api.watch(key)

    def resources(self) -> list[Key]:
        with self.api.lock:
            return sorted(k for k in self.api.objects if k[0] == SMALL_MODEL)

    def _children(self, kind: str, key: Key) -> list[dict[str, Any]]:
        with self.api.lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in self.api.objects.items()
                if k == kind
                and ns == key[1]
                and (o["metadata"].get("labels") or {}).get(LABEL_KIND) == key[0]
                and (o["metadata"].get("labels") or {}).get(LABEL_NAME) == key[2]
            ]

    def deployments(self, key: Key) -> list[dict[str, Any]]:
        return self._children("Deployment", key)

    def other_children(self, key: Key) -> list[dict[str, Any]]:
        return [
            o
            for kind in ("ConfigMap", "Service", "PodDisruptionBudget")
            for o in self._children(kind, key)
        ]

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return []

    def waiting_on_triton(self) -> list[Key]:
        return []

    def nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {
                    "name": "cpu-1",
                    "labels": {"topology.kubernetes.io/region": "eu-west-1"},
                },
                "status": {"allocatable": {}},
            }
        ]

    def gpu_pods(self) -> list[dict[str, Any]]:
        return []

    def pipelines_using(self, namespace: str, model: str) -> list[str]:
        return []


def _expected_children(
    api: FakeApi, reconciler: Reconciler, body: Mapping[str, Any]
) -> set[tuple[str, str]]:
    plan = plan_for_model(parse_small_model(body), reconciler.settings)
    owner = {"apiVersion": API_VERSION, "kind": SMALL_MODEL, "metadata": body["metadata"]}
    return {
        (o["kind"], o["metadata"]["name"])
        for o in render_children(plan, owner=owner, regions={"eu-west-1": 1})
    }


def run_stress(
    seed: int, *, models: int = 6, operations: int = 400, threads: int = 6, queued: bool = False
) -> None:
    """`queued`: applies reach the reconciler as the handlers send them, through the queue."""
    api = FakeApi(seed)
    reconciler = Reconciler(api, Settings(), WatchedFacts(api), now=lambda: "2026-12-06T00:00:00Z")  # type: ignore[arg-type]
    runtime = Runtime(reconciler=reconciler)
    if queued:
        runtime.start_queue(4)
        runtime.indices_complete()
    names = [f"m{i}" for i in range(models)]
    rng = random.Random(seed)
    plan = [
        (
            rng.choice(("apply", "apply", "delete", "event", "event", "resync", "controllers")),
            rng.choice(names),
            rng.randint(0, 3),
        )
        for _ in range(operations)
    ]
    failures: list[BaseException] = []
    cursor = itertools.count()

    def worker() -> None:
        while (i := next(cursor)) < len(plan):
            op, name, variant = plan[i]
            key = (SMALL_MODEL, NAMESPACE, name)
            try:
                if op == "apply":
                    api.user_apply(name, f"variant {variant}")
                    if queued:
                        runtime.enqueue(key, once=variant == 0)
                    elif (body := api.watch(key)) is not None:
                        reconciler.reconcile(body)
                elif op == "delete":
                    api.user_delete(name)
                    reconciler.forget(*key)
                elif op == "event":
                    reconciler.refresh(*key)
                elif op == "resync":
                    for k in reconciler.known():
                        reconciler.refresh(*k)
                else:
                    api.controllers()
            except Transient:
                pass  # kopf retries these with backoff; the final pass below settles them
            except BaseException as exc:
                failures.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    if runtime.queue is not None:
        runtime.queue.stop(timeout=60)
        runtime.stop_queues()
        assert runtime.queue.busy() == 0, "a reconcile outlived the queue's stop"
    assert not failures, failures
    assert len(reconciler.locks) == 0, "a per-resource lock outlived its users"

    # Settle: what kopf's retries and the resync do after a burst.
    for _ in range(4):
        api.controllers()
        for key in reconciler.known():
            body = api.get(API_VERSION, *key)
            assert body is not None
            reconciler.reconcile(body)
    api.controllers()
    for key in reconciler.known():
        reconciler.refresh(*key)

    with api.lock:
        live = {k: o for k, o in api.objects.items() if k[0] == SMALL_MODEL}
        children = [o for k, o in api.objects.items() if k[0] != SMALL_MODEL]
    uids = {o["metadata"]["uid"]: k for k, o in live.items()}
    for child in children:
        owners = [r["uid"] for r in child["metadata"].get("ownerReferences") or []]
        assert owners and owners[0] in uids, (
            f"orphan or foreign child {child['kind']} {child['metadata']['name']}"
        )
    for key, body in live.items():
        mine = {
            (o["kind"], o["metadata"]["name"])
            for o in children
            if o["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
        }
        assert mine == _expected_children(api, reconciler, body), key
        status = body["status"]
        assert status["observedGeneration"] == body["metadata"]["generation"], key
        # What the reconcile adds beside the children's state survives the writes between.
        assert status.get("endpoint") == f"{key[2]}.{NAMESPACE}.svc", status
        trues = [
            t
            for t in (c.READY, c.RECONCILING, c.STALLED)
            if (c.get_condition(status["conditions"], t) or {}).get("status") == "True"
        ]
        assert trues == [c.READY], (key, status["conditions"])

    # A quiet resync writes nothing.
    before = api.writes
    for key in reconciler.known():
        reconciler.refresh(*key)
    assert api.writes == before, "a resync of a settled fleet wrote"


def test_events_resyncs_and_deletes_at_once_converge_without_duplicates() -> None:
    for seed in range(8):
        run_stress(seed)


def test_many_threads_on_few_objects() -> None:
    run_stress(99, models=2, operations=300, threads=8)


def test_applies_through_the_reconcile_queue_converge_the_same() -> None:
    for seed in range(4):
        run_stress(seed, queued=True)
    run_stress(98, models=2, operations=300, threads=8, queued=True)


def test_a_first_reconcile_again_updates_the_children_it_made_without_creating_them() -> None:
    """A first reconcile interrupted before its status write leaves children behind; the retry
    finds them in the index instead of creating each again (a 409, a read, an apply)."""
    api = FakeApi(0)
    reconciler = Reconciler(api, Settings(), WatchedFacts(api), now=lambda: "2026-12-06T00:00:00Z")  # type: ignore[arg-type]
    api.user_apply("m0", "variant 0")
    key = (SMALL_MODEL, NAMESPACE, "m0")
    real_status = api.patch_status

    def status_fails(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise Transient(504, "timed out")

    api.patch_status = status_fails  # type: ignore[method-assign]
    body = api.watch(key)
    assert body is not None
    with contextlib.suppress(Transient):
        reconciler.reconcile(body)
    assert not ((api.watch(key) or {}).get("status") or {}).get("observedGeneration")
    made = {k for k in api.objects if k[0] != SMALL_MODEL}
    assert {k[0] for k in made} >= {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}

    api.patch_status = real_status  # type: ignore[method-assign]
    before = api.requests
    applied: list[str] = []
    real_apply = api.apply

    def recording(obj: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        applied.append(obj["kind"] + (" (create)" if kwargs.get("create_only") else ""))
        return real_apply(obj, **kwargs)

    api.apply = recording  # type: ignore[method-assign]
    reconciler.reconcile(api.watch(key) or body)
    assert applied == [], f"applied again: {applied}"
    assert api.requests - before <= 1, "nothing but the status write was needed"
    assert {k for k in api.objects if k[0] != SMALL_MODEL} == made
