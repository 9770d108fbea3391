"""Readiness from Triton for dedicated servers: the pure decision (status.derive with the
servers' repository indexes) and the pass that reads them (control.readiness)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import pytest

from smallfleet.control.facts import StaticFacts
from smallfleet.control.readiness import TritonReadiness
from smallfleet.control.reconcile import Reconciler
from smallfleet.core import conditions as c
from smallfleet.core import status as st
from smallfleet.core.pools.plan import IndexEntry
from smallfleet.kube import Kube
from smallfleet.settings import Settings
from smallfleet.tritonapi import ServerError

KEY: Final = ("SmallModel", "ns", "m")
OWNER_UID: Final = "owner-uid"
# Triton's words for a python model whose config names an output the model does not make.
WRONG_OUTPUT: Final = (
    "Invalid argument: ValueError: this model needs output VECTOR, but its config declares "
    "EMBEDDING\\n\\nAt:\\n  /models/m/1/model.py(12): initialize\\n"
)


def pod(
    name: str = "m-eu-west-1-abc",
    uid: str = "pod-1",
    *,
    phase: str = "Running",
    ready: bool = False,
    running: bool = True,
    ip: str | None = "127.3.0.5",
    deleting: bool = False,
    restarts: int = 0,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    state = {"running": {"startedAt": "2025-01-01T00:00:00Z"}} if running else {"waiting": {}}
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "triton", "state": state, "restartCount": restarts}],
    }
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def deployment(ready: int = 0, *, deadline: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    if deadline:
        status["conditions"] = [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "m-eu-west-1-abc" has timed out progressing.',
            }
        ]
    return {
        "metadata": {
            "name": "m-eu-west-1",
            "generation": 1,
            "labels": {"serving.smallfleet.io/region": "eu-west-1"},
            "ownerReferences": [{"uid": OWNER_UID}],
        },
        "spec": {"replicas": 1},
        "status": status,
    }


def index(uid: str = "pod-1", *entries: tuple[str, str, str]) -> st.ServerIndex:
    return st.ServerIndex(
        pod="m-eu-west-1-abc",
        uid=uid,
        entries=tuple({"name": n, "state": s, "reason": r} for n, s, r in entries),
    )


FAILED: Final = index("pod-1", ("m", "UNAVAILABLE", WRONG_OUTPUT))


def conds(derived: st.Derived) -> dict[str, tuple[str, str, str]]:
    return {x.type: (x.status, x.reason, x.message) for x in derived.conditions}


# --- the pure decision --------------------------------------------------------------

CASES: Final[list[tuple[str, list[dict[str, Any]], list[st.ServerIndex], str | None]]] = [
    # (case, pods, indexes, the Stalled reason expected; None: not Stalled)
    ("failed load in a running unready pod", [pod()], [FAILED], c.REASON_MODEL_LOAD_FAILED),
    ("no index read yet", [pod()], [], None),
    ("still loading", [pod()], [index("pod-1", ("m", "LOADING", ""))], None),
    ("loaded, readiness probe not passed yet", [pod()], [index("pod-1", ("m", "READY", ""))], None),
    ("unloaded on purpose", [pod()], [index("pod-1", ("m", "UNAVAILABLE", "unloaded"))], None),
    ("the index is of a pod since replaced", [pod(uid="pod-2")], [FAILED], None),
    ("the pod is being deleted", [pod(deleting=True)], [FAILED], None),
    ("the pod turned Ready", [pod(ready=True)], [FAILED], None),
    ("Triton not running (init containers)", [pod(running=False)], [FAILED], None),
    ("Pending", [pod(phase="Pending")], [FAILED], None),
]


@pytest.mark.parametrize(
    ("pods", "indices", "reason"), [c_[1:] for c_ in CASES], ids=[c_[0] for c_ in CASES]
)
def test_a_model_triton_could_not_load_stalls_only_while_its_pod_waits_on_it(
    pods: list[dict[str, Any]], indices: list[st.ServerIndex], reason: str | None
) -> None:
    got = conds(
        st.derive(deployments=[deployment()], pods=pods, expected=["m-eu-west-1"], indices=indices)
    )
    if reason is None:
        assert got[c.STALLED][0] == "False", got
        assert got[c.RECONCILING][0] == "True", got
    else:
        assert got[c.STALLED][:2] == ("True", reason), got
        assert got[c.READY][:2] == ("False", reason), got


def test_the_message_names_the_pod_the_model_and_tritons_words_without_the_traceback() -> None:
    got = conds(st.derive(deployments=[deployment()], pods=[pod()], indices=[FAILED]))
    message = got[c.STALLED][2]
    assert message.startswith("m-eu-west-1-abc: model m did not load: ")
    assert "this model needs output VECTOR" in message
    assert "At:" not in message and "Invalid argument" not in message


def test_tritons_reason_comes_before_the_rollout_deadline() -> None:
    got = conds(st.derive(deployments=[deployment(deadline=True)], pods=[pod()], indices=[FAILED]))
    assert got[c.STALLED][1] == c.REASON_MODEL_LOAD_FAILED
    without = conds(st.derive(deployments=[deployment(deadline=True)], pods=[pod()]))
    assert without[c.STALLED][1] == c.REASON_ROLLOUT_FAILED


def test_a_serving_resource_stays_ready_beside_a_failed_surge_pod() -> None:
    # Two replicas ready at the minimum; a third pod (scaled up) failed: not Stalled.
    dep = deployment(ready=2)
    dep["spec"]["replicas"] = 3
    dep["status"].update(replicas=3, updatedReplicas=3)
    got = conds(
        st.derive(
            deployments=[dep],
            pods=[pod(uid="a", ready=True), pod(uid="b", ready=True), pod()],
            indices=[FAILED],
            floor=2,
        )
    )
    assert got[c.READY][0] == "True" and got[c.STALLED][0] == "False"
    assert "ModelLoadFailed" in got[c.READY][2]


# --- the pass that reads the indexes --------------------------------------------------


class FakeTriton:
    """Answers index() per address from a table; counts the reads."""

    def __init__(self, answers: dict[str, dict[str, IndexEntry] | Exception]) -> None:
        self.answers = answers
        self.reads: list[str] = []

    def __call__(self, address: str) -> FakeTriton.Client:
        return FakeTriton.Client(self, address)

    class Client:
        def __init__(self, outer: FakeTriton, address: str) -> None:
            self.outer, self.address = outer, address

        def index(self) -> dict[str, IndexEntry]:
            self.outer.reads.append(self.address)
            answer = self.outer.answers[self.address]
            if isinstance(answer, Exception):
                raise answer
            return answer


def model_body(pool: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"serving": {"pool": pool}} if pool else {}
    return {
        "kind": "SmallModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": OWNER_UID},
        "spec": spec,
    }


def setup(
    pods: list[dict[str, Any]], answers: dict[str, Any], *, pool: str | None = None
) -> tuple[
    TritonReadiness, FakeTriton, list[tuple[str, ...]], Callable[[list[dict[str, Any]]], None]
]:
    facts = StaticFacts(
        objects={KEY: model_body(pool)},
        children={KEY: [deployment()]},
        pod_list={KEY: pods},
    )
    reconciler = Reconciler(Kube(None), Settings(), facts)
    refreshed: list[tuple[str, ...]] = []
    reconciler.refresh = lambda *key, settle=True: refreshed.append(key)  # type: ignore[method-assign,assignment,misc]
    triton = FakeTriton(answers)
    readiness = TritonReadiness(reconciler, triton)

    def set_pods(new: list[dict[str, Any]]) -> None:
        facts.pod_list[KEY] = new

    return readiness, triton, refreshed, set_pods


BROKEN: Final = {"m": IndexEntry("UNAVAILABLE", WRONG_OUTPUT)}


def test_a_failure_read_from_an_unready_pod_reaches_status_once_and_is_not_read_again() -> None:
    readiness, triton, refreshed, _ = setup([pod()], {"127.3.0.5:8000": BROKEN})
    readiness.run()
    assert triton.reads == ["127.3.0.5:8000"]
    assert refreshed == [KEY]
    (seen,) = readiness.observations(KEY)
    assert seen.uid == "pod-1" and seen.entries[0]["state"] == "UNAVAILABLE"
    readiness.run()
    assert triton.reads == ["127.3.0.5:8000"]  # a failed load stays failed: not asked again
    assert refreshed == [KEY]  # nothing new: no status refresh


def test_a_restarted_container_is_asked_again() -> None:
    readiness, triton, _, set_pods = setup([pod()], {"127.3.0.5:8000": BROKEN})
    readiness.run()
    set_pods([pod(restarts=1)])
    readiness.run()
    assert len(triton.reads) == 2


def test_a_pod_still_loading_is_asked_each_pass_until_it_answers() -> None:
    unreachable = ServerError("connection refused", unreachable=True)
    readiness, triton, refreshed, _ = setup([pod()], {"127.3.0.5:8000": unreachable})
    readiness.run()
    readiness.run()
    assert len(triton.reads) == 2
    assert refreshed == [] and readiness.observations(KEY) == []
    triton.answers["127.3.0.5:8000"] = BROKEN
    readiness.run()
    assert refreshed == [KEY]


def test_a_pod_turning_ready_drops_what_it_said_and_refreshes() -> None:
    readiness, triton, refreshed, set_pods = setup(
        [pod()], {"127.3.0.5:8000": {"m": IndexEntry("READY")}}
    )
    readiness.run()
    assert refreshed == [KEY]
    set_pods([pod(ready=True)])
    readiness.run()
    assert readiness.observations(KEY) == [] and refreshed == [KEY, KEY]
    assert triton.reads == ["127.3.0.5:8000"]  # a Ready pod is never asked


@pytest.mark.parametrize(
    "pods",
    [
        [pod(ready=True)],
        [pod(running=False)],
        [pod(phase="Pending", ip=None)],
        [pod(deleting=True)],
        [pod(ip=None)],
    ],
    ids=["ready", "fetching", "pending", "deleting", "no-ip"],
)
def test_pods_whose_status_already_says_why_are_never_asked(pods: list[dict[str, Any]]) -> None:
    readiness, triton, refreshed, _ = setup(pods, {})
    readiness.run()
    assert triton.reads == [] and refreshed == []


def test_a_pooled_model_is_left_to_its_pool() -> None:
    readiness, triton, refreshed, _ = setup([pod()], {"127.3.0.5:8000": BROKEN}, pool="shared")
    readiness.run()
    assert triton.reads == [] and refreshed == []
