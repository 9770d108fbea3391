"""The operator's side of a pool server: Triton's repository API and the fetch agent.

Two small clients, both blocking (the pool controller calls them from its
worker threads): `Triton` speaks Triton's HTTP model repository extension
through `tritonclient` (index, load with the config in the request, unload),
and `Agent` asks the server's `smallfleet agent` to fetch and verify an
artifact into the shared model repository. Each failure comes back as
`ServerError` carrying the server's own words, which end up in the model's
status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from smallfleet.core.pools.plan import IndexEntry

INDEX_TIMEOUT_SECONDS: Final = 5.0
LOAD_TIMEOUT_SECONDS: Final = 300.0
FETCH_TIMEOUT_SECONDS: Final = 600.0


class ServerError(RuntimeError):
    """The server answered with an error (its message is the server's own) or not at all."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


class Triton:
    """Triton's HTTP API on one server (host:port)."""

    def __init__(self, address: str, timeout: float = LOAD_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout

    def _client(self, timeout: float) -> Any:
        return triton_http.InferenceServerClient(
            self.address, connection_timeout=timeout, network_timeout=timeout
        )

    def index(self) -> dict[str, IndexEntry]:
        """The repository index: each model Triton knows, with its state and reason."""
        client = self._client(INDEX_TIMEOUT_SECONDS)
        try:
            entries = client.get_model_repository_index()
        except InferenceServerException as exc:
            raise ServerError(str(exc.message() or exc)) from exc
        except Exception as exc:  # connection refused, timeout: the server is not there
            raise ServerError(f"{self.address}: {exc}", unreachable=True) from exc
        finally:
            client.close()
        return {
            str(e.get("name")): IndexEntry(str(e.get("state") or ""), str(e.get("reason") or ""))
            for e in entries
            if isinstance(e, Mapping) and e.get("name")
        }

    def load(self, name: str, config: Mapping[str, Any]) -> None:
        """Load (or reload) a model with this config; returns when Triton has it READY."""
        self._call(self.timeout, lambda client: client.load_model(name, config=json.dumps(config)))

    def unload(self, name: str) -> None:
        self._call(INDEX_TIMEOUT_SECONDS * 6, lambda client: client.unload_model(name))

    def _call(self, timeout: float, request: Callable[[Any], object]) -> None:
        """One request; Triton's refusal and an unreachable server both become ServerError."""
        client = self._client(timeout)
        try:
            request(client)
        except InferenceServerException as exc:
            raise ServerError(str(exc.message() or exc)) from exc
        except Exception as exc:  # connection refused, timeout: the server is not there
            raise ServerError(f"{self.address}: {exc}", unreachable=True) from exc
        finally:
            client.close()


class Agent:
    """`smallfleet agent` on one server (http://host:port)."""

    def __init__(self, base_url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                loaded = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}").get("error") or str(exc)
            except ValueError:
                detail = str(exc)
            raise ServerError(str(detail)) from exc
        except (OSError, ValueError) as exc:
            raise ServerError(f"{self.base_url}: {exc}", unreachable=True) from exc
        return loaded if isinstance(loaded, dict) else {}

    def fetch(self, name: str, uri: str, digest: str, model_format: str) -> str:
        """Fetch and verify one artifact into the repository as model `name`; the agent's summary."""
        quoted = urllib.parse.quote(name, safe="")
        answer = self._call(
            "PUT", f"/v1/models/{quoted}", {"uri": uri, "digest": digest, "format": model_format}
        )
        return str(answer.get("message", ""))

    def remove(self, name: str) -> None:
        self._call("DELETE", f"/v1/models/{urllib.parse.quote(name, safe='')}")
