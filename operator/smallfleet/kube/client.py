"""A small JSON client over the `kubernetes` package's authenticated HTTP transport.

The generated typed API returns model objects; the operator's core wants the
same dicts it renders and the API server stores, so requests go through
`ApiClient.param_serialize`/`call_api` (which keep kubeconfig, in-cluster
tokens, client certificates and proxies working) and responses are parsed as
JSON. A fixed table of the kinds the operator touches replaces discovery:
one fewer round trip per call and nothing to cache.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import kubernetes
import urllib3

from smallfleet import telemetry
from smallfleet.kube.permissions import ALL as PERMITTED

FIELD_MANAGER: Final = "smallfleet"
# A ModelPipeline's children have their own manager: a SmallModel and a pipeline of the
# same name would otherwise apply each other's objects as one manager, without a conflict.
PIPELINE_FIELD_MANAGER: Final = "smallfleet-pipeline"
REPORTING_COMPONENT: Final = "smallfleet.io/operator"
DEFAULT_TIMEOUT: Final = 30.0
# Kept-alive connections to the API server: at least the threads that may call it at once
# (32 reconcile threads, kopf's 4 handler threads, 8 status threads, the periodic one). The
# client's default is 5 per core; past it urllib3 opens a connection per request and drops
# it afterwards, so a burst of new models paid a TLS handshake per request on 2 cores.
CONNECTIONS: Final = 48
ABSENT_KIND_TTL: Final = 60.0
# The largest resourceVersion the API server parses (uint64); etcd's revisions are int64, so
# no stored object ever has it: as an apply's precondition it means "only if absent".
NO_OBJECT_VERSION: Final = "18446744073709551615"
PERMANENT_STATUSES: Final = frozenset({400, 403, 405, 406, 413, 415, 422})
# A UTF-16 surrogate pair as json.dumps escapes a character beyond U+FFFF (after an even
# number of backslashes, so an escaped backslash followed by "u" is left alone).
_SURROGATE_PAIR: Final = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})"
)


def yaml_body(body: Any) -> str:
    """`body` as JSON that is also valid YAML, for an apply-patch+yaml request.

    JSON escapes a character beyond U+FFFF (an emoji) as a surrogate pair,
    which YAML forbids ("found invalid Unicode character escape code"), so
    each pair becomes YAML's own \\UXXXXXXXX escape. Everything else stays
    ASCII-escaped JSON, which YAML reads as it is.
    """

    def joined(m: re.Match[str]) -> str:
        high, low = int(m.group(2), 16), int(m.group(3), 16)
        return f"{m.group(1)}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _SURROGATE_PAIR.sub(joined, json.dumps(body))


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def base(self) -> str:
        return (
            f"/api/{self.api_version}"
            if "/" not in self.api_version
            else f"/apis/{self.api_version}"
        )

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        out = self.base()
        if self.namespaced and namespace:
            out += f"/namespaces/{quote(namespace, safe='')}"
        out += f"/{self.plural}"
        if name:
            out += f"/{quote(name, safe='')}"
        if sub:
            out += f"/{sub}"
        return out


KINDS: Final[tuple[KindInfo, ...]] = (
    KindInfo("apps/v1", "Deployment", "deployments"),
    KindInfo("apps/v1", "ReplicaSet", "replicasets"),
    KindInfo("apps/v1", "StatefulSet", "statefulsets"),
    KindInfo("v1", "Service", "services"),
    KindInfo("v1", "ConfigMap", "configmaps"),
    KindInfo("v1", "Pod", "pods"),
    KindInfo("v1", "Event", "events"),
    KindInfo("v1", "Namespace", "namespaces", namespaced=False),
    KindInfo("v1", "Node", "nodes", namespaced=False),
    KindInfo("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    KindInfo("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    KindInfo("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    KindInfo("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    KindInfo("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
    KindInfo("serving.smallfleet.io/v1alpha1", "SmallModel", "smallmodels"),
    KindInfo("serving.smallfleet.io/v1alpha1", "ModelPipeline", "modelpipelines"),
    KindInfo("serving.smallfleet.io/v1alpha1", "ServingPool", "servingpools"),
    # Read only: which replica leads (kopf writes them).
    KindInfo("kopf.dev/v1", "KopfPeering", "kopfpeerings"),
    KindInfo("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False),
)
_BY_KIND: Final = {(k.api_version, k.kind): k for k in KINDS}


def kind_info(api_version: str, kind: str) -> KindInfo:
    found = _BY_KIND.get((api_version, kind))
    if found is None:
        raise ValueError(f"smallfleet does not manage {kind} in {api_version}")
    return found


def require(info: KindInfo, verbs: Iterable[str], sub: str = "") -> None:
    """Refuse, before any request, a use that `permissions.USED` (and so the chart) lacks.

    The API server would answer 403 anyway; this names the missing line, and it
    makes the table the gate every request of the client passes.
    """
    group = info.api_version.rpartition("/")[0]
    resource = f"{info.plural}/{sub}" if sub else info.plural
    missing = sorted(v for v in verbs if (group, resource, v) not in PERMITTED)
    if missing:
        raise Rejected(
            403,
            f"smallfleet.kube.permissions.USED lacks {', '.join(missing)} on {resource} "
            f"in group {group or 'core'!r}: add it there and to the chart's RBAC",
            verb=" ".join(missing),
            what=resource,
        )


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 for a network failure)."""

    def __init__(self, status: int, message: str, *, verb: str = "", what: str = "") -> None:
        self.status = status
        self.message = message
        self.verb = verb
        self.what = what
        super().__init__(f"{verb} {what}: {status} {message}".strip())


class Rejected(KubeError):
    """The API server refused the object itself (invalid, forbidden): retrying cannot help."""


class Transient(KubeError):
    """Conflict, throttling, server error or no connection: retry with backoff."""


class NotFound(KubeError):
    """The object (or its kind) does not exist."""


def _error(status: int, body: bytes, verb: str, what: str) -> KubeError:
    message = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(message)
        if isinstance(parsed, dict) and parsed.get("message"):
            message = str(parsed["message"])
    except ValueError:
        pass
    if status == 404:
        return NotFound(status, message, verb=verb, what=what)
    if status in PERMANENT_STATUSES:
        return Rejected(status, message, verb=verb, what=what)
    return Transient(status, message, verb=verb, what=what)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """JSON-in, JSON-out access to the API server under one field manager."""

    def __init__(self, api: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api = api
        self.timeout = timeout
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._absent: dict[tuple[str, str], float] = {}

    @classmethod
    def from_config(cls, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials when running in a pod, else KUBECONFIG (or ~/.kube/config)."""
        config = kubernetes.client.Configuration()
        config.connection_pool_maxsize = CONNECTIONS
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=config
            )
        return cls(kubernetes.client.ApiClient(configuration=config))

    def close(self) -> None:
        self.api.close()

    # -- transport ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        verb: str = "",
    ) -> dict[str, Any]:
        what = path
        with telemetry.span(f"kube {verb or method}", **{"http.method": method, "url.path": path}):
            headers = {"Accept": "application/json", "Content-Type": content_type}
            payload: Any = body
            if body is not None and not content_type.endswith("json"):
                payload = yaml_body(body)
            try:
                m, url, hdrs, data, post = self.api.param_serialize(
                    method,
                    path,
                    query_params=list(query) or None,
                    header_params=headers,
                    body=payload,
                    auth_settings=["BearerToken"],
                )
                resp = self.api.call_api(m, url, hdrs, data, post, _request_timeout=self.timeout)
                raw: bytes = resp.read()
                status = int(resp.status)
                release = getattr(resp.response, "release_conn", None)
                if callable(release):
                    release()
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                telemetry.API_CALLS.labels(verb=verb or method, outcome="network").inc()
                raise Transient(0, f"{type(exc).__name__}: {exc}", verb=verb, what=what) from exc
            except kubernetes.client.exceptions.ApiException as exc:
                status = int(exc.status or 0)
                telemetry.API_CALLS.labels(verb=verb or method, outcome=str(status)).inc()
                raise _error(status, (exc.body or exc.reason or "").encode(), verb, what) from exc
            telemetry.API_CALLS.labels(
                verb=verb or method, outcome="ok" if status < 400 else str(status)
            ).inc()
            if status >= 400:
                raise _error(status, raw, verb or method, what)
            if not raw:
                return {}
            parsed = json.loads(raw)
            return parsed if isinstance(parsed, dict) else {"items": parsed}

    # -- objects -----------------------------------------------------------

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        force: bool = True,
        manager: str = FIELD_MANAGER,
        create_only: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply of a whole object as field manager `manager`.

        `create_only`: create the object, or fail with 409 if the name is
        taken, in one request. The apply carries a resourceVersion no object
        can have (`NO_OBJECT_VERSION`) as its precondition: the API server
        ignores it when it creates and refuses the apply when an object is
        there, so a namesake is never merged into and no read is needed first.
        """
        info = kind_info(str(obj["apiVersion"]), str(obj["kind"]))
        require(info, ("patch", "create"))  # an apply that creates is checked as create
        meta = obj["metadata"]
        if create_only:
            obj = {**obj, "metadata": {**meta, "resourceVersion": NO_OBJECT_VERSION}}
        return self.request(
            "PATCH",
            info.path(meta.get("namespace"), meta["name"]),
            query=[("fieldManager", manager), ("force", "true" if force else "false")],
            body=obj,
            content_type="application/apply-patch+yaml",
            verb=f"apply {info.kind}",
        )

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        info = kind_info(api_version, kind)
        require(info, ("get",))
        try:
            return self.request("GET", info.path(namespace, name), verb=f"get {kind}")
        except NotFound:
            return None

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | str | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        """Items of a kind (an uninstalled kind, such as KEDA's, lists as empty)."""
        info = kind_info(api_version, kind)
        require(info, ("list",))
        absent_since = self._absent.get((api_version, kind))
        if absent_since is not None and time.monotonic() - absent_since < ABSENT_KIND_TTL:
            return []
        query: list[tuple[str, str]] = []
        if labels:
            selector = (
                labels
                if isinstance(labels, str)
                else ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            )
            query.append(("labelSelector", selector))
        if fields:
            query.append(("fieldSelector", fields))
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = list(query) + [("limit", "500")] + ([("continue", token)] if token else [])
            try:
                body = self.request("GET", info.path(namespace), query=page, verb=f"list {kind}")
            except NotFound:
                # The kind is not served (KEDA not installed): ask again only after a while.
                self._absent[(api_version, kind)] = time.monotonic()
                return []
            for item in body.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = str((body.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        info = kind_info(api_version, kind)
        require(info, ("delete",))
        try:
            self.request(
                "DELETE",
                info.path(namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
                verb=f"delete {kind}",
            )
        except NotFound:
            return False
        return True

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
        """JSON merge patch of the /status subresource.

        With `resource_version`, the API server applies it only to that
        version of the object and answers 409 otherwise (optimistic concurrency).
        """
        info = kind_info(api_version, kind)
        require(info, ("patch",), "status")
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request(
            "PATCH",
            info.path(namespace, name, "status"),
            body=body,
            content_type="application/merge-patch+json",
            verb=f"patch {kind}/status",
        )

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
    ) -> dict[str, Any]:
        """JSON merge patch of the object (metadata only: the operator never writes spec)."""
        info = kind_info(api_version, kind)
        require(info, ("patch",))
        return self.request(
            "PATCH",
            info.path(namespace, name),
            body=dict(patch),
            content_type="application/merge-patch+json",
            verb=f"patch {kind}",
        )

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set a Deployment's replicas through /scale (the autoscaler's write)."""
        info = kind_info("apps/v1", "Deployment")
        require(info, ("patch",), "scale")
        return self.request(
            "PATCH",
            info.path(namespace, name, "scale"),
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
            verb="patch scale",
        )

    def nodes(self) -> list[dict[str, Any]]:
        return self.list_objects("v1", "Node")

    def pods(
        self, namespace: str | None, labels: Mapping[str, str] | str | None = None
    ) -> list[dict[str, Any]]:
        return self.list_objects("v1", "Pod", namespace, labels=labels)

    def event(
        self,
        regarding: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
        action: str = "Reconcile",
    ) -> None:
        """Record a core/v1 Event about `regarding` (the same API kopf and kubectl use)."""
        meta = regarding.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name', 'smallfleet')}.",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "action": action,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        info = kind_info("v1", "Event")
        require(info, ("create",))
        self.request("POST", info.path(namespace), body=body, verb="create Event")
