"""Electricity Maps API v3: latest and forecast carbon intensity per zone.

Requests `/v3/carbon-intensity/latest` and `/v3/carbon-intensity/forecast`
with the `auth-token` header, either by zone or, when `by_datacenter` is set,
by `dataCenterProvider` + `dataCenterRegion` so Electricity Maps resolves the
region itself. Values are average intensity in gCO2eq/kWh; the response's
`emissionFactorType` says life-cycle or direct (operational).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading, EmissionsScope
from smallfleet.providers.base import RegionFetcher, TTLCache, number, parse_time
from smallfleet.providers.data import default_region_table
from smallfleet.providers.http import HttpClient, ProviderError, Secret

DEFAULT_URL: Final = "https://api.electricitymap.org"
TOKEN_ENV: Final = "SMALLFLEET_ELECTRICITYMAPS_TOKEN"
HOUR: Final = timedelta(hours=1)


def _scope(payload: dict[str, Any]) -> EmissionsScope:
    return "operational" if payload.get("emissionFactorType") == "direct" else "lifecycle"


@dataclass
class ElectricityMapsProvider:
    token: Secret
    base_url: str = DEFAULT_URL
    regions_table: RegionTable = field(default_factory=default_region_table)
    by_datacenter: bool = False
    cache_ttl_seconds: float = 300.0
    http: HttpClient = field(default_factory=lambda: HttpClient("electricitymaps"))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "electricitymaps"

    def __post_init__(self) -> None:
        self.http.add_secret(self.token.value)
        self._cache: TTLCache[Any] = TTLCache(self.cache_ttl_seconds, self.http.clock)
        self._fetcher = RegionFetcher(self.name, self.regions_table, self.now)

    @property
    def last_errors(self) -> dict[str, str]:
        return self._fetcher.last_errors

    def _params(self, region: str) -> list[tuple[str, str]]:
        info = self.regions_table.get(region)
        if self.by_datacenter and info is not None and info.cloud:
            return [("dataCenterProvider", info.cloud), ("dataCenterRegion", region)]
        return [("zone", self._fetcher.zone_of(region))]

    def _get(self, path: str, region: str) -> Any:
        params = self._params(region)
        key = path + "?" + "&".join(f"{k}={v}" for k, v in params)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        payload = self.http.get_json(
            self.base_url.rstrip("/") + path, params, headers={"auth-token": self.token.value}
        )
        if not isinstance(payload, dict):
            raise ProviderError(self.name, f"unexpected response shape from {path}")
        self._cache.put(key, payload)
        return payload

    def _latest(self, region: str) -> CarbonReading:
        payload = self._get("/v3/carbon-intensity/latest", region)
        at = parse_time(payload.get("datetime"))
        if at is None:
            raise ProviderError(self.name, "response without a valid datetime")
        return CarbonReading(
            zone=str(payload.get("zone") or self._fetcher.zone_of(region)),
            region=region,
            start=at,
            duration=HOUR,
            intensity=number(payload.get("carbonIntensity")),
            kind="average",
            scope=_scope(payload),
            forecast=False,
            provider=self.name,
            fetched_at=self.now(),
        )

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        return self._fetcher.fetch_each(regions, self._latest)

    def forecast(self, region: str) -> list[CarbonReading]:
        """Hourly forecast points for one region (raises ProviderError)."""
        payload = self._get("/v3/carbon-intensity/forecast", region)
        points = payload.get("forecast")
        if not isinstance(points, list):
            raise ProviderError(self.name, "forecast response without a forecast list")
        out: list[CarbonReading] = []
        fetched = self.now()
        for p in points:
            at = parse_time(p.get("datetime")) if isinstance(p, dict) else None
            if at is None or not isinstance(p, dict):
                continue
            out.append(
                CarbonReading(
                    zone=str(payload.get("zone") or self._fetcher.zone_of(region)),
                    region=region,
                    start=at,
                    duration=HOUR,
                    intensity=number(p.get("carbonIntensity")),
                    kind="average",
                    scope=_scope(payload),
                    forecast=True,
                    provider=self.name,
                    fetched_at=fetched,
                )
            )
        return out
