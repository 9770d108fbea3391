"""Which grid a cloud region draws from, and which jurisdictions hold its data.

Carbon signals are published per grid zone, residency rules are written per
jurisdiction, and the cluster only knows region names (the node label
`topology.kubernetes.io/region`). This table joins the three. The default
table ships as package data (`smallfleet/data/regions.json`, loaded by
`smallfleet.providers.data`); operators override single zones from a
ConfigMap, merged here without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RegionInfo:
    region: str
    zone: str  # Electricity Maps zone key, e.g. "SE-SE3"
    jurisdictions: tuple[
        str, ...
    ] = ()  # e.g. ("eu", "eea"); empty: unknown, fails any residency rule
    cloud: str = ""
    location: str = ""


@dataclass(frozen=True)
class RegionTable:
    entries: tuple[RegionInfo, ...] = ()

    def get(self, region: str) -> RegionInfo | None:
        for e in self.entries:
            if e.region == region:
                return e
        return None

    def zone(self, region: str) -> str | None:
        info = self.get(region)
        return info.zone if info else None

    def jurisdictions(self, region: str) -> tuple[str, ...]:
        info = self.get(region)
        return info.jurisdictions if info else ()

    def zone_map(self) -> dict[str, str]:
        return {e.region: e.zone for e in self.entries}

    def regions(self) -> tuple[str, ...]:
        return tuple(e.region for e in self.entries)


def parse_region_table(doc: Mapping[str, Any]) -> RegionTable:
    """Build the table from the JSON shape of `data/regions.json`."""
    entries: list[RegionInfo] = []
    for row in doc.get("regions", ()):
        entries.append(
            RegionInfo(
                region=str(row["region"]),
                zone=str(row["zone"]),
                jurisdictions=tuple(str(j) for j in row.get("jurisdictions", ())),
                cloud=str(row.get("cloud", "")),
                location=str(row.get("location", "")),
            )
        )
    return RegionTable(tuple(sorted(entries, key=lambda e: e.region)))


def merge_zone_map(default: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Region -> zone with the ConfigMap's entries winning; blank keys or values are ignored."""
    merged = dict(default)
    for region, zone in overrides.items():
        r, z = region.strip(), zone.strip()
        if r and z:
            merged[r] = z
    return dict(sorted(merged.items()))


def with_zone_overrides(
    table: RegionTable,
    overrides: Mapping[str, str],
    residency_overrides: Mapping[str, Iterable[str]] | None = None,
) -> RegionTable:
    """Apply a ConfigMap's region -> zone (and optional region -> jurisdictions) overrides.

    A region unknown to the default table is added with no jurisdiction unless
    one is given, so residency-bound models never land there by accident.
    """
    zones = merge_zone_map(table.zone_map(), overrides)
    residency = {k: tuple(v) for k, v in (residency_overrides or {}).items()}
    entries: list[RegionInfo] = []
    for region, zone in zones.items():
        base = table.get(region) or RegionInfo(region=region, zone=zone)
        e = replace(base, zone=zone)
        if region in residency:
            e = replace(e, jurisdictions=residency[region])
        entries.append(e)
    return RegionTable(tuple(entries))
