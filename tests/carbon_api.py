"""Local HTTP servers that speak the carbon APIs' documented wire formats, for tests.

Carbon APIs cannot be reached from tests, and a mock inside the client would
leave the real code (urllib, retries, caching, token handling) untested. A
`Server` listens on 127.0.0.1 on a free port and answers from a script of
replies per path; unit tests of the providers and the end-to-end placement
tests both drive it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class Server:
    """Scripted replies per path; the last reply of a script repeats."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply | Callable[[Seen], Reply]]] = {}
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                seen = Seen(
                    parsed.path,
                    urllib.parse.parse_qs(parsed.query),
                    {k.lower(): v for k, v in self.headers.items()},
                )
                outer.seen.append(seen)
                script = outer.scripts.get(parsed.path)
                if not script:
                    reply = Reply(404, {"error": "not found"})
                else:
                    item = script.pop(0) if len(script) > 1 else script[0]
                    reply = item(seen) if callable(item) else item
                if reply.delay:
                    time.sleep(reply.delay)
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def on(self, path: str, *replies: Reply | Callable[[Seen], Reply]) -> None:
        self.scripts[path] = list(replies)

    def hits(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def em_latest(zone: str, value: float | None, factor: str = "lifecycle") -> dict[str, Any]:
    return {
        "zone": zone,
        "carbonIntensity": value,
        "datetime": "2026-11-26T06:00:00.000Z",
        "updatedAt": "2026-11-26T05:52:11.214Z",
        "createdAt": "2026-11-23T06:01:03.581Z",
        "emissionFactorType": factor,
        "isEstimated": True,
        "estimationMethod": "TIME_SLICER_AVERAGE",
        "temporalGranularity": "hourly",
    }
