"""`smallfleet run`: the operator process.

Flags say where to watch and where to listen; everything about *how* to
serve models comes from the environment (the Helm values) through
`settings.from_env`, so one chart value changes one behaviour everywhere.
kopf keeps its progress and the last handled spec in the operator's memory
(`handlers.storage`), not on the objects: `status` stays the API that users
and GitOps tools read, and a new model costs no bookkeeping write.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Final

PREFIX: Final = "smallfleet.io"
# `text` is kopf's one-line format for people; `json` is one object per line for log
# pipelines (Loki, Elasticsearch, Cloud Logging), with the Kubernetes object a record
# is about under kopf's reference key instead of a prefix in the message.
LOG_FORMATS: Final = ("text", "json")
LOG_FORMAT_ENV: Final = "SMALLFLEET_LOG_FORMAT"
# kopf's handler threads: only the handlers that wait for the API server and are not
# reconciles (a deletion's forgetting, ServingPools) take one. Reconciles run in the
# reconcile queue's threads (handlers.lifecycle.RECONCILE_THREADS).
HANDLER_THREADS: Final = 4
KOPF_IDLE_SECONDS: Final = 0.5
# Objects per page when kopf lists a kind (at start-up, and again when a watch answers 410
# Gone): a whole list of a fleet's pods arrives as one body, parsed all at once, and a
# page stays whole until its last object is handed on (see handlers.gate's pacer).
LIST_CHUNK: Final = 100
# How often every ServingPool's servers are asked what they hold (one index request each).
POOL_SYNC_SECONDS: Final = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: SMALLFLEET_NAMESPACE, else all",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="port of /metrics (default 8080)"
    )
    parser.add_argument(
        "--health-port", type=int, default=None, help="port of /healthz (default 8081)"
    )
    parser.add_argument(
        "--bind-address",
        metavar="IP",
        default=None,
        help="the address /metrics and /healthz listen on "
        "(default: SMALLFLEET_BIND_ADDRESS, else 127.0.0.1)",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="leader election among replicas through this kopf peering object (default: standalone)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help=f"log lines as text or JSON (default: {LOG_FORMAT_ENV}, else text)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def log_format(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str:
    """The flag, else the environment, else text; an unknown name in the environment is an error.

    The chart passes the flag; the variable serves a local `smallfleet run` and
    containers started by other means. A typo must not silently fall back to
    text, or a JSON log pipeline would drop every line.
    """
    if args.log_format is not None:
        chosen: str = args.log_format
        return chosen
    value = (os.environ if env is None else env).get(LOG_FORMAT_ENV) or "text"
    if value not in LOG_FORMATS:
        raise SystemExit(f"{LOG_FORMAT_ENV}={value!r}: expected one of {', '.join(LOG_FORMATS)}")
    return value


def configure_logging(fmt: str, verbose: bool) -> None:
    """Install kopf's log handler in the chosen format on the root logger."""
    import kopf

    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if fmt == "json" else kopf.LogFormat.FULL,
    )


def run(args: argparse.Namespace) -> int:
    import kopf

    from smallfleet import telemetry
    from smallfleet.control.facts import IndexFacts
    from smallfleet.control.placement import install as install_placement
    from smallfleet.control.pools import PoolController
    from smallfleet.control.readiness import install as install_readiness
    from smallfleet.control.reconcile import Reconciler
    from smallfleet.control.scaling import Autoscaler, intensity_from
    from smallfleet.core import leadership
    from smallfleet.handlers import gate, storage, streams, toggles
    from smallfleet.handlers.operator import (
        CHILD_RESOURCES,
        MANAGED_SELECTOR,
        QUEUED_OWNERS,
        Runtime,
        peering_leader,
        registry,
    )
    from smallfleet.kube import Kube
    from smallfleet.settings import from_env

    settings = from_env()
    if args.metrics_port is not None:
        settings = dataclasses.replace(settings, metrics_port=args.metrics_port)
    if args.health_port is not None:
        settings = dataclasses.replace(settings, health_port=args.health_port)
    if args.bind_address is not None:
        settings = dataclasses.replace(settings, bind_address=args.bind_address)
    namespaces: list[str] = list(args.namespace)
    if not namespaces and not args.all_namespaces and settings.namespace:
        namespaces = [settings.namespace]

    configure_logging(log_format(args), args.verbose)
    logging.getLogger("smallfleet").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # Per-event "handler succeeded" lines and probe hits drown what matters at fleet scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    telemetry.setup_tracing()
    telemetry.serve_metrics(settings.metrics_port, settings.bind_address)

    toggles.install()
    streams.install()
    ks = kopf.OperatorSettings()
    # kopf's bookkeeping in memory: no annotation write per created or updated object.
    ks.persistence.progress_storage = storage.PROGRESS
    ks.persistence.diffbase_storage = storage.DIFFBASE
    ks.persistence.finalizer = f"{PREFIX}/finalizer"
    # The operator records its own Events on condition flips; kopf adds only its warnings.
    ks.posting.level = logging.WARNING
    ks.posting.reporting_component = "smallfleet"
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.watching.connect_timeout = 10
    ks.watching.chunk_size = LIST_CHUNK
    ks.networking.request_timeout = 60
    ks.batching.error_delays = (1, 2, 4, 8, 15, 30, 60)
    # kopf's per-object worker keeps its last event's body while it idles: 5 s by default, so
    # a rollout's pod and Deployment events held thousands of bodies at once.
    ks.queueing.idle_timeout = KOPF_IDLE_SECONDS
    ks.execution.max_workers = HANDLER_THREADS
    if namespaces:
        # The namespaces are named: nothing to discover. Scanning would list namespaces, which a
        # namespaced install (a Role) may not, and kopf retries that for about a minute first.
        ks.scanning.disabled = True

    # Only the operator's own children reach it: unrelated ones cost no memory or CPU.
    for watched in CHILD_RESOURCES:
        ks.watching.label_selectors[watched] = MANAGED_SELECTOR

    kube = Kube.from_config()
    facts = IndexFacts()
    runtime = Runtime(reconciler=Reconciler(kube, settings, facts), facts=facts)
    runtime.reconciler.routes = facts.routes
    # Listed SmallModels and ModelPipelines only queue keys: the queue waits for the indices.
    if not gate.install(queued=QUEUED_OWNERS, opened=runtime.indices_complete):
        runtime.indices_complete()  # every owner waits at kopf's own gate instead
    identity: str | None = None
    priority: int | None = None
    if args.peering is not None:
        # Distinct priorities: kopf pauses every replica that sees a peer of equal priority.
        who = os.environ.get("POD_NAME") or f"{getpass.getuser()}@{socket.gethostname()}"
        identity = f"{who}/{os.getpid()}/{secrets.token_hex(3)}"
        priority = leadership.random_priority()
        ks.peering.priority = priority
        runtime.leading = peering_leader(
            kube, args.peering, namespaces[0] if namespaces else None, identity, priority
        )
    placer = install_placement(runtime, settings)
    autoscaler = Autoscaler(runtime.reconciler, intensity=intensity_from(placer.signals))
    runtime.reconciler.decided_replicas = autoscaler.replicas
    runtime.reconciler.scaling_status = autoscaler.status
    runtime.every(1.0, runtime.reconciler.flush_settled, "settle")
    runtime.every(settings.scrape_interval_seconds, autoscaler.run, "autoscale")
    # Dedicated servers that run unready: ask their Triton why (a failed load, in seconds).
    install_readiness(runtime.reconciler, runtime.every)
    pools = PoolController(
        kube,
        facts,
        settings,
        refresh_model=lambda key: runtime.reconciler.refresh(*key),
        readings=lambda: placer.signals.latest().readings,
    )
    runtime.pools = pools
    runtime.reconciler.pool_status = pools.model_status
    runtime.every(POOL_SYNC_SECONDS, pools.sync_all, "pools")
    try:
        kopf.run(
            registry=registry,
            settings=ks,
            memo=kopf.Memo(runtime=runtime),
            standalone=args.peering is None,
            peering_name=args.peering,
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            priority=priority,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=telemetry.health_url(settings.bind_address, settings.health_port),
        )
    finally:
        telemetry.shutdown_tracing()
    return 0
