"""WattTime API v3: marginal operating emissions rate (MOER) or its 0-100 index.

`/login` with HTTP basic auth returns a bearer token valid for 30 minutes;
it is cached and renewed a few minutes early (WattTime limits logins to 100
per 5 minutes), and renewed once on a 401. The current MOER is the first
point of `/v3/forecast` (in lbs/MWh, converted to g/kWh); `/v3/signal-index`
gives the relative 0-100 index, which placement never ranks against grams.
WattTime regions are balancing areas, not Electricity Maps zones: `REGIONS`
maps the zones it knows, and any other zone is passed as is, so the
region-zone ConfigMap can name WattTime regions directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import LBS_PER_MWH_TO_G_PER_KWH, CarbonReading
from smallfleet.providers.base import RegionFetcher, TTLCache, number, parse_time
from smallfleet.providers.data import default_region_table
from smallfleet.providers.http import HttpClient, ProviderError, Secret

DEFAULT_URL: Final = "https://api.watttime.org"
USERNAME_ENV: Final = "SMALLFLEET_WATTTIME_USERNAME"
PASSWORD_ENV: Final = "SMALLFLEET_WATTTIME_PASSWORD"
TOKEN_LIFETIME_SECONDS: Final = 30 * 60
TOKEN_REFRESH_MARGIN_SECONDS: Final = 5 * 60
REGIONS: Final[Mapping[str, str]] = {
    "US-CAL-CISO": "CAISO_NORTH",
    "US-NW-BPAT": "BPA",
    "US-MIDA-PJM": "PJM_DC",
    "US-MIDW-MISO": "MISO_INDIANAPOLIS",
}


@dataclass
class WattTimeProvider:
    username: Secret
    password: Secret
    base_url: str = DEFAULT_URL
    signal: Literal["moer", "index"] = "moer"
    regions_table: RegionTable = field(default_factory=default_region_table)
    region_names: Mapping[str, str] = field(default_factory=lambda: dict(REGIONS))
    cache_ttl_seconds: float = 300.0
    http: HttpClient = field(default_factory=lambda: HttpClient("watttime"))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "watttime"
    logins: int = 0

    def __post_init__(self) -> None:
        self.http.add_secret(self.username.value)
        self.http.add_secret(self.password.value)
        self._cache: TTLCache[Any] = TTLCache(self.cache_ttl_seconds, self.http.clock)
        self._token: tuple[str, float] | None = None  # token, expiry (clock seconds)
        self._fetcher = RegionFetcher(self.name, self.regions_table, self.now)

    @property
    def last_errors(self) -> dict[str, str]:
        return self._fetcher.last_errors

    def _wt_region(self, region: str) -> str:
        zone = self._fetcher.zone_of(region)
        return self.region_names.get(zone, zone)

    def token(self) -> str:
        now = self.http.clock()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        payload = self.http.login_basic(
            self.base_url.rstrip("/") + "/login", self.username.value, self.password.value
        )
        self.logins += 1
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(self.name, "login response without a token")
        self.http.add_secret(token)
        self._token = (token, now + TOKEN_LIFETIME_SECONDS - TOKEN_REFRESH_MARGIN_SECONDS)
        return token

    def _get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        key = path + "?" + "&".join(f"{k}={v}" for k, v in params)
        hit = self._cache.get(key)
        if hit is not None:
            return dict(hit)
        url = self.base_url.rstrip("/") + path
        for attempt in (0, 1):
            try:
                payload = self.http.get_json(
                    url, params, headers={"Authorization": f"Bearer {self.token()}"}
                )
                break
            except ProviderError as e:
                if e.status == 401 and attempt == 0:
                    self._token = None
                    continue
                raise
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise ProviderError(self.name, f"unexpected response shape from {path}")
        self._cache.put(key, payload)
        return payload

    def _reading(
        self, region: str, point: dict[str, Any], meta: dict[str, Any], *, forecast: bool
    ) -> CarbonReading:
        at = parse_time(point.get("point_time"))
        if at is None:
            raise ProviderError(self.name, "data point without a valid point_time")
        period = meta.get("data_point_period_seconds")
        duration = timedelta(seconds=float(period) if isinstance(period, int | float) else 300.0)
        value = number(point.get("value"))
        units = str(meta.get("units", ""))
        if self.signal == "index" or units == "percentile":
            kind: Literal["marginal", "index"] = "index"
        elif units == "lbs_co2_per_mwh":
            kind = "marginal"
            value = value * LBS_PER_MWH_TO_G_PER_KWH if value is not None else None
        elif units in ("g_co2_per_kwh", "kg_co2_per_mwh"):
            kind = "marginal"
        else:
            raise ProviderError(self.name, f"unknown units {units!r}")
        return CarbonReading(
            zone=self._wt_region(region),
            region=region,
            start=at,
            duration=duration,
            intensity=value,
            kind=kind,
            scope="operational",
            forecast=forecast,
            provider=self.name,
            fetched_at=self.now(),
        )

    def _current(self, region: str) -> CarbonReading:
        wt = self._wt_region(region)
        if self.signal == "index":
            payload = self._get("/v3/signal-index", [("region", wt), ("signal_type", "co2_moer")])
            forecast = False
        else:
            payload = self._get(
                "/v3/forecast",
                [("region", wt), ("signal_type", "co2_moer"), ("horizon_hours", "0")],
            )
            forecast = True
        points = [p for p in payload["data"] if isinstance(p, dict)]
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        if not points:
            raise ProviderError(self.name, f"no data points for {wt}")
        return self._reading(region, points[0], meta or {}, forecast=forecast)

    def fetch(self, regions: Sequence[str]) -> list[CarbonReading]:
        return self._fetcher.fetch_each(regions, self._current)

    def forecast(self, region: str, horizon_hours: int = 24) -> list[CarbonReading]:
        wt = self._wt_region(region)
        payload = self._get(
            "/v3/forecast",
            [("region", wt), ("signal_type", "co2_moer"), ("horizon_hours", str(horizon_hours))],
        )
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        return [
            self._reading(region, p, meta or {}, forecast=True)
            for p in payload["data"]
            if isinstance(p, dict)
        ]
