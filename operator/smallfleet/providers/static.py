"""The always-available provider: annual average intensity per grid zone from package data.

It needs no network and no key, so it is the default for a fresh install and
the last link of every fallback chain. An annual average cannot follow daily
swings; it still separates a hydro-and-nuclear grid from a coal-heavy one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.providers.data import StaticIntensity, default_region_table, static_intensities


@dataclass
class StaticProvider:
    regions_table: RegionTable = field(default_factory=default_region_table)
    table: tuple[StaticIntensity, ...] = field(default_factory=static_intensities)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "static"

    def reading(self, region: str) -> CarbonReading:
        zone = self.regions_table.zone(region) or region
        row = next((r for r in self.table if r.zone == zone), None)
        now = self.now()
        year = row.year if row else now.year
        start = datetime(year, 1, 1, tzinfo=UTC)
        return CarbonReading(
            zone=zone,
            region=region,
            start=start,
            duration=datetime(year + 1, 1, 1, tzinfo=UTC) - start,
            intensity=row.intensity if row else None,
            kind="average",
            scope="lifecycle",
            forecast=False,
            provider=self.name,
            fetched_at=now,
        )

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        return [self.reading(r) for r in dict.fromkeys(regions)]
