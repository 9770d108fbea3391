"""The fallback chain: live provider, then the last good reading, then the static table.

A carbon API outage must not move models around or stop placement. For each
region the freshest usable reading wins: the live one; else the last good
reading from memory, flagged stale once older than the max age (placement
then holds the current placement and reports `CarbonSignalStale`); else the
static annual average, which placement treats as a fallback too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from smallfleet.core.placement.signals import CarbonReading
from smallfleet.providers.base import CarbonProvider, log
from smallfleet.providers.static import StaticProvider


@dataclass
class FallbackProvider:
    primary: CarbonProvider
    static: StaticProvider = field(default_factory=StaticProvider)
    max_age_seconds: int = 3600
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "fallback"
    _last_good: dict[str, CarbonReading] = field(default_factory=dict)

    @property
    def last_errors(self) -> dict[str, str]:
        return dict(getattr(self.primary, "last_errors", {}))

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        wanted = list(dict.fromkeys(regions))
        try:
            live = {r.region: r for r in self.primary.fetch(wanted) if r.usable}
        except Exception as e:  # a provider bug must not stop placement; the type says enough
            log.warning(
                "carbon provider %s failed (%s); using fallbacks",
                self.primary.name,
                type(e).__name__,
            )
            live = {}
        now = self.now()
        out: list[CarbonReading] = []
        for region in wanted:
            reading = live.get(region)
            if reading is not None:
                self._last_good[region] = reading
                out.append(reading)
                continue
            last = self._last_good.get(region)
            if last is not None:
                out.append(
                    last.marked_stale() if last.is_stale(now, self.max_age_seconds) else last
                )
                continue
            out.append(self.static.reading(region))
        return out
