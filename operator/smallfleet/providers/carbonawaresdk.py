"""The Green Software Foundation's Carbon Aware SDK WebAPI.

A self-hosted Carbon Aware SDK fronts WattTime or Electricity Maps and names
locations after cloud regions, so no zone mapping is needed here. `fetch`
reads `/emissions/forecasts/current` for all regions in one call and takes
the point covering now; `best` asks `/emissions/bylocations/best` which
region is cleanest over a window. The SDK does not say which signal its data
source publishes, so `kind`/`scope` are set to match its configuration
(WattTime: marginal/operational, the SDK's default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading, EmissionsScope, SignalKind
from smallfleet.providers.base import (
    RegionFetcher,
    TTLCache,
    log,
    number,
    parse_duration,
    parse_time,
)
from smallfleet.providers.data import default_region_table
from smallfleet.providers.http import HttpClient, ProviderError

DEFAULT_URL: Final = "http://carbon-aware-sdk"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CarbonAwareSDKProvider:
    base_url: str = DEFAULT_URL
    kind: SignalKind = "marginal"
    scope: EmissionsScope = "operational"
    regions_table: RegionTable = field(default_factory=default_region_table)
    cache_ttl_seconds: float = 300.0
    http: HttpClient = field(default_factory=lambda: HttpClient("carbonawaresdk"))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "carbonawaresdk"
    last_errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cache: TTLCache[Any] = TTLCache(self.cache_ttl_seconds, self.http.clock)
        self._fetcher = RegionFetcher(self.name, self.regions_table, self.now)

    def _reading(
        self, region: str, at: datetime, duration: timedelta, value: object, forecast: bool
    ) -> CarbonReading:
        return CarbonReading(
            zone=self._fetcher.zone_of(region),
            region=region,
            start=at,
            duration=duration,
            intensity=number(value),
            kind=self.kind,
            scope=self.scope,
            forecast=forecast,
            provider=self.name,
            fetched_at=self.now(),
        )

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        wanted = list(dict.fromkeys(regions))
        self.last_errors = {}
        if not wanted:
            return []
        key = ",".join(sorted(wanted))
        payload = self._cache.get(key)
        if payload is None:
            try:
                payload = self.http.get_json(
                    self.base_url.rstrip("/") + "/emissions/forecasts/current",
                    [("location", r) for r in wanted],
                )
                if not isinstance(payload, list):
                    raise ProviderError(self.name, "forecast response is not a list")
            except ProviderError as e:
                self.last_errors = {r: str(e) for r in wanted}
                log.warning("carbon signals unavailable: %s", e)
                return []
            self._cache.put(key, payload)
        now = self.now()
        out: list[CarbonReading] = []
        for forecast in payload:
            if not isinstance(forecast, dict) or forecast.get("location") not in wanted:
                continue
            region = str(forecast["location"])
            points = [p for p in forecast.get("forecastData") or [] if isinstance(p, dict)]
            chosen: CarbonReading | None = None
            for p in points:
                at = parse_time(p.get("timestamp"))
                if at is None:
                    continue
                duration = parse_duration(p.get("duration")) or timedelta(minutes=5)
                point = self._reading(region, at, duration, p.get("value"), True)
                if chosen is None or at <= now:
                    chosen = point
                if at <= now < at + duration:
                    break
            if chosen is None:
                self.last_errors[region] = f"{self.name}: no forecast points for {region}"
                continue
            out.append(chosen)
        got = {x.region for x in out}
        for region in wanted:
            if region not in got and region not in self.last_errors:
                self.last_errors[region] = f"{self.name}: no forecast for {region}"
        return out

    def best(
        self, regions: Sequence[str], start: datetime | None = None, end: datetime | None = None
    ) -> list[CarbonReading]:
        """The cleanest region(s) over [start, end] per `/emissions/bylocations/best` (raises ProviderError)."""
        params = [("location", r) for r in dict.fromkeys(regions)]
        if start is not None:
            params.append(("time", _iso(start)))
        if end is not None:
            params.append(("toTime", _iso(end)))
        payload = self.http.get_json(
            self.base_url.rstrip("/") + "/emissions/bylocations/best", params
        )
        if not isinstance(payload, list):
            raise ProviderError(self.name, "best response is not a list")
        out: list[CarbonReading] = []
        for item in payload:
            if not isinstance(item, dict):
                continue
            at = parse_time(item.get("time"))
            if at is None:
                continue
            duration = parse_duration(item.get("duration")) or timedelta(minutes=5)
            out.append(
                self._reading(str(item.get("location")), at, duration, item.get("rating"), False)
            )
        return out
