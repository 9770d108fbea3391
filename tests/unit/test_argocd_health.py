"""The Argo CD health scripts give the verdict kstatus (and so Flux) gives.

Argo CD runs health checks in gopher-lua, a Lua 5.1; the scripts are run here in
a real Lua 5.1 through lupa, with `obj` shaped the way Argo CD shapes it (maps
and lists as tables, lists 1-based). The expected verdicts come from a
transcription of kstatus' generic rules for custom resources
(`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`), which is what Flux's
kustomize-controller runs when a Kustomization has `wait: true`; the e2e tests
check the same agreement against a live Flux.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.argocd_lua import ARGOCD_DIR, health

from smallfleet.core import conditions as c

SCRIPTS: Final = ("smallmodel.lua", "modelpipeline.lua")
ARGO_STATUSES: Final = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing"}

# kstatus result -> the Argo CD status that means the same.
KSTATUS_TO_ARGO: Final = {
    "Current": "Healthy",
    "InProgress": "Progressing",
    "Terminating": "Progressing",
    "Failed": "Degraded",
}


def lua_health(obj: dict[str, Any], script: str = "smallmodel.lua") -> tuple[str, str]:
    return health(obj, script)


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    """kstatus.Compute for a custom resource kstatus has no specific rules for."""
    meta = obj.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return "InProgress", f"generation {generation}, observed {observed}"
    conds = status.get("conditions") or []
    for cond in conds:
        if cond.get("type") == c.RECONCILING and cond.get("status") == "True":
            return "InProgress", cond.get("message", "")
        if cond.get("type") == c.STALLED and cond.get("status") == "True":
            return "Failed", cond.get("message", "")
    for cond in conds:
        if cond.get("type") != c.READY:
            continue
        if cond.get("status") == "True":
            return "Current", "Resource is Ready"
        if cond.get("status") in ("False", "Unknown"):
            return "InProgress", cond.get("message", "")
    return "Current", "Resource is current"


def has_information(obj: dict[str, Any]) -> bool:
    """False where kstatus decides Current only because it found nothing to read."""
    status = obj.get("status") or {}
    conds = status.get("conditions") or []
    return any(
        x.get("type") == c.READY and x.get("status") in ("True", "False", "Unknown") for x in conds
    ) or any(
        x.get("type") in (c.RECONCILING, c.STALLED) and x.get("status") == "True" for x in conds
    )


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def sm(
    *conds: dict[str, Any],
    generation: int = 1,
    observed: int | None = 1,
    deleting: bool = False,
    status: bool = True,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "m", "namespace": "ns", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: dict[str, Any] = {
        "apiVersion": "serving.smallfleet.io/v1alpha1",
        "kind": "SmallModel",
        "metadata": meta,
        "spec": {},
    }
    if status:
        st_: dict[str, Any] = {"conditions": list(conds)}
        if observed is not None:
            st_["observedGeneration"] = observed
        obj["status"] = st_
    return obj


READY_TRUE = cond(c.READY, "True", c.REASON_AVAILABLE, "1/1 replicas ready in eu-north")
READY_FALSE = cond(c.READY, "False", c.REASON_PROGRESSING, "0/1 replicas ready")
RECONCILING = cond(c.RECONCILING, "True", c.REASON_APPLYING, "applying generation 2")
RECONCILING_OFF = cond(c.RECONCILING, "False", c.REASON_RECONCILED, "")
STALLED = cond(
    c.STALLED, "True", c.REASON_NO_FEASIBLE_REGION, "no node offers nvidia.com/gpu.product=B300"
)
STALLED_OFF = cond(c.STALLED, "False", c.REASON_RECONCILED, "")

CASES: Final[list[tuple[str, dict[str, Any], str, str]]] = [
    ("no status yet", sm(status=False), "Progressing", "Waiting for the operator"),
    ("empty status", sm(observed=None), "Progressing", "Waiting for the Ready condition"),
    ("status without conditions", sm(), "Progressing", "Waiting for the Ready condition"),
    ("ready", sm(READY_TRUE, RECONCILING_OFF, STALLED_OFF), "Healthy", "1/1 replicas ready"),
    ("ready, no observedGeneration", sm(READY_TRUE, observed=None), "Healthy", "1/1"),
    ("ready but generation not observed", sm(READY_TRUE, generation=2), "Progressing", "Generation 2"),
    ("observed ahead of generation", sm(READY_TRUE, generation=1, observed=2), "Progressing", "observed 2"),
    ("rollout under way", sm(READY_FALSE, RECONCILING), "Progressing", "applying generation 2"),
    ("ready false alone", sm(READY_FALSE), "Progressing", "0/1 replicas ready"),
    ("ready unknown", sm(cond(c.READY, "Unknown", "", "")), "Progressing", "Not ready"),
    ("stalled", sm(cond(c.READY, "False", c.REASON_NO_FEASIBLE_REGION, "x"), RECONCILING_OFF, STALLED), "Degraded", "no node offers"),
    ("stalled, reason only", sm(cond(c.STALLED, "True", c.REASON_MISSING_MODEL, "")), "Degraded", c.REASON_MISSING_MODEL),
    ("stalled wins over ready", sm(READY_TRUE, STALLED), "Degraded", "no node offers"),
    ("reconciling listed first wins", sm(READY_FALSE, RECONCILING, STALLED), "Progressing", "applying"),
    ("stalled listed first wins", sm(READY_FALSE, STALLED, RECONCILING), "Degraded", "no node offers"),
    ("stale generation beats stalled", sm(STALLED, generation=3, observed=2), "Progressing", "Generation 3"),
    ("being deleted", sm(READY_TRUE, deleting=True), "Progressing", "Being deleted"),
    ("only specific conditions", sm(cond(c.PLACED, "True", c.REASON_PLACED, "")), "Progressing", "Waiting for the Ready"),
]  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("name", "obj", "want", "message"), CASES, ids=[x[0] for x in CASES])
def test_table(script: str, name: str, obj: dict[str, Any], want: str, message: str) -> None:
    got, got_message = lua_health(obj, script)
    assert got == want, name
    assert message in got_message, (name, got_message)
    if has_information(obj) or obj["metadata"].get("deletionTimestamp"):
        assert KSTATUS_TO_ARGO[kstatus(obj)[0]] == got, name


def test_scripts_share_one_logic() -> None:
    # Argo CD has no includes: each kind carries the whole script.
    texts = {(ARGOCD_DIR / s).read_text() for s in SCRIPTS}
    assert len(texts) == 1


def test_set_condition_output_reads_as_expected() -> None:
    # The writer's ordering (Ready, Reconciling, Stalled, ...) must give the intended verdict.
    now = "2026-01-01T00:00:00Z"
    conds: list[dict[str, Any]] = []
    for new in (
        c.Condition(c.STALLED, "True", c.REASON_MISSING_MODEL, "step rerank: SmallModel x missing"),
        c.Condition(c.READY, "False", c.REASON_MISSING_MODEL, "step rerank: SmallModel x missing"),
        c.Condition(c.RECONCILING, "False", c.REASON_MISSING_MODEL, ""),
    ):
        conds = c.set_condition(conds, new, now=now, observed_generation=4)
    obj = sm(*conds, generation=4, observed=4)
    assert lua_health(obj) == ("Degraded", "step rerank: SmallModel x missing")
    assert kstatus(obj)[0] == "Failed"


_condition = st.fixed_dictionaries(
    {
        "type": st.sampled_from([*c.TYPES, "Other"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "reason": st.sampled_from(["", c.REASON_AVAILABLE, c.REASON_UNSCHEDULABLE]),
        "message": st.text(max_size=20),
    }
)
_object = st.builds(
    lambda conds, gen, obs, deleting, has_status: sm(
        *conds, generation=gen, observed=obs, deleting=deleting, status=has_status
    ),
    st.lists(_condition, max_size=6),
    st.integers(min_value=1, max_value=4),
    st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(_object)
def test_agrees_with_kstatus(obj: dict[str, Any]) -> None:
    got, message = lua_health(obj)
    assert got in ARGO_STATUSES
    assert isinstance(message, str)
    verdict, kmessage = kstatus(obj)
    informed = has_information(obj) or bool(obj["metadata"].get("deletionTimestamp"))
    stale = obj.get("status", {}).get("observedGeneration") not in (
        None,
        obj["metadata"]["generation"],
    )
    if informed or stale:
        assert got == KSTATUS_TO_ARGO[verdict]
        if verdict == "Failed" and kmessage:
            assert message == kmessage
    else:
        # kstatus assumes Current when it finds nothing to read; the script waits.
        assert verdict == "Current"
        assert got == "Progressing"
