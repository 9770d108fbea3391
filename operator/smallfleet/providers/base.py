"""The provider interface, a TTL cache, and helpers every provider shares.

Each source speaks its own units and time formats; each provider turns them
into `CarbonReading`s, one per requested region, so the rest of the operator
deals with one shape. `fetch` never raises for one region's trouble: a region
whose request failed is left out (and its redacted error kept in
`last_errors`), a region the source has no number for comes back with
`intensity=None`. `smallfleet.providers.fallback` fills the gaps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.providers.http import ProviderError

log = logging.getLogger("smallfleet.providers")

T = TypeVar("T")


class CarbonProvider(Protocol):
    name: str

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]: ...


@dataclass
class TTLCache(Generic[T]):
    ttl_seconds: float
    clock: Callable[[], float] = time.time
    _entries: dict[str, tuple[float, T]] = field(default_factory=dict)

    def get(self, key: str) -> T | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, value = hit
        if self.clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, value: T) -> None:
        self._entries[key] = (self.clock() + self.ttl_seconds, value)


def parse_time(value: object) -> datetime | None:
    """ISO 8601 with Z, offset, or naive (taken as UTC); None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_duration(value: object) -> timedelta | None:
    """A .NET TimeSpan ("08:00:00", "1.00:00:00") or minutes as a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(minutes=float(value))
    if not isinstance(value, str) or ":" not in value:
        return None
    days = 0
    text = value
    if "." in text.split(":")[0]:
        d, text = text.split(".", 1)
        days = int(d)
    try:
        h, m, s = text.split(":")
        return timedelta(days=days, hours=int(h), minutes=int(m), seconds=float(s))
    except ValueError:
        return None


def number(value: object) -> float | None:
    """A positive finite number, else None: zero, null and junk all count as missing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")) or v <= 0:
        return None
    return v


@dataclass
class RegionFetcher:
    """Shared fetch loop: one request per zone, cached, errors collected per region."""

    name: str
    regions_table: RegionTable
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    last_errors: dict[str, str] = field(default_factory=dict)

    def zone_of(self, region: str) -> str:
        return self.regions_table.zone(region) or region

    def fetch_each(
        self, regions: Sequence[str], one: Callable[[str], CarbonReading]
    ) -> list[CarbonReading]:
        out: list[CarbonReading] = []
        self.last_errors = {}
        for region in dict.fromkeys(regions):
            try:
                out.append(one(region))
            except ProviderError as e:
                self.last_errors[region] = str(e)
                log.warning("carbon signal for %s unavailable: %s", region, e)
        return out
