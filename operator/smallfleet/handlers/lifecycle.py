"""Start-up and shut-down: credentials, the indices handed to the control layer, the periodic thread."""

from __future__ import annotations

import threading
from typing import Any, Final

import kopf

from smallfleet.control.facts import INDEX_NAMES
from smallfleet.handlers.base import registry, runtime_of

RESYNC_SECONDS: Final = 60.0


@kopf.on.startup(registry=registry)
def start_periodic(memo: Any, **kwargs: Any) -> None:
    """Hand kopf's indices to the control layer and start the periodic thread."""
    runtime = runtime_of(memo)
    runtime.facts.attach({name: kwargs[name] for name in INDEX_NAMES if name in kwargs})
    runtime.every(RESYNC_SECONDS, runtime.resync, "resync")
    threading.Thread(target=runtime.run_periodic, name="smallfleet-periodic", daemon=True).start()


@kopf.on.cleanup(registry=registry)
def stop_periodic(memo: Any, **_: Any) -> None:
    runtime_of(memo).stop.set()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The credentials the Kubernetes client finds: in-cluster token, else KUBECONFIG."""
    # kopf registers its default login handlers only in its default registry.
    return kopf.login_via_client(**kwargs)
