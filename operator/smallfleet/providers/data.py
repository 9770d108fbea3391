"""Loads the package data tables: the region map and the static intensity table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from smallfleet.core.placement.regions import RegionTable, parse_region_table


def _load(name: str) -> Any:
    return json.loads(resources.files("smallfleet").joinpath("data", name).read_text("utf-8"))


@cache
def default_region_table() -> RegionTable:
    """The shipped region -> zone / jurisdiction table (`data/regions.json`)."""
    return parse_region_table(_load("regions.json"))


@dataclass(frozen=True)
class StaticIntensity:
    zone: str
    country: str
    intensity: float  # gCO2eq/kWh, annual average, life-cycle
    year: int
    source: str
    url: str
    note: str = ""


@cache
def static_intensities() -> tuple[StaticIntensity, ...]:
    doc = _load("static-intensity.json")
    return tuple(
        StaticIntensity(
            zone=str(z["zone"]),
            country=str(z["country"]),
            intensity=float(z["g_co2eq_per_kwh"]),
            year=int(z["year"]),
            source=str(z["source"]),
            url=str(z["url"]),
            note=str(z.get("note", "")),
        )
        for z in doc["zones"]
    )
