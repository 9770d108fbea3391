"""Status of a SmallModel or ModelPipeline, derived purely from its observed children.

The operator's status is read by machines before people: `kubectl wait
--for=condition=Ready`, Flux's kstatus, Argo CD's health check. They agree on
three conditions: `Ready` (serving what the spec asks), `Reconciling` (work is
in progress and will finish without help) and `Stalled` (it will not finish
until a person acts), plus `observedGeneration`. Deriving them from the raw
Deployment and Pod dicts in a pure function keeps the rules in one place and
testable from recorded objects, and lets a restarted operator reach the same
answer from the cluster alone, with no memory of what it did before.

Stalled covers what the scheduler, the kubelet or Triton report and no retry
will fix: pods the scheduler cannot place (its message names the missing
resource), an artifact the fetch init container refused, a model Triton
could not load, a rollout past its progress deadline.

A model Triton cannot load does not crash its server (`--exit-on-error=false`);
the pod runs and stays unready (`--strict-readiness=true`), which the
Kubernetes objects alone report only when the rollout's progress deadline
passes, minutes later. So `derive` also takes what the servers' own Triton
said (`ServerIndex`, read by the control layer from pods that run but are not
Ready) and turns a model it reports UNAVAILABLE into ModelLoadFailed with
Triton's words, within seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from smallfleet.core import conditions as c
from smallfleet.core.modelload import load_failure_reason

REGION_LABEL: Final = "topology.kubernetes.io/region"
SMALLFLEET_REGION_LABEL: Final = "serving.smallfleet.io/region"
# Containers whose failure means the artifact could not be fetched or verified.
FETCH_CONTAINER_HINTS: Final = ("fetch", "model-fetch", "artifact")
# Waiting reasons that will not clear by themselves.
STUCK_WAITING_REASONS: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
MAX_MESSAGE: Final = 1024


@dataclass(frozen=True)
class Problem:
    """Something a person must fix, found in a child's status."""

    reason: str  # one of the conditions.REASON_* values
    message: str


@dataclass(frozen=True)
class ServerIndex:
    """What one server pod's Triton reported its repository holds (POST /v2/repository/index).

    `entries` are Triton's own: name, state (READY, LOADING, UNAVAILABLE) and
    reason. `uid` ties the observation to one pod, so that one read from a pod
    since replaced or turned Ready says nothing.
    """

    pod: str
    uid: str
    entries: tuple[Mapping[str, str], ...] = field(default=(), hash=False)


@dataclass(frozen=True)
class DeploymentState:
    name: str
    region: str
    desired: int
    ready: int
    updated: int
    available: int
    total: int  # pods of every revision, old ones included
    # The current template has replaced every old pod (some may still be starting or Pending).
    settled: bool
    rollout_done: bool
    problem: Problem | None

    def serves(self, floor: int) -> bool:
        """Settled, with at least `floor` replicas (or all it wants, if fewer) ready."""
        need = min(self.desired, floor)
        return self.settled and self.available >= need and self.ready >= need


@dataclass(frozen=True)
class Derived:
    """What status should say: conditions and the plain fields beside them."""

    conditions: tuple[c.Condition, ...]
    fields: Mapping[str, Any] = field(default_factory=dict)
    # Condition types to remove (one whose subject is gone, such as Exposed after
    # spec.expose is deleted): a condition nobody sets any more would otherwise stay.
    drop: tuple[str, ...] = ()


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _cond(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    found = _get(obj, "status", "conditions")
    if not isinstance(found, list):
        return None
    for item in found:
        if isinstance(item, Mapping) and item.get("type") == type_:
            return item
    return None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def region_of(deployment: Mapping[str, Any]) -> str:
    """The region a Deployment's pods are pinned to ('' when not pinned)."""
    labels = _get(deployment, "metadata", "labels") or {}
    for key in (SMALLFLEET_REGION_LABEL, REGION_LABEL):
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    selector = _get(deployment, "spec", "template", "spec", "nodeSelector") or {}
    value = selector.get(REGION_LABEL)
    if isinstance(value, str):
        return value
    terms = _get(
        deployment,
        "spec",
        "template",
        "spec",
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    )
    for term in terms if isinstance(terms, list) else []:
        for expr in term.get("matchExpressions") or []:
            values = expr.get("values") or []
            if expr.get("key") == REGION_LABEL and expr.get("operator") == "In" and values:
                return str(values[0])
    return ""


def deployment_state(deployment: Mapping[str, Any]) -> DeploymentState:
    """Rollout and readiness of one Deployment, by the rules kstatus applies."""
    status = deployment.get("status") or {}
    desired = _int(_get(deployment, "spec", "replicas"))
    generation = _int(_get(deployment, "metadata", "generation"))
    observed = _int(status.get("observedGeneration"))
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    ready = _int(status.get("readyReplicas"))
    settled = observed >= generation and updated >= desired and total <= updated
    rollout_done = settled and available >= desired
    problem: Problem | None = None
    progressing = _cond(deployment, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        problem = Problem(
            c.REASON_ROLLOUT_FAILED,
            _clip(
                f"Deployment {_get(deployment, 'metadata', 'name')}: "
                f"{progressing.get('message') or 'progress deadline exceeded'}"
            ),
        )
    return DeploymentState(
        name=str(_get(deployment, "metadata", "name") or ""),
        region=region_of(deployment),
        desired=desired,
        ready=ready,
        updated=updated,
        available=available,
        total=total,
        settled=settled,
        rollout_done=rollout_done,
        problem=problem,
    )


def _is_fetch(name: str) -> bool:
    return any(hint in name for hint in FETCH_CONTAINER_HINTS)


def _container_failure(status: Mapping[str, Any]) -> str | None:
    """A message when this container failed or is stuck, else None."""
    for key in ("state", "lastState"):
        terminated = _get(status, key, "terminated")
        if isinstance(terminated, Mapping) and _int(terminated.get("exitCode")) != 0:
            text = terminated.get("message") or terminated.get("reason") or "terminated"
            return f"exit code {_int(terminated.get('exitCode'))}: {text}"
        if key == "state":
            waiting = _get(status, "state", "waiting")
            if isinstance(waiting, Mapping) and waiting.get("reason") in STUCK_WAITING_REASONS:
                last = _get(status, "lastState", "terminated")
                if isinstance(last, Mapping) and (last.get("message") or last.get("reason")):
                    return str(last.get("message") or last.get("reason"))
                return f"{waiting.get('reason')}: {waiting.get('message') or ''}".rstrip(": ")
    return None


def scheduler_refusal(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it found no node for this pod, else None."""
    scheduled = _cond(pod, "PodScheduled")
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        return str(scheduled.get("message") or "")
    return None


def pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    """Why this pod will not serve without a person acting, if it will not."""
    if _get(pod, "metadata", "deletionTimestamp"):
        return None
    name = _get(pod, "metadata", "name") or "pod"
    refusal = scheduler_refusal(pod)
    if refusal is not None:
        return Problem(c.REASON_UNSCHEDULABLE, _clip(refusal))
    status = pod.get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        failure = _container_failure(init)
        if failure is not None:
            return Problem(
                c.REASON_ARTIFACT_FAILED,
                _clip(f"{name}: init container {init.get('name')} failed: {failure}"),
            )
    for container in status.get("containerStatuses") or []:
        failure = _container_failure(container)
        if failure is not None:
            reason = (
                c.REASON_ARTIFACT_FAILED
                if _is_fetch(str(container.get("name")))
                else c.REASON_MODEL_LOAD_FAILED
            )
            return Problem(reason, _clip(f"{name}: container {container.get('name')}: {failure}"))
    return None


def pod_ready(pod: Mapping[str, Any]) -> bool:
    ready = _cond(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def waits_on_triton(pod: Mapping[str, Any], container: str = "triton") -> bool:
    """Whether this pod's Triton runs but the pod is not Ready: only Triton can say why.

    A pod still fetching (init containers), Pending, being deleted or Ready
    has its answer in its own status; the repository index of one that runs
    unready tells a model still loading from one that failed.
    """
    status = pod.get("status") or {}
    if _get(pod, "metadata", "deletionTimestamp") or status.get("phase") != "Running":
        return False
    if not status.get("podIP") or pod_ready(pod):
        return False
    return any(
        c.get("name") == container and isinstance(_get(c, "state", "running"), Mapping)
        for c in status.get("containerStatuses") or []
        if isinstance(c, Mapping)
    )


def index_problems(
    pods: Sequence[Mapping[str, Any]], indices: Sequence[ServerIndex]
) -> list[Problem]:
    """ModelLoadFailed for each pod that still waits on Triton and whose Triton failed a model."""
    waiting = {
        str(_get(p, "metadata", "uid")): str(_get(p, "metadata", "name") or "pod")
        for p in pods
        if waits_on_triton(p)
    }
    out: list[Problem] = []
    for index in sorted(indices, key=lambda i: i.pod):
        name = waiting.get(index.uid)
        reason = load_failure_reason(index.entries) if name is not None else None
        if reason is not None:
            out.append(Problem(c.REASON_MODEL_LOAD_FAILED, _clip(f"{name}: {reason}")))
    return out


def lost_pods(
    pods: Sequence[Mapping[str, Any]], nodes: Collection[str] | None
) -> dict[str, list[str]]:
    """Ready pods bound to a node that no longer exists, by the name of their Deployment.

    Nothing runs such a pod, yet it stays Ready, and counted in its
    Deployment's readyReplicas, until the pod garbage collector deletes it
    (40 s or more after the node went). `nodes` None (not known) loses none.
    """
    if not nodes:
        return {}
    lost: dict[str, list[str]] = {}
    for pod in pods:
        node = _get(pod, "spec", "nodeName")
        if not node or node in nodes or not pod_ready(pod):
            continue
        if _get(pod, "metadata", "deletionTimestamp"):
            continue
        for ref in _get(pod, "metadata", "ownerReferences") or []:
            if isinstance(ref, Mapping) and ref.get("kind") == "ReplicaSet":
                # A Deployment's ReplicaSet is named <deployment>-<pod-template-hash>.
                deployment = str(ref.get("name") or "").rsplit("-", 1)[0]
                lost.setdefault(deployment, []).append(f"{_get(pod, 'metadata', 'name')} on {node}")
    return lost


def _without_lost(state: DeploymentState, lost: int) -> DeploymentState:
    if not lost:
        return state
    return replace(
        state,
        ready=max(0, state.ready - lost),
        available=max(0, state.available - lost),
        rollout_done=state.rollout_done and state.available - lost >= state.desired,
    )


def derive(
    *,
    deployments: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]] = (),
    expected: Collection[str] = (),
    digest: str | None = None,
    floor: int | None = None,
    indices: Sequence[ServerIndex] = (),
    nodes: Collection[str] | None = None,
) -> Derived:
    """Conditions and fields for a resource whose children are applied.

    `expected` names the Deployments the current spec asks for; one that is
    not observed yet keeps the resource Reconciling. `floor` is the spec's
    minimum of replicas per Deployment: once every Deployment has rolled out
    and has that many ready, the resource serves, and replicas an autoscaler
    asked for beyond it (starting, or Pending for want of a GPU) are named in
    the Ready message instead of making the resource not Ready. Such a
    shortfall ends on its own when a GPU frees up or the load falls; it is
    not a reason to page a person or to hold a GitOps sync.

    `indices` are the repository indexes read from pods whose Triton runs
    unready; a model one reports UNAVAILABLE with a reason is a problem
    named in Triton's words, ahead of the rollout deadline it would
    otherwise only be seen as.

    `nodes` names the cluster's nodes: a ready pod bound to a node not among
    them serves nothing and is not counted ready (see `lost_pods`).
    """
    lost = lost_pods(pods, nodes)
    states = sorted(
        (
            _without_lost(s, len(lost.get(s.name, ())))
            for s in (deployment_state(d) for d in deployments)
        ),
        key=lambda s: s.name,
    )
    seen = {s.name for s in states}
    missing = sorted(set(expected) - seen)
    problems = index_problems(pods, indices)
    problems += [s.problem for s in states if s.problem is not None]
    problems += [p for p in (pod_problem(pod) for pod in pods) if p is not None]

    desired = sum(s.desired for s in states)
    ready = sum(s.ready for s in states)
    # The regions serving now: those with a ready replica.
    serving = sorted({s.region for s in states if s.region and s.ready > 0})
    fields: dict[str, Any] = {
        "replicas": sum(s.total for s in states),
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "regions": serving,
        "region": ",".join(serving),
    }
    placed = sorted({s.region for s in states if s.region})

    all_ready = (
        bool(states)
        and not missing
        and all(s.rollout_done and s.ready >= s.desired for s in states)
    )
    minimum_serves = (
        not all_ready
        and floor is not None
        and bool(states)
        and not missing
        and all(s.serves(floor) for s in states)
    )
    gone = sorted(p for names in lost.values() for p in names)
    any_pod_ready = any(
        pod_ready(p) and (not nodes or _get(p, "spec", "nodeName") in nodes) for p in pods
    )
    if digest is not None:
        fields["artifact"] = {
            "digest": digest,
            "verified": all_ready or minimum_serves or any_pod_ready,
        }

    where = f" in {', '.join(placed)}" if placed else ""
    out: list[c.Condition] = []
    if minimum_serves:
        short = f"{problems[0].reason}: {problems[0].message}" if problems else "the rest starting"
        message = _clip(
            f"{ready}/{desired} replicas ready{where}; beyond the minimum of {floor}, {short}"
        )
        out += [
            c.Condition(c.READY, "True", c.REASON_AVAILABLE, message),
            c.Condition(c.RECONCILING, "False", c.REASON_RECONCILED, message),
            c.Condition(c.STALLED, "False", c.REASON_RECONCILED, ""),
        ]
    elif problems and not all_ready:
        first = problems[0]
        out += [
            c.Condition(c.READY, "False", first.reason, first.message),
            c.Condition(c.RECONCILING, "False", first.reason, "waiting for a person to act"),
            c.Condition(c.STALLED, "True", first.reason, first.message),
        ]
    elif all_ready:
        message = f"{ready}/{desired} replicas ready{where}"
        out += [
            c.Condition(c.READY, "True", c.REASON_AVAILABLE, message),
            c.Condition(c.RECONCILING, "False", c.REASON_RECONCILED, message),
            c.Condition(c.STALLED, "False", c.REASON_RECONCILED, ""),
        ]
    else:
        message = (
            f"waiting for Deployment {', '.join(missing)}"
            if missing
            else f"{ready}/{desired} replicas ready, rollout in progress"
        )
        if gone:
            message = _clip(
                f"{ready}/{desired} replicas ready; pods on deleted nodes wait to be "
                f"replaced: {', '.join(gone)}"
            )
        out += [
            c.Condition(c.READY, "False", c.REASON_PROGRESSING, message),
            c.Condition(c.RECONCILING, "True", c.REASON_PROGRESSING, message),
            c.Condition(c.STALLED, "False", c.REASON_PROGRESSING, ""),
        ]
    if digest is not None:
        artifact_problem = next((p for p in problems if p.reason == c.REASON_ARTIFACT_FAILED), None)
        if artifact_problem is not None:
            out.append(
                c.Condition(
                    c.ARTIFACT_VERIFIED, "False", c.REASON_ARTIFACT_FAILED, artifact_problem.message
                )
            )
        elif fields["artifact"]["verified"]:
            out.append(
                c.Condition(
                    c.ARTIFACT_VERIFIED, "True", c.REASON_VERIFIED, f"{digest} matches the artifact"
                )
            )
        else:
            out.append(
                c.Condition(
                    c.ARTIFACT_VERIFIED, "Unknown", c.REASON_PENDING, "no pod has fetched it yet"
                )
            )
    return Derived(conditions=tuple(out), fields=fields)


def _same_parent(ref: Mapping[str, Any], wanted: Mapping[str, Any], namespace: str) -> bool:
    """Whether a route status' parentRef names the Gateway (and listener) the route asked for."""
    return (
        ref.get("name") == wanted.get("name")
        and (ref.get("namespace") or namespace) == (wanted.get("namespace") or namespace)
        and (ref.get("sectionName") or "") == (wanted.get("sectionName") or "")
        and (ref.get("kind") or "Gateway") == "Gateway"
    )


def exposure(wanted: Sequence[Mapping[str, Any]], observed: Sequence[Mapping[str, Any]]) -> Derived:
    """The Exposed condition from the routes' own status, as gateway controllers write it.

    `wanted` are the rendered routes (empty: spec.expose is unset, and an
    Exposed condition left from before is dropped); `observed` the routes the
    operator watches. A route is exposed when, for the Gateway it names, its
    controller reports Accepted and ResolvedRefs True for the route's current
    generation. Any False is the gateway's refusal, passed on with the
    controller's reason and words; no answer yet (no controller, or one that
    has not caught up with the route's generation) is Unknown.
    """
    if not wanted:
        return Derived((), drop=(c.EXPOSED,))
    seen = {
        (str(o.get("kind")), str(_get(o, "metadata", "name"))): o
        for o in observed
        if not _get(o, "metadata", "deletionTimestamp")
    }
    refused: list[tuple[str, str]] = []
    pending: list[str] = []
    accepted: list[str] = []
    for route in wanted:
        kind, name = str(route.get("kind")), str(_get(route, "metadata", "name"))
        namespace = str(_get(route, "metadata", "namespace") or "")
        what = f"{kind} {name}"
        before = (len(pending), len(refused))
        found = seen.get((kind, name))
        if found is None:
            pending.append(f"{what} is not created yet")
            continue
        generation = _int(_get(found, "metadata", "generation"))
        parents = [
            p
            for p in _get(found, "status", "parents") or []
            if isinstance(p, Mapping)
            for ref in (_get(route, "spec", "parentRefs") or [])[:1]
            if _same_parent(p.get("parentRef") or {}, ref, namespace)
        ]
        if not parents:
            pending.append(f"no gateway controller has reported on {what} yet")
            continue
        for parent in parents:
            conds = {
                str(x.get("type")): x
                for x in parent.get("conditions") or []
                if isinstance(x, Mapping)
            }
            for type_ in ("Accepted", "ResolvedRefs"):
                cond = conds.get(type_)
                if cond is None or _int(cond.get("observedGeneration")) < generation:
                    pending.append(
                        f"{parent.get('controllerName') or 'the gateway'} has not reported "
                        f"{type_} on {what} generation {generation} yet"
                    )
                elif cond.get("status") != "True":
                    reason = str(cond.get("reason") or type_)
                    refused.append(
                        (
                            reason,
                            f"{what}: {type_}={cond.get('status')} ({reason}): "
                            f"{cond.get('message') or ''}".rstrip(": "),
                        )
                    )
        if (len(pending), len(refused)) == before:
            ref = (_get(route, "spec", "parentRefs") or [{}])[0]
            gateway = f"{ref.get('namespace') or namespace}/{ref.get('name')}"
            hosts = _get(route, "spec", "hostnames") or []
            accepted.append(
                f"{what} by Gateway {gateway}" + (f" for {', '.join(hosts)}" if hosts else "")
            )
    if refused:
        message = _clip("; ".join(m for _, m in refused))
        return Derived((c.Condition(c.EXPOSED, "False", refused[0][0], message),))
    if pending:
        return Derived(
            (c.Condition(c.EXPOSED, "Unknown", c.REASON_ROUTES_PENDING, _clip("; ".join(pending))),)
        )
    return Derived(
        (
            c.Condition(
                c.EXPOSED,
                "True",
                c.REASON_ROUTES_ACCEPTED,
                _clip("accepted: " + "; ".join(accepted)),
            ),
        )
    )


def stalled(reason: str, message: str) -> Derived:
    """Status for a resource the operator will not act on until it changes: nothing applied."""
    message = _clip(message)
    return Derived(
        conditions=(
            c.Condition(c.READY, "False", reason, message),
            c.Condition(c.RECONCILING, "False", reason, "waiting for a person to act"),
            c.Condition(c.STALLED, "True", reason, message),
        )
    )


def applying(message: str) -> Derived:
    """Status while a new generation is being applied."""
    return Derived(
        conditions=(
            c.Condition(c.RECONCILING, "True", c.REASON_APPLYING, _clip(message)),
            c.Condition(c.STALLED, "False", c.REASON_APPLYING, ""),
        )
    )


@dataclass(frozen=True)
class Transition:
    """A condition whose status flipped (or appeared): worth a Kubernetes Event."""

    type: str
    old: str | None
    new: str
    reason: str
    message: str


def merge(
    current: Mapping[str, Any] | None,
    derived: Derived,
    *,
    now: str,
    generation: int,
) -> tuple[dict[str, Any], list[Transition]]:
    """The status to write, and the condition flips it makes.

    Only the conditions in `derived` are touched; those another part sets
    (Placed, ScalingActive, ...) keep their value. Fields in `derived`
    replace the current ones.
    """
    current = current or {}
    old_conditions: list[Mapping[str, Any]] = [
        x for x in current.get("conditions") or [] if isinstance(x, Mapping)
    ]
    conds: list[dict[str, Any]] = [
        dict(x) for x in old_conditions if x.get("type") not in derived.drop
    ]
    flips: list[Transition] = []
    for new in derived.conditions:
        before = c.get_condition(old_conditions, new.type)
        old_status = None if before is None else str(before.get("status"))
        if old_status != new.status:
            flips.append(Transition(new.type, old_status, new.status, new.reason, new.message))
        conds = c.set_condition(conds, new, now=now, observed_generation=generation)
    status: dict[str, Any] = {
        k: v for k, v in current.items() if k not in ("conditions", "observedGeneration")
    }
    for key, value in derived.fields.items():
        before = status.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            # JSON merge patch semantics: a part's keys replace, None removes, others stay.
            value = {**before, **value}
        status[key] = _without_none(value)
    status["observedGeneration"] = generation
    status["conditions"] = conds
    return status, flips


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def status_patch(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) taking `current` to `new`: only what differs, None clears."""
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = current.get(key)
        if before == value:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping) and key != "conditions":
            inner = status_patch(before, value)
            inner.update({k: None for k in before if k not in value})
            patch[key] = inner
        else:
            patch[key] = value
    return patch


def summary(conditions: Sequence[Mapping[str, Any]]) -> str:
    """One word for the resource's state, for metrics and logs: Ready, Stalled, Reconciling or Unknown."""
    for type_ in (c.STALLED, c.READY, c.RECONCILING):
        found = c.get_condition(conditions, type_)
        if found is not None and found.get("status") == "True":
            return type_
    return "Unknown"
