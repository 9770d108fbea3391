"""`smallfleet agent`: the pool server's side of fetching artifacts (a sidecar of Triton).

A pool server loads models while it runs, so no init container can fetch
them. This agent shares the model repository volume with Triton and, when
the operator asks (`PUT /v1/models/<name>` with the artifact's URI, digest
and format), fetches the artifact with exactly the code and checks of
`smallfleet fetch`: streamed sha256 against the declared digest, archive
members confined to the model directory, nothing in place until verified.
The operator then loads the model through Triton's repository API. A
repeated request with the same digest is a no-op; `DELETE` removes the
model's files after the operator has unloaded it.

Downloads are anonymous: the CRD refuses `spec.model.credentials` on a
pooled model. This agent serves the models of every owner in the pool, so a
Secret mounted here would be readable on behalf of all of them (and by the
pool's Triton, which shares the pod); a private artifact is served on its
own server, where only its fetch init container holds the credentials.

Answers: 200 `{"message": ...}` when the files are in place, 422
`{"error": ...}` with the fetch step's one-line reason (a digest mismatch,
an unreachable source), 400 on a malformed request. Requests for one model
are serialised; different models fetch in parallel.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import re
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from smallfleet.fetch import DEFAULT_TIMEOUT_SECONDS, FetchError, fetch

log = logging.getLogger("smallfleet.agent")

DEFAULT_PORT: Final = 8010
MAX_BODY: Final = 64 * 1024
_NAME: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class Repository:
    """The model repository the agent fills, one lock per model."""

    def __init__(self, root: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.root = root
        self.timeout = timeout
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def put(self, name: str, request: Mapping[str, Any]) -> str:
        uri, digest = request.get("uri"), request.get("digest")
        if not isinstance(uri, str) or not isinstance(digest, str):
            raise ValueError("uri and digest (strings) are required")
        model_format = request.get("format")
        with self._lock(name):
            return fetch(
                uri,
                digest,
                self.root / name,
                model_format if isinstance(model_format, str) else None,
                timeout=self.timeout,
            )

    def remove(self, name: str) -> None:
        with self._lock(name):
            shutil.rmtree(self.root / name, ignore_errors=True)


def _handler(repo: Repository) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "smallfleet-agent"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _model(self) -> str | None:
            prefix = "/v1/models/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            return name if _NAME.match(name) and len(name) <= 63 else None

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": f"no such path {self.path}"})

        def do_PUT(self) -> None:
            name = self._model()
            length = int(self.headers.get("Content-Length") or 0)
            if name is None or length > MAX_BODY:
                self._send(400, {"error": "PUT /v1/models/<model name> with a small JSON body"})
                return
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("the body must be a JSON object")
                message = repo.put(name, request)
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            except FetchError as exc:
                log.warning("fetch of %s failed: %s", name, exc)
                self._send(422, {"error": str(exc)})
                return
            log.info("%s", message)
            self._send(200, {"message": message})

        def do_DELETE(self) -> None:
            name = self._model()
            if name is None:
                self._send(400, {"error": "DELETE /v1/models/<model name>"})
                return
            repo.remove(name)
            self._send(200, {"message": f"removed {name}"})

    return Handler


def serve(root: Path, address: str, port: int) -> http.server.ThreadingHTTPServer:
    """A started server (its thread is a daemon); `shutdown()` stops it."""
    root.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer((address, port), _handler(Repository(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="agent", daemon=True).start()
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", default="/models", help="the model repository volume")
    parser.add_argument("--address", required=True, help="the address to listen on (the pod's IP)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve(Path(args.repository), args.address, args.port)
    log.info("agent serving %s on %s:%d", args.repository, args.address, args.port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
