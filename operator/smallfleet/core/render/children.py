"""The Kubernetes objects that realise a server plan.

Per region one Deployment named `<plan>-<region>`, so a server can run in
two regions at once while it moves: the new region's Deployment becomes
Ready before the old one is deleted (make-before-break), and each keeps its
own immutable selector. One Service selects every region's pods, so clients
keep one address through a move. One ConfigMap carries the config.pbtxt
files; its hash sits on the pod template, so a config change rolls the pods.

The output is exactly what the operator applies with server-side apply, so
it holds only fields the operator means to own: `replicas` is left out when
an HPA or KEDA owns the scale, or the two managers would fight over it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final

from smallfleet.core.credentials import FetchAuth, fetch_auth
from smallfleet.core.render.autoscalers import autoscaler_manifests
from smallfleet.core.render.routes import route_manifests
from smallfleet.core.render.serverplan import ServerPlan
from smallfleet.core.render.triton import (
    EXIT_TIMEOUT_SECONDS,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    config_key,
    model_repository,
    triton_args,
    triton_config,
)
from smallfleet.core.spec import Artifact

API_GROUP: Final = "serving.smallfleet.io"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
UNPLACED: Final = ""  # the `regions` key for a server not (yet) placed in any region

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_OWNER_KIND: Final = f"{API_GROUP}/owner-kind"
LABEL_OWNER_NAME: Final = f"{API_GROUP}/owner-name"
LABEL_REGION: Final = f"{API_GROUP}/region"
MANAGED_BY: Final = "smallfleet"

ANNOTATION_DIGEST: Final = f"{API_GROUP}/digest"
ANNOTATION_CONFIG_HASH: Final = f"{API_GROUP}/config-hash"
ANNOTATION_MODEL_OWNER: Final = f"{API_GROUP}/model-owner"
ANNOTATION_MODEL_LICENSE: Final = f"{API_GROUP}/model-license"
ANNOTATION_MODELS: Final = f"{API_GROUP}/models"

NODE_REGION_LABEL: Final = "topology.kubernetes.io/region"
NODE_ZONE_LABEL: Final = "topology.kubernetes.io/zone"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"

REPOSITORY_PATH: Final = "/models"
# Where `smallfleet fetch` finds pvc://CLAIM/... artifacts (its --pvc-root default).
PVC_ROOT: Final = "/mnt/pvc"
PVC_SCHEME: Final = "pvc://"
CONFIG_PATH: Final = "/etc/smallfleet/config"
RUN_AS: Final = 1000
# Long enough for Triton's own drain of in-flight requests to finish first.
TERMINATION_GRACE_SECONDS: Final = EXIT_TIMEOUT_SECONDS + 15
# Triton answers HTTP only after its initial model loads; large artifacts on
# a cold GPU take minutes, and killing the container then only starts over.
STARTUP_PERIOD_SECONDS: Final = 5
STARTUP_FAILURE_THRESHOLD: Final = 120
# Downloading, verifying and loading count against the rollout's deadline.
PROGRESS_DEADLINE_SECONDS: Final = 900
REVISION_HISTORY_LIMIT: Final = 3
# The python backend passes tensors through /dev/shm; a container's default is 64 MiB.
SHM_SIZE: Final = "512Mi"
FETCH_RESOURCES: Final[dict[str, dict[str, str]]] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
OPERATOR_SCALED: Final = frozenset({"operator", "none"})


def common_labels(plan: ServerPlan) -> dict[str, str]:
    """The labels every child of a plan carries (and the handler lists children by)."""
    return {
        LABEL_NAME: "triton",
        LABEL_INSTANCE: plan.name,
        LABEL_COMPONENT: "model-server",
        LABEL_PART_OF: "smallfleet",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_OWNER_KIND: plan.owner_kind,
        LABEL_OWNER_NAME: plan.owner_name,
    }


def selector_labels(plan: ServerPlan) -> dict[str, str]:
    """Pods of every region of a plan (the Service and the PodDisruptionBudget select these)."""
    return {
        LABEL_NAME: "triton",
        LABEL_INSTANCE: plan.name,
        LABEL_OWNER_KIND: plan.owner_kind,
    }


def deployment_name(plan: ServerPlan, region: str) -> str:
    return plan.name if region == UNPLACED else f"{plan.name}-{region}"


def config_map_name(plan: ServerPlan) -> str:
    return f"{plan.name}-config"


def _owner_references(owner: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if owner is None:
        return []
    meta = owner.get("metadata")
    source: Mapping[str, Any] = meta if isinstance(meta, Mapping) else owner
    return [
        {
            "apiVersion": str(owner.get("apiVersion", API_VERSION)),
            "kind": str(owner["kind"]),
            "name": str(source["name"]),
            "uid": str(source["uid"]),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(
    plan: ServerPlan,
    name: str,
    owner: Mapping[str, Any] | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": plan.namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    refs = _owner_references(owner)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def _card_annotations(plan: ServerPlan) -> dict[str, str]:
    out = {ANNOTATION_MODELS: ",".join(m.name for m in plan.models)}
    if plan.card is not None:
        out[ANNOTATION_MODEL_OWNER] = plan.card.owner
        out[ANNOTATION_MODEL_LICENSE] = plan.card.license
    return out


def _digest_annotation(plan: ServerPlan) -> str:
    """One model: its digest. Several: `model=digest` pairs, in load order."""
    pairs = [(m.name, m.artifact.digest) for m in plan.models if m.artifact is not None]
    if len(pairs) == 1:
        return pairs[0][1]
    return ",".join(f"{name}={digest}" for name, digest in pairs)


def config_hash(data: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(data.items())), separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _config_data(plan: ServerPlan) -> dict[str, str]:
    return {config_key(m.name): triton_config(m) for m in sorted(plan.models, key=lambda m: m.name)}


def _dns_label(text: str) -> str:
    """`text` if it is short enough for a container name, else a stable shortened form."""
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[:54].rstrip('-')}-{digest}"


def pod_security() -> dict[str, Any]:
    """The pod securityContext of every Triton server (restricted Pod Security Standard)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    """The securityContext of every container the operator renders."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
    }


def _config_script(plan: ServerPlan) -> str:
    """Shell commands that copy the ConfigMap's files into the writable repository."""
    lines = ["set -eu"]
    for path in model_repository(plan):
        target = f"{REPOSITORY_PATH}/{path}"
        if path.endswith("/"):
            lines.append(f"mkdir -p {shlex.quote(target)}")
            continue
        model = path.split("/", 1)[0]
        lines.append(f"mkdir -p {shlex.quote(f'{REPOSITORY_PATH}/{model}')}")
        lines.append(
            f"cp {shlex.quote(f'{CONFIG_PATH}/{config_key(model)}')} {shlex.quote(target)}"
        )
    return "\n".join(lines)


def _claim(uri: str) -> str | None:
    if not uri.startswith(PVC_SCHEME):
        return None
    return uri[len(PVC_SCHEME) :].split("/", 1)[0] or None


def _claim_mounts(uris: Sequence[str]) -> list[dict[str, Any]]:
    claims = sorted({c for c in map(_claim, uris) if c})
    return [
        {"name": _claim_volume(c), "mountPath": f"{PVC_ROOT}/{c}", "readOnly": True} for c in claims
    ]


def _claim_volume(claim: str) -> str:
    return _dns_label(f"claim-{claim}")


def _fetch_auth(model: str, artifact: Artifact) -> FetchAuth:
    return fetch_auth(artifact, _dns_label(f"creds-{model}")[:40].rstrip("-"))


def _credential_volumes(plan: ServerPlan) -> list[dict[str, Any]]:
    """Key files and projected tokens, each mounted only into its model's fetch container."""
    return [v for m in plan.models if m.artifact for v in _fetch_auth(m.name, m.artifact).volumes]


def _init_containers(plan: ServerPlan) -> list[dict[str, Any]]:
    mounts = [
        {"name": "models", "mountPath": REPOSITORY_PATH},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    out: list[dict[str, Any]] = []
    for m in plan.models:
        if m.artifact is None:
            continue
        auth = _fetch_auth(m.name, m.artifact)
        out.append(
            {
                "name": _dns_label(f"fetch-{m.name}"),
                "image": plan.operator_image,
                "command": [
                    "smallfleet",
                    "fetch",
                    "--uri",
                    m.artifact.uri,
                    "--digest",
                    m.artifact.digest,
                    "--format",
                    m.artifact.format,
                    "--dest",
                    f"{REPOSITORY_PATH}/{m.name}",
                    *auth.args,
                ],
                # Credentials only here, by reference: never in the Triton container.
                "env": [{"name": "HOME", "value": "/tmp"}, *auth.env],
                "resources": FETCH_RESOURCES,
                "securityContext": container_security(),
                # fetch writes why it refused an artifact there; a crash leaves its log instead.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [*mounts, *_claim_mounts([m.artifact.uri]), *auth.mounts],
            }
        )
    # After the fetches, so the rendered config wins over any config.pbtxt an artifact carries.
    out.append(
        {
            "name": "model-config",
            "image": plan.operator_image,
            "command": ["/bin/sh", "-c", _config_script(plan)],
            "resources": FETCH_RESOURCES,
            "securityContext": container_security(),
            "volumeMounts": [
                *mounts,
                {"name": "config", "mountPath": CONFIG_PATH, "readOnly": True},
            ],
        }
    )
    return out


def _resources(plan: ServerPlan) -> dict[str, Any]:
    r = plan.resources
    requests: dict[str, Any] = {"cpu": r.cpu, "memory": r.memory}
    # No CPU limit: throttling a latency-bound server hurts more than it protects.
    limits: dict[str, Any] = {"memory": r.memory}
    if r.gpus > 0:
        requests[GPU_RESOURCE] = r.gpus
        limits[GPU_RESOURCE] = r.gpus
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int, failures: int, timeout: int = 1) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _affinity(plan: ServerPlan, region: str) -> dict[str, Any]:
    """The operator's node requirements joined with the owner's affinity (spec.pod.affinity).

    Required node selector terms are ORed by the scheduler, and a term's
    expressions ANDed, so the operator's expressions go into every term the
    owner wrote: a node must satisfy the owner's requirement and still be in
    the chosen region with the right GPU. Preferred terms and pod
    (anti-)affinity are the owner's alone and pass through as written.
    """
    ours = _operator_expressions(plan, region)
    user = plan.pod.affinity
    node: dict[str, Any] = dict(user.node_affinity or {}) if user is not None else {}
    found = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    required: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    terms = required.get("nodeSelectorTerms")
    if isinstance(terms, list) and terms:
        joined = []
        for term in terms:
            term = dict(term) if isinstance(term, Mapping) else {}
            term["matchExpressions"] = [*(term.get("matchExpressions") or []), *ours]
            joined.append(term)
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {
            **required,
            "nodeSelectorTerms": joined,
        }
    else:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchExpressions": ours}]
        }
    out: dict[str, Any] = {"nodeAffinity": node}
    if user is not None and user.pod_affinity:
        out["podAffinity"] = dict(user.pod_affinity)
    if user is not None and user.pod_anti_affinity:
        out["podAntiAffinity"] = dict(user.pod_anti_affinity)
    return out


def node_expressions(
    region: str | None, gpus: int, gpu_product: str | None
) -> list[dict[str, Any]]:
    """The node requirements a Triton server is placed by: its region, and GPU product or no GPU."""
    exprs: list[dict[str, Any]] = []
    if region:
        exprs.append({"key": NODE_REGION_LABEL, "operator": "In", "values": [region]})
    if gpus > 0:
        if gpu_product:
            exprs.append({"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [gpu_product]})
    else:
        # CPU servers stay off GPU nodes, which are too scarce to hold them.
        exprs.append({"key": GPU_PRODUCT_LABEL, "operator": "DoesNotExist"})
    return exprs


def _operator_expressions(plan: ServerPlan, region: str) -> list[dict[str, Any]]:
    """The node requirements the operator places a plan's server by."""
    r = plan.resources
    return node_expressions(None if region == UNPLACED else region, r.gpus, r.gpu_product)


def _tolerations(plan: ServerPlan) -> list[dict[str, Any]]:
    """The GPU taint's toleration for GPU servers, then the owner's (an exact repeat dropped)."""
    out: list[dict[str, Any]] = []
    if plan.resources.gpus > 0:
        out.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    for t in plan.pod.tolerations:
        item: dict[str, Any] = {
            k: v
            for k, v in (
                ("key", t.key),
                ("operator", t.operator),
                ("value", t.value),
                ("effect", t.effect),
                ("tolerationSeconds", t.toleration_seconds),
            )
            if v is not None
        }
        if item not in out:
            out.append(item)
    return out


def _apply_pod_settings(pod_spec: dict[str, Any], plan: ServerPlan) -> None:
    """The owner's scheduling and identity settings (spec.pod) that the operator sets none of."""
    pod = plan.pod
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name


def _deployment(
    plan: ServerPlan,
    region: str,
    replicas: int,
    owner: Mapping[str, Any] | None,
    config_digest: str,
) -> dict[str, Any]:
    name = deployment_name(plan, region)
    labels = {**common_labels(plan), LABEL_REGION: region}
    selector = {**selector_labels(plan), LABEL_REGION: region}
    # The owner's labels and annotations first: the operator's keys always win (the CRD
    # refuses owner keys under its prefixes; prometheus.io/* stay what Triton serves).
    pod_labels = {**dict(plan.pod.labels), **labels}
    pod_annotations = {
        **dict(plan.pod.annotations),
        ANNOTATION_CONFIG_HASH: config_digest,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    digest = _digest_annotation(plan)
    if digest:
        pod_annotations[ANNOTATION_DIGEST] = digest
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security(),
        "affinity": _affinity(plan, region),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": NODE_ZONE_LABEL,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
        ],
        "initContainers": _init_containers(plan),
        "containers": [
            {
                "name": "triton",
                "image": plan.image,
                "command": ["tritonserver"],
                "args": triton_args(plan, REPOSITORY_PATH),
                "env": [
                    {"name": "HOME", "value": "/tmp"},
                    *({"name": n, "value": v} for n, v in plan.pod.env),
                ],
                "ports": [
                    {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                    {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                ],
                "startupProbe": _probe(
                    "/v2/health/live", STARTUP_PERIOD_SECONDS, STARTUP_FAILURE_THRESHOLD
                ),
                "livenessProbe": _probe("/v2/health/live", 10, 3, timeout=5),
                "readinessProbe": _probe("/v2/health/ready", 5, 3, timeout=3),
                "resources": _resources(plan),
                "securityContext": container_security(),
                "volumeMounts": [
                    {"name": "models", "mountPath": REPOSITORY_PATH},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
            {"name": "config", "configMap": {"name": config_map_name(plan)}},
            *(
                {
                    "name": _claim_volume(c),
                    "persistentVolumeClaim": {"claimName": c, "readOnly": True},
                }
                for c in sorted(
                    {c for m in plan.models if m.artifact for c in [_claim(m.artifact.uri)] if c}
                )
            ),
            *_credential_volumes(plan),
        ],
    }
    tolerations = _tolerations(plan)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    _apply_pod_settings(pod_spec, plan)
    spec: dict[str, Any] = {}
    if plan.scaling.mode in OPERATOR_SCALED:
        spec["replicas"] = replicas
    spec.update(
        {
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            # Never below the wanted count during a rollout: a new pod must be Ready first.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(plan, name, owner, labels, _card_annotations(plan)),
        "spec": spec,
    }


def _service(plan: ServerPlan, owner: Mapping[str, Any] | None) -> dict[str, Any]:
    ports = [
        ("http", HTTP_PORT, "http"),
        ("grpc", GRPC_PORT, "kubernetes.io/h2c"),
        ("metrics", METRICS_PORT, "http"),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(plan, plan.name, owner, common_labels(plan)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(plan),
            "ports": [
                {
                    "name": name,
                    "port": port,
                    "targetPort": name,
                    "protocol": "TCP",
                    "appProtocol": app,
                }
                for name, port, app in ports
            ],
        },
    }


def _config_map(
    plan: ServerPlan, owner: Mapping[str, Any] | None, data: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(plan, config_map_name(plan), owner, common_labels(plan)),
        "data": dict(data),
    }


def _pdb(plan: ServerPlan, owner: Mapping[str, Any] | None, total: int) -> dict[str, Any]:
    # With one replica no budget can keep the model serving through a drain, and
    # minAvailable 1 would block the drain forever: say honestly that it may go.
    budget: dict[str, Any] = {"minAvailable": 1} if total > 1 else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(plan, plan.name, owner, common_labels(plan)),
        "spec": {
            **budget,
            "selector": {"matchLabels": selector_labels(plan)},
            # A pod that never got Ready (a model that fails to load) must not block drains.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _autoscalers(
    plan: ServerPlan, deployments: Sequence[str], owner: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """HPA or KEDA objects when the spec hands scaling to them (none otherwise)."""
    return autoscaler_manifests(
        plan,
        plan.scaling,
        deployments,
        common_labels(plan),
        owner,
        prometheus_url=plan.prometheus_url,
    )


def render_children(
    plan: ServerPlan, *, owner: Mapping[str, Any] | None, regions: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Every child object of a plan, in apply order: config, Service, Deployments, PDB, scalers,
    then the Gateway API routes that spec.expose asks for.

    `regions` maps each region the server runs in (UNPLACED for none) to its
    replica count. `owner` is the owning custom object (or a mapping with
    apiVersion, kind, name and uid); None renders no ownerReferences.
    """
    data = _config_data(plan)
    ordered = sorted(regions.items())
    digest = config_hash(data)
    deployments = [_deployment(plan, region, n, owner, digest) for region, n in ordered]
    children = [
        _config_map(plan, owner, data),
        _service(plan, owner),
        *deployments,
        _pdb(plan, owner, sum(n for _, n in ordered)),
        *_autoscalers(plan, [d["metadata"]["name"] for d in deployments], owner),
        *route_manifests(plan, _metadata(plan, plan.name, owner, common_labels(plan))),
    ]
    # Callers mutate and serialise these; no two places may share a nested dict or
    # list (deepcopy would keep such sharing, a JSON round trip does not).
    fresh: list[dict[str, Any]] = json.loads(json.dumps(children))
    return fresh
