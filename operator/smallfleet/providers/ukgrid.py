"""The GB Carbon Intensity API (National Energy System Operator): regional intensity, no key.

`/regional/regionid/{id}` returns the current half hour for one of the 17
GB regions (13 is London). The value is a forecast of average operational
intensity: the API counts generation emissions only, not life-cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.providers.base import RegionFetcher, TTLCache, number, parse_time
from smallfleet.providers.data import default_region_table
from smallfleet.providers.http import HttpClient, ProviderError

DEFAULT_URL: Final = "https://api.carbonintensity.org.uk"
LONDON: Final = 13
# Cloud region -> GB region id; the London data centres of AWS, GCP and Azure.
REGION_IDS: Final[Mapping[str, int]] = {
    "eu-west-2": LONDON,
    "europe-west2": LONDON,
    "uksouth": LONDON,
    "ukwest": 7,  # Azure UK West, Cardiff: South Wales
}


@dataclass
class UKGridProvider:
    base_url: str = DEFAULT_URL
    region_ids: Mapping[str, int] = field(default_factory=lambda: dict(REGION_IDS))
    regions_table: RegionTable = field(default_factory=default_region_table)
    cache_ttl_seconds: float = 300.0
    http: HttpClient = field(default_factory=lambda: HttpClient("ukgrid"))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "ukgrid"

    def __post_init__(self) -> None:
        self._cache: TTLCache[Any] = TTLCache(self.cache_ttl_seconds, self.http.clock)
        self._fetcher = RegionFetcher(self.name, self.regions_table, self.now)

    @property
    def last_errors(self) -> dict[str, str]:
        return self._fetcher.last_errors

    def _one(self, region: str) -> CarbonReading:
        rid = self.region_ids.get(region)
        if rid is None:
            raise ProviderError(self.name, f"{region} is not a GB region")
        key = str(rid)
        payload = self._cache.get(key)
        if payload is None:
            payload = self.http.get_json(f"{self.base_url.rstrip('/')}/regional/regionid/{rid}")
            self._cache.put(key, payload)
        data = payload.get("data") if isinstance(payload, dict) else None
        entry = data[0] if isinstance(data, list) and data else data
        periods = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(periods, list) or not periods or not isinstance(periods[0], dict):
            raise ProviderError(self.name, f"unexpected response shape for region {rid}")
        period = periods[0]
        start, end = parse_time(period.get("from")), parse_time(period.get("to"))
        if start is None:
            raise ProviderError(self.name, "period without a valid 'from'")
        intensity = period.get("intensity")
        value = number(intensity.get("forecast")) if isinstance(intensity, dict) else None
        return CarbonReading(
            zone=f"GB-{rid}",
            region=region,
            start=start,
            duration=(end - start) if end and end > start else timedelta(minutes=30),
            intensity=value,
            kind="average",
            scope="operational",
            forecast=True,
            provider=self.name,
            fetched_at=self.now(),
        )

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        return self._fetcher.fetch_each(regions, self._one)
