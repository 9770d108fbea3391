"""Start-up and shut-down: credentials, the indices handed to the control layer, the periodic thread."""

from __future__ import annotations

import threading
from typing import Any, Final

import kopf

from smallfleet.control.facts import INDEX_NAMES
from smallfleet.handlers.base import registry, runtime_of

RESYNC_SECONDS: Final = 60.0
# Threads that take keys off the reconcile queue: the reconciles in flight at once. A
# reconcile mostly waits for the API server (one apply per child, one status write), so
# more of them in flight, not more CPU, is what a burst of new models needs. Measured with
# 1,000 new models on 2 cores (bench/fleet.py): 16 threads 109-111 s, 32 99-104 s, 64 97 s
# with 6 MiB more and the API server's p99 for a write at 6 s: past 32 it queues there.
RECONCILE_THREADS: Final = 32


@kopf.on.startup(registry=registry)
def start_periodic(memo: Any, **kwargs: Any) -> None:
    """Hand kopf's indices to the control layer; make the queues, start the periodic thread.

    The queues take keys, and the periodic thread runs its passes, once the indices are
    complete (`Runtime.indices_complete`).
    """
    runtime = runtime_of(memo)
    runtime.facts.attach({name: kwargs[name] for name in INDEX_NAMES if name in kwargs})
    runtime.start_queue(RECONCILE_THREADS)
    runtime.every(RESYNC_SECONDS, runtime.resync, "resync")
    threading.Thread(target=runtime.run_periodic, name="smallfleet-periodic", daemon=True).start()


@kopf.on.cleanup(registry=registry)
def stop_periodic(memo: Any, **_: Any) -> None:
    runtime = runtime_of(memo)
    runtime.stop.set()
    runtime.stop_queues()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The credentials the Kubernetes client finds: in-cluster token, else KUBECONFIG."""
    # kopf registers its default login handlers only in its default registry.
    return kopf.login_via_client(**kwargs)
