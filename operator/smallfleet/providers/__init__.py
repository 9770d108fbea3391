"""Carbon-intensity sources (I/O), each behind the `CarbonProvider` interface.

`build_provider(settings)` is the one entry point the runtime needs: it picks
the configured source, reads its credentials from the environment (the Helm
chart fills them from a Secret), and wraps it in the fallback chain
(live -> last good -> static). Call `fetch(regions)` once per refresh and
hand the readings, keyed by region, to `smallfleet.core.placement.decide`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from smallfleet.core.placement.regions import RegionTable
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.providers.base import CarbonProvider
from smallfleet.providers.carbonawaresdk import CarbonAwareSDKProvider
from smallfleet.providers.data import default_region_table, static_intensities
from smallfleet.providers.electricitymaps import TOKEN_ENV, ElectricityMapsProvider
from smallfleet.providers.fallback import FallbackProvider
from smallfleet.providers.http import HttpClient, ProviderError, Secret
from smallfleet.providers.static import StaticProvider
from smallfleet.providers.ukgrid import UKGridProvider
from smallfleet.providers.watttime import PASSWORD_ENV, USERNAME_ENV, WattTimeProvider
from smallfleet.settings import Settings

PROVIDERS = ("static", "electricitymaps", "watttime", "ukgrid", "carbonawaresdk")


def _secret(env: Mapping[str, str], key: str, provider: str) -> Secret:
    value = env.get(key, "")
    if not value:
        raise ProviderError(provider, f"credentials missing: set {key} (from a Secret)")
    return Secret(value)


def build_provider(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    regions_table: RegionTable | None = None,
    timeout_seconds: float = 5.0,
) -> CarbonProvider:
    """The configured provider wrapped in the fallback chain; `static` alone needs no wrapping."""
    e = os.environ if env is None else env
    table = regions_table or default_region_table()
    static = StaticProvider(regions_table=table)
    name = settings.carbon_provider
    url = settings.carbon_provider_url
    ttl = float(settings.carbon_refresh_seconds)
    primary: CarbonProvider
    if name == "static":
        return static
    if name == "electricitymaps":
        primary = ElectricityMapsProvider(
            token=_secret(e, TOKEN_ENV, name),
            base_url=url or "https://api.electricitymap.org",
            regions_table=table,
            cache_ttl_seconds=ttl,
            http=HttpClient(name, timeout=timeout_seconds),
        )
    elif name == "watttime":
        primary = WattTimeProvider(
            username=_secret(e, USERNAME_ENV, name),
            password=_secret(e, PASSWORD_ENV, name),
            base_url=url or "https://api.watttime.org",
            regions_table=table,
            cache_ttl_seconds=ttl,
            http=HttpClient(name, timeout=timeout_seconds),
        )
    elif name == "ukgrid":
        primary = UKGridProvider(
            base_url=url or "https://api.carbonintensity.org.uk",
            regions_table=table,
            cache_ttl_seconds=ttl,
            http=HttpClient(name, timeout=timeout_seconds),
        )
    elif name == "carbonawaresdk":
        if not url:
            raise ProviderError(name, "SMALLFLEET_CARBON_PROVIDER_URL must name the WebAPI")
        primary = CarbonAwareSDKProvider(
            base_url=url,
            regions_table=table,
            cache_ttl_seconds=ttl,
            http=HttpClient(name, timeout=timeout_seconds),
        )
    else:
        raise ProviderError(name, f"unknown carbon provider; choose one of {', '.join(PROVIDERS)}")
    return FallbackProvider(primary, static, max_age_seconds=settings.carbon_max_age_seconds)


def readings_by_region(readings: list[CarbonReading]) -> dict[str, CarbonReading]:
    return {r.region: r for r in readings}


__all__ = [
    "PROVIDERS",
    "CarbonAwareSDKProvider",
    "CarbonProvider",
    "ElectricityMapsProvider",
    "FallbackProvider",
    "HttpClient",
    "ProviderError",
    "Secret",
    "StaticProvider",
    "UKGridProvider",
    "WattTimeProvider",
    "build_provider",
    "default_region_table",
    "readings_by_region",
    "static_intensities",
]
