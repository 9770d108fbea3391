"""A small JSON-over-HTTP client shared by the carbon providers.

Carbon APIs rate-limit hard (WattTime allows 100 logins per 5 minutes) and
fail now and then; a placement loop that hammers them on error makes both
worse. So every call has a timeout, 429, 5xx and refused connections are
retried with exponential backoff that honours `Retry-After`, a timeout is not
retried within the call (a slow server would hold the caller for another
timeout each time), and after a failure the client refuses to dial again
until the backoff has passed. Only the standard
library is used. Secrets (tokens, passwords) are registered with the client
and scrubbed from every error message, so they never reach logs, events or
status.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
MAX_BODY_IN_ERROR: Final = 200
# Carbon APIs answer in kilobytes (a 72-hour forecast at 5-minute steps is about 100 KB).
# A body beyond this is refused unread, so a broken or hostile endpoint cannot make the
# operator hold hundreds of megabytes.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class ProviderError(Exception):
    """A carbon provider could not give a reading. The message never carries a secret."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        super().__init__(f"{provider}: {message}")


@dataclass(frozen=True)
class Secret:
    """A credential that does not print itself."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self.value)


def redact(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class HttpClient:
    provider: str
    timeout: float = 5.0
    retries: int = 3  # further attempts after the first
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    secrets: list[str] = field(default_factory=list, repr=False)
    not_before: float = 0.0  # no network call before this time (set by repeated failures)

    def add_secret(self, value: str) -> None:
        if value and value not in self.secrets:
            self.secrets.append(value)

    def _error(self, message: str, status: int | None = None) -> ProviderError:
        return ProviderError(self.provider, redact(message, self.secrets), status=status)

    def get_json(
        self,
        url: str,
        params: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET `url` and decode JSON, with timeout, retries and backoff."""
        now = self.clock()
        if now < self.not_before:
            raise self._error(
                f"backing off for {self.not_before - now:.0f}s after earlier failures"
            )
        query = urllib.parse.urlencode(
            list(params.items()) if isinstance(params, Mapping) else list(params)
        )
        full = f"{url}?{query}" if query else url
        attempt = 0
        while True:
            delay: float | None = None
            status: int | None = None
            timed_out = False
            try:
                req = urllib.request.Request(full, headers=dict(headers or {}), method="GET")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read(MAX_BODY_BYTES + 1)
                break
            except urllib.error.HTTPError as e:
                status = e.code
                text = e.read(MAX_BODY_IN_ERROR).decode("utf-8", "replace") if e.fp else ""
                if status not in RETRY_STATUSES:
                    raise self._error(f"HTTP {status} from {url}: {text}", status) from None
                delay = _retry_after(e.headers.get("Retry-After"), self.clock())
                problem = f"HTTP {status} from {url}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                problem = f"{url} unreachable: {reason}"
                timed_out = isinstance(reason, TimeoutError)
            if delay is None:
                delay = self.backoff_base * (2**attempt)
            delay = min(delay, self.backoff_max)
            if timed_out:
                # A server too slow to answer is not retried at once: each attempt would
                # hold the caller (the operator's periodic thread: resync, autoscaling,
                # placement) for another `timeout`. The next call asks after the backoff.
                self.not_before = self.clock() + delay
                raise self._error(f"{problem} (not retried: it timed out)", status)
            if attempt >= self.retries:
                self.not_before = self.clock() + delay
                raise self._error(f"{problem} (gave up after {attempt + 1} attempts)", status)
            self.sleep(delay)
            attempt += 1
        self.not_before = 0.0
        if len(body) > MAX_BODY_BYTES:
            raise self._error(f"response from {url} larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._error(f"malformed JSON from {url}") from None

    def login_basic(self, url: str, username: str, password: str) -> Any:
        """GET with HTTP basic auth (WattTime's /login)."""

        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.add_secret(token)
        return self.get_json(url, headers={"Authorization": f"Basic {token}"})
