"""The operator's side of a pool server: Triton's repository API and the fetch agent.

Two small clients, both blocking (the pool controller calls them from its
worker threads): `Triton` speaks Triton's HTTP model repository extension
(index, load with the config in the request, unload) and `Agent` asks the
server's `smallfleet agent` to fetch and verify an artifact into the shared
model repository. Both are a few JSON requests, so they use the standard
library: `tritonclient` would bring numpy and its own HTTP stack into the
operator, about 17 MiB of memory for three calls. Each failure comes back as
`ServerError` carrying the server's own words, which end up in the model's
status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from smallfleet.core.pools.plan import IndexEntry

INDEX_TIMEOUT_SECONDS: Final = 5.0
LOAD_TIMEOUT_SECONDS: Final = 300.0
FETCH_TIMEOUT_SECONDS: Final = 600.0
# Triton answers a repository request in a few hundred bytes; an agent in a few kilobytes.
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024


class ServerError(RuntimeError):
    """The server answered with an error (its message is the server's own) or not at all."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


def _request(
    url: str, method: str, body: Mapping[str, Any] | None, timeout: float, where: str
) -> Any:
    """One JSON request; an error answer's `error` field, or its status, becomes ServerError.

    Triton and the agent both answer a refusal with `{"error": "..."}`, the
    words a person needs (a failed load's reason, a digest mismatch).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            answer = json.loads(exc.read(MAX_ANSWER_BYTES) or b"{}")
            if isinstance(answer, Mapping):
                detail = str(answer.get("error") or "")
        except ValueError:
            pass
        raise ServerError(detail or f"{where}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:  # refused, reset, timed out, a malformed URL
        raise ServerError(f"{where}: {exc}", unreachable=True) from exc
    if len(raw) > MAX_ANSWER_BYTES:
        raise ServerError(f"{where}: answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise ServerError(f"{where}: answer is not JSON: {raw[:200]!r}") from exc


class Triton:
    """Triton's HTTP API on one server (host:port)."""

    def __init__(self, address: str, timeout: float = LOAD_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout

    def _post(self, path: str, body: Mapping[str, Any], timeout: float) -> Any:
        return _request(f"http://{self.address}/{path}", "POST", body, timeout, self.address)

    def index(self) -> dict[str, IndexEntry]:
        """The repository index: each model Triton knows, with its state and reason."""
        entries = self._post("v2/repository/index", {}, INDEX_TIMEOUT_SECONDS)
        if not isinstance(entries, list):
            raise ServerError(f"{self.address}: the repository index is not a list")
        return {
            str(e.get("name")): IndexEntry(str(e.get("state") or ""), str(e.get("reason") or ""))
            for e in entries
            if isinstance(e, Mapping) and e.get("name")
        }

    def load(self, name: str, config: Mapping[str, Any]) -> None:
        """Load (or reload) a model with this config; returns when Triton has it READY."""
        self._post(
            f"v2/repository/models/{_quote(name)}/load",
            {"parameters": {"config": json.dumps(config)}},
            self.timeout,
        )

    def unload(self, name: str) -> None:
        self._post(
            f"v2/repository/models/{_quote(name)}/unload",
            {"parameters": {"unload_dependents": False}},
            INDEX_TIMEOUT_SECONDS * 6,
        )


class Agent:
    """`smallfleet agent` on one server (http://host:port)."""

    def __init__(self, base_url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        answer = _request(self.base_url + path, method, body, self.timeout, self.base_url)
        return answer if isinstance(answer, dict) else {}

    def fetch(self, name: str, uri: str, digest: str, model_format: str) -> str:
        """Fetch and verify one artifact into the repository as model `name`; the agent's summary."""
        answer = self._call(
            "PUT",
            f"/v1/models/{_quote(name)}",
            {"uri": uri, "digest": digest, "format": model_format},
        )
        return str(answer.get("message", ""))

    def remove(self, name: str) -> None:
        self._call("DELETE", f"/v1/models/{_quote(name)}")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
