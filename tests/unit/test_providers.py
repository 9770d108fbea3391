"""Carbon providers against local HTTP servers that speak each API's documented wire format.

Each server runs on 127.0.0.1 on a free port and answers from a script of
responses per path, so the real client code (urllib, retries, caching,
token handling) runs end to end: 401, 429 with Retry-After, 5xx, malformed
JSON, zero and null values, and a server too slow for the client's timeout.
"""

from __future__ import annotations

import base64
import email.utils
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.carbon_api import Reply, Seen, Server, em_latest

from smallfleet.core.placement import RegionInfo, RegionTable
from smallfleet.providers import (
    CarbonAwareSDKProvider,
    ElectricityMapsProvider,
    FallbackProvider,
    HttpClient,
    ProviderError,
    Secret,
    StaticProvider,
    UKGridProvider,
    WattTimeProvider,
    build_provider,
)
from smallfleet.providers.http import MAX_BODY_BYTES, redact
from smallfleet.settings import Settings

NOW = datetime(2026, 11, 26, 6, 10, tzinfo=UTC)
TOKEN = "em-secret-token-7f3a"
WT_USER, WT_PASS = "wt-user", "wt-pass-s3cr3t"
EU = ("eu", "eea")
TABLE = RegionTable(
    (
        RegionInfo("eu-north-1", "SE-SE3", EU, "aws"),
        RegionInfo("eu-west-1", "IE", EU, "aws"),
        RegionInfo("eu-west-2", "GB", ("uk",), "aws"),
        RegionInfo("us-west-1", "US-CAL-CISO", ("us",), "aws"),
    )
)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def http(name: str, clock: Clock, timeout: float = 2.0) -> HttpClient:
    return HttpClient(name, timeout=timeout, retries=3, sleep=clock.sleep, clock=clock)


# --- Electricity Maps -------------------------------------------------------


def em_auth(handler: Callable[[Seen], Reply]) -> Callable[[Seen], Reply]:
    def check(seen: Seen) -> Reply:
        if seen.headers.get("auth-token") != TOKEN:
            return Reply(401, {"message": "Invalid auth-token"})
        return handler(seen)

    return check


def em_zone_reply(values: dict[str, float | None]) -> Callable[[Seen], Reply]:
    return em_auth(lambda s: Reply(200, em_latest(s.query["zone"][0], values[s.query["zone"][0]])))


def em(server: Server, clock: Clock, **kw: Any) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(
        token=Secret(kw.pop("token", TOKEN)),
        base_url=server.url,
        regions_table=TABLE,
        http=http("electricitymaps", clock, kw.pop("timeout", 2.0)),
        now=lambda: NOW,
        **kw,
    )


def test_em_latest_normalised(server: Server) -> None:
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0, "IE": 0.0}))
    p = em(server, Clock())
    north, west = p.fetch(["eu-north-1", "eu-west-1"])
    assert north.zone == "SE-SE3" and north.region == "eu-north-1"
    assert north.intensity == 21.0
    assert (north.kind, north.scope, north.forecast, north.provider) == (
        "average",
        "lifecycle",
        False,
        "electricitymaps",
    )
    assert north.start == datetime(2026, 11, 26, 6, tzinfo=UTC)
    assert north.duration == timedelta(hours=1)
    assert north.fetched_at == NOW
    assert west.intensity is None and not west.usable  # zero counts as missing


def test_em_direct_factor_is_operational_and_null_is_missing(server: Server) -> None:
    server.on(
        "/v3/carbon-intensity/latest",
        em_auth(lambda s: Reply(200, em_latest("IE", None, factor="direct"))),
    )
    (r,) = em(server, Clock()).fetch(["eu-west-1"])
    assert r.scope == "operational" and r.intensity is None


def test_em_by_datacenter(server: Server) -> None:
    def reply(seen: Seen) -> Reply:
        assert seen.query == {"dataCenterProvider": ["aws"], "dataCenterRegion": ["eu-north-1"]}
        return Reply(200, em_latest("SE-SE3", 30.0))

    server.on("/v3/carbon-intensity/latest", em_auth(reply))
    (r,) = em(server, Clock(), by_datacenter=True).fetch(["eu-north-1"])
    assert r.intensity == 30.0


def test_em_forecast(server: Server) -> None:
    body = {
        "zone": "SE-SE3",
        "forecast": [
            {"carbonIntensity": 25, "datetime": "2026-11-26T07:00:00.000Z"},
            {"carbonIntensity": 0, "datetime": "2026-11-26T08:00:00.000Z"},
        ],
        "updatedAt": "2026-11-26T06:00:00.000Z",
    }
    server.on("/v3/carbon-intensity/forecast", em_auth(lambda s: Reply(200, body)))
    points = em(server, Clock()).forecast("eu-north-1")
    assert [p.intensity for p in points] == [25.0, None]
    assert all(p.forecast for p in points)


def test_em_cache_ttl(server: Server) -> None:
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0}))
    clock = Clock()
    p = em(server, clock, cache_ttl_seconds=300)
    p.fetch(["eu-north-1"])
    p.fetch(["eu-north-1"])
    assert server.hits("/v3/carbon-intensity/latest") == 1
    clock.t += 301
    p.fetch(["eu-north-1"])
    assert server.hits("/v3/carbon-intensity/latest") == 2


def test_em_401_is_not_retried_and_never_shows_the_token(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0}))
    clock = Clock()
    p = em(server, clock, token="wrong-" + TOKEN)
    with caplog.at_level(logging.DEBUG):
        assert p.fetch(["eu-north-1"]) == []
    assert server.hits("/v3/carbon-intensity/latest") == 1
    assert clock.sleeps == []
    err = p.last_errors["eu-north-1"]
    assert "HTTP 401" in err
    assert TOKEN not in err and TOKEN not in caplog.text and TOKEN not in repr(p)


def test_em_token_echoed_by_server_is_redacted(server: Server) -> None:
    server.on(
        "/v3/carbon-intensity/latest",
        lambda s: Reply(403, {"message": f"token {s.headers.get('auth-token')} lacks access"}),
    )
    p = em(server, Clock())
    with pytest.raises(ProviderError) as exc:
        p.http.get_json(
            server.url + "/v3/carbon-intensity/latest", {"zone": "IE"}, {"auth-token": TOKEN}
        )
    assert TOKEN not in str(exc.value) and "***" in str(exc.value)


def test_em_429_honours_retry_after(server: Server) -> None:
    server.on(
        "/v3/carbon-intensity/latest",
        Reply(429, {"message": "rate limited"}, {"Retry-After": "7"}),
        em_zone_reply({"SE-SE3": 21.0}),
    )
    clock = Clock()
    (r,) = em(server, clock).fetch(["eu-north-1"])
    assert r.intensity == 21.0
    assert clock.sleeps == [7.0]


def test_em_5xx_backs_off_exponentially_then_refuses_to_dial(server: Server) -> None:
    server.on("/v3/carbon-intensity/latest", Reply(503, {"message": "unavailable"}))
    clock = Clock()
    p = em(server, clock)
    assert p.fetch(["eu-north-1"]) == []
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert server.hits("/v3/carbon-intensity/latest") == 4
    assert "HTTP 503" in p.last_errors["eu-north-1"]
    # Still inside the backoff window: no network at all.
    assert p.fetch(["eu-north-1"]) == []
    assert server.hits("/v3/carbon-intensity/latest") == 4
    assert "backing off" in p.last_errors["eu-north-1"]
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0}))
    clock.t += 10
    (r,) = p.fetch(["eu-north-1"])
    assert r.intensity == 21.0


def test_em_malformed_json(server: Server) -> None:
    server.on("/v3/carbon-intensity/latest", Reply(200, b"{not json"))
    p = em(server, Clock())
    assert p.fetch(["eu-north-1"]) == []
    assert "malformed JSON" in p.last_errors["eu-north-1"]


def test_em_huge_body_is_refused_without_holding_it(server: Server) -> None:
    """Valid JSON padded past the limit: refused by size, not parsed; the next answer counts."""
    padded = b'{"zone": "SE-SE3", "carbonIntensity": ' + b" " * MAX_BODY_BYTES + b"21}"
    server.on(
        "/v3/carbon-intensity/latest", Reply(200, padded), Reply(200, em_latest("SE-SE3", 21.0))
    )
    p = em(server, Clock())
    assert p.fetch(["eu-north-1"]) == []
    assert f"larger than {MAX_BODY_BYTES} bytes" in p.last_errors["eu-north-1"]
    p.cache_ttl_seconds = 0
    (r,) = p.fetch(["eu-north-1"])
    assert r.intensity == 21.0


def test_em_timeout_is_not_retried_within_the_call(server: Server) -> None:
    """A slow server costs one timeout per call, not one per attempt; the next call waits."""
    server.on("/v3/carbon-intensity/latest", Reply(200, em_latest("SE-SE3", 21.0), delay=1.0))
    clock = Clock()
    p = em(server, clock, timeout=0.2)
    assert p.fetch(["eu-north-1", "eu-west-1"]) == []
    assert "unreachable" in p.last_errors["eu-north-1"]
    assert "not retried: it timed out" in p.last_errors["eu-north-1"]
    assert "backing off" in p.last_errors["eu-west-1"]  # not dialled: no second timeout
    assert clock.sleeps == []
    assert len(server.seen) == 1


# --- WattTime ---------------------------------------------------------------

WT_TOKEN = "wt-bearer-token-1"


def wt_login(seen: Seen) -> Reply:
    want = "Basic " + base64.b64encode(f"{WT_USER}:{WT_PASS}".encode()).decode()
    if seen.headers.get("authorization") != want:
        return Reply(401, {"error": "bad credentials"})
    return Reply(200, {"token": WT_TOKEN})


def wt_data(units: str, values: list[float], token: str = WT_TOKEN) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {token}":
            return Reply(401, {"error": "token expired"})
        region = seen.query["region"][0]
        start = datetime(2026, 11, 26, 6, 10, tzinfo=UTC)
        return Reply(
            200,
            {
                "data": [
                    {"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": v}
                    for i, v in enumerate(values)
                ],
                "meta": {
                    "data_point_period_seconds": 300,
                    "region": region,
                    "signal_type": "co2_moer",
                    "units": units,
                    "warnings": [],
                    "model": {"date": "2024-10-01"},
                    "generated_at": "2026-11-26T06:05:00+00:00",
                },
            },
        )

    return reply


def wt(server: Server, clock: Clock, **kw: Any) -> WattTimeProvider:
    return WattTimeProvider(
        username=Secret(WT_USER),
        password=Secret(kw.pop("password", WT_PASS)),
        base_url=server.url,
        regions_table=TABLE,
        http=http("watttime", clock),
        now=lambda: NOW,
        **kw,
    )


def test_wt_moer_converted_and_token_cached(server: Server) -> None:
    server.on("/login", wt_login)
    server.on("/v3/forecast", wt_data("lbs_co2_per_mwh", [1000.0, 900.0]))
    clock = Clock()
    p = wt(server, clock, cache_ttl_seconds=0)
    (r,) = p.fetch(["us-west-1"])
    assert r.intensity == pytest.approx(453.592)
    assert (r.kind, r.scope, r.forecast, r.zone) == ("marginal", "operational", True, "CAISO_NORTH")
    assert r.duration == timedelta(minutes=5)
    p.fetch(["us-west-1"])
    assert server.hits("/login") == 1 and server.hits("/v3/forecast") == 2
    clock.t += 30 * 60  # token lifetime
    p.fetch(["us-west-1"])
    assert server.hits("/login") == 2


def test_wt_relogin_on_401(server: Server) -> None:
    server.on("/login", wt_login)
    server.on(
        "/v3/forecast",
        Reply(401, {"error": "token expired"}),
        wt_data("lbs_co2_per_mwh", [800.0]),
    )
    p = wt(server, Clock())
    (r,) = p.fetch(["us-west-1"])
    assert r.intensity == pytest.approx(800 * 0.453592)
    assert server.hits("/login") == 2


def test_wt_signal_index_is_an_index(server: Server) -> None:
    server.on("/login", wt_login)
    server.on("/v3/signal-index", wt_data("percentile", [57.0]))
    (r,) = wt(server, Clock(), signal="index").fetch(["us-west-1"])
    assert (r.kind, r.intensity, r.forecast) == ("index", 57.0, False)


def test_wt_bad_credentials_never_leak(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    server.on(
        "/login",
        lambda s: Reply(401, {"error": f"bad credentials {s.headers.get('authorization')}"}),
    )
    p = wt(server, Clock(), password="nope-" + WT_PASS)
    with caplog.at_level(logging.DEBUG):
        assert p.fetch(["us-west-1"]) == []
    err = p.last_errors["us-west-1"]
    basic = base64.b64encode(f"{WT_USER}:nope-{WT_PASS}".encode()).decode()
    for secret in (WT_PASS, basic):
        assert secret not in err and secret not in caplog.text and secret not in repr(p)


def test_wt_zero_value_is_missing(server: Server) -> None:
    server.on("/login", wt_login)
    server.on("/v3/forecast", wt_data("lbs_co2_per_mwh", [0.0]))
    (r,) = wt(server, Clock()).fetch(["us-west-1"])
    assert r.intensity is None


# --- GB Carbon Intensity ----------------------------------------------------


def uk_region(rid: int, forecast: float | None) -> dict[str, Any]:
    return {
        "data": [
            {
                "regionid": rid,
                "dnoregion": "UKPN London",
                "shortname": "London",
                "data": [
                    {
                        "from": "2026-11-26T06:00Z",
                        "to": "2026-11-26T06:30Z",
                        "intensity": {"forecast": forecast, "index": "moderate"},
                        "generationmix": [
                            {"fuel": "gas", "perc": 41.2},
                            {"fuel": "wind", "perc": 30.1},
                            {"fuel": "nuclear", "perc": 14.9},
                        ],
                    }
                ],
            }
        ]
    }


def test_ukgrid_regional(server: Server) -> None:
    server.on("/regional/regionid/13", Reply(200, uk_region(13, 182)))
    p = UKGridProvider(
        base_url=server.url, regions_table=TABLE, http=http("ukgrid", Clock()), now=lambda: NOW
    )
    readings = p.fetch(["eu-west-2", "eu-west-1"])
    assert len(readings) == 1
    (r,) = readings
    assert (r.zone, r.intensity, r.kind, r.scope, r.forecast) == (
        "GB-13",
        182.0,
        "average",
        "operational",
        True,
    )
    assert r.duration == timedelta(minutes=30)
    assert "not a GB region" in p.last_errors["eu-west-1"]


def test_ukgrid_malformed_shape(server: Server) -> None:
    server.on("/regional/regionid/13", Reply(200, {"data": []}))
    p = UKGridProvider(
        base_url=server.url, regions_table=TABLE, http=http("ukgrid", Clock()), now=lambda: NOW
    )
    assert p.fetch(["eu-west-2"]) == []
    assert "unexpected response shape" in p.last_errors["eu-west-2"]


# --- Carbon Aware SDK -------------------------------------------------------


def casdk_forecast(seen: Seen) -> Reply:
    out = []
    for i, loc in enumerate(seen.query["location"]):
        points = [
            {
                "location": loc,
                "timestamp": (NOW - timedelta(minutes=15) + timedelta(minutes=10 * k)).isoformat(),
                "duration": 10,
                "value": 300.0 + 100 * i + k,
            }
            for k in range(4)
        ]
        out.append(
            {
                "generatedAt": "2026-11-26T06:00:00+00:00",
                "requestedAt": "2026-11-26T06:09:00+00:00",
                "location": loc,
                "dataStartAt": points[0]["timestamp"],
                "dataEndAt": points[-1]["timestamp"],
                "windowSize": 0,
                "optimalDataPoints": [points[0]],
                "forecastData": points,
            }
        )
    return Reply(200, out)


def test_casdk_current_forecast_picks_point_covering_now(server: Server) -> None:
    server.on("/emissions/forecasts/current", casdk_forecast)
    p = CarbonAwareSDKProvider(
        base_url=server.url, regions_table=TABLE, http=http("casdk", Clock()), now=lambda: NOW
    )
    a, b = p.fetch(["eastus", "westeurope"])
    # Points start at -15, -5, +5, +15 minutes; the one covering now is index 1.
    assert (a.region, a.intensity) == ("eastus", 301.0)
    assert (b.region, b.intensity) == ("westeurope", 401.0)
    assert a.duration == timedelta(minutes=10) and a.kind == "marginal"
    assert server.seen[0].query["location"] == ["eastus", "westeurope"]


def test_casdk_best(server: Server) -> None:
    def best(seen: Seen) -> Reply:
        assert seen.query["time"] == ["2026-11-26T06:10:00Z"]
        return Reply(
            200,
            [
                {
                    "location": "westus",
                    "time": "2026-11-26T06:15:00Z",
                    "rating": 210.5,
                    "duration": "00:05:00",
                }
            ],
        )

    server.on("/emissions/bylocations/best", best)
    p = CarbonAwareSDKProvider(
        base_url=server.url, regions_table=TABLE, http=http("casdk", Clock()), now=lambda: NOW
    )
    (r,) = p.best(["eastus", "westus"], start=NOW, end=NOW + timedelta(hours=1))
    assert (r.region, r.intensity, r.duration) == ("westus", 210.5, timedelta(minutes=5))


def test_casdk_server_error_reports_every_region(server: Server) -> None:
    server.on("/emissions/forecasts/current", Reply(500, {"title": "boom"}))
    p = CarbonAwareSDKProvider(
        base_url=server.url, regions_table=TABLE, http=http("casdk", Clock()), now=lambda: NOW
    )
    assert p.fetch(["eastus", "westus"]) == []
    assert set(p.last_errors) == {"eastus", "westus"}


# --- static and the fallback chain -----------------------------------------


def test_static_provider_annual_average() -> None:
    p = StaticProvider(now=lambda: NOW)
    (r, unknown) = p.fetch(["eu-north-1", "mars-1"])
    assert r.zone == "SE-SE3" and r.intensity is not None and r.intensity > 0
    assert (r.kind, r.scope, r.provider) == ("average", "lifecycle", "static")
    assert r.duration >= timedelta(days=365)
    assert not r.is_stale(NOW, 60)
    assert unknown.intensity is None


def test_fallback_last_good_then_stale_then_static(server: Server) -> None:
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0, "IE": 0.0}))
    clock = Clock()
    now = [NOW]
    primary = em(server, clock, cache_ttl_seconds=0)
    primary.now = lambda: now[0]
    chain = FallbackProvider(
        primary, StaticProvider(regions_table=TABLE, now=lambda: now[0]), 3600, lambda: now[0]
    )
    first = {r.region: r for r in chain.fetch(["eu-north-1", "eu-west-1"])}
    assert first["eu-north-1"].provider == "electricitymaps"
    assert first["eu-west-1"].provider == "static"  # zero from the API: fall through
    server.on("/v3/carbon-intensity/latest", Reply(500, {"message": "down"}))
    now[0] = NOW + timedelta(minutes=30)
    clock.t += 1
    (held,) = chain.fetch(["eu-north-1"])
    assert held.provider == "electricitymaps" and held.intensity == 21.0 and not held.stale
    now[0] = NOW + timedelta(hours=2)
    clock.t += 3600
    (stale,) = chain.fetch(["eu-north-1"])
    assert stale.stale and stale.intensity == 21.0
    assert stale.is_stale(now[0], 3600)


def test_build_provider_reads_secrets_from_env(server: Server) -> None:
    s = Settings(carbon_provider="electricitymaps", carbon_provider_url=server.url)
    with pytest.raises(ProviderError) as exc:
        build_provider(s, env={})
    assert "SMALLFLEET_ELECTRICITYMAPS_TOKEN" in str(exc.value)
    server.on("/v3/carbon-intensity/latest", em_zone_reply({"SE-SE3": 21.0}))
    p = build_provider(s, env={"SMALLFLEET_ELECTRICITYMAPS_TOKEN": TOKEN})
    assert isinstance(p, FallbackProvider)
    (r,) = p.fetch(["eu-north-1"])
    assert r.intensity == 21.0
    assert TOKEN not in repr(p)
    assert isinstance(build_provider(Settings(), env={}), StaticProvider)
    with pytest.raises(ProviderError):
        build_provider(Settings(carbon_provider="nope"), env={})


@given(st.text(min_size=4, max_size=40), st.text(max_size=40), st.text(max_size=40))
def test_property_redact_removes_every_secret(secret: str, before: str, after: str) -> None:
    assert secret not in redact(before + secret + after + secret, [secret]).replace("***", "\0")


def test_retry_after_as_http_date(server: Server) -> None:
    clock = Clock()
    when = datetime.fromtimestamp(clock.t + 12, tz=UTC)
    server.on(
        "/v3/carbon-intensity/latest",
        Reply(503, {}, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}),
        em_zone_reply({"SE-SE3": 21.0}),
    )
    (r,) = em(server, clock).fetch(["eu-north-1"])
    assert r.intensity == 21.0
    assert clock.sleeps == [pytest.approx(12.0, abs=1.0)]


def test_fallback_survives_a_failing_provider(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def fetch(self, regions: object) -> list[object]:
            raise KeyError(TOKEN)

    chain = FallbackProvider(
        Broken(), StaticProvider(regions_table=TABLE, now=lambda: NOW), 3600, lambda: NOW
    )  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        (r,) = chain.fetch(["eu-north-1"])
    assert r.provider == "static" and r.intensity is not None
    assert "KeyError" in caplog.text and TOKEN not in caplog.text
