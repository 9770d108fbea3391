"""One normalised record for every carbon-intensity reading, whatever its source.

Electricity Maps, WattTime, the UK grid API, the Carbon Aware SDK and the
static table disagree on units, time stamps and meaning. Placement must never
compare a marginal rate with an average or a 0-100 index with grams, so every
reading says what it is (signal kind, emissions scope, forecast or not) and
the comparison rules live here, next to the record, in pure code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

SignalKind = Literal["average", "marginal", "index"]
EmissionsScope = Literal["lifecycle", "operational"]

# Unit conversion for marginal rates published in pounds per MWh (WattTime).
LBS_PER_MWH_TO_G_PER_KWH: Final = 0.453592


@dataclass(frozen=True)
class CarbonReading:
    """One intensity value for one grid zone over one interval.

    `intensity` is gCO2eq/kWh (or 0-100 for kind "index"); None means missing.
    A zero is treated as missing as well (see `usable`): no real grid emits
    nothing, and providers report 0 when they have no data.
    """

    zone: str
    region: str  # the cloud region this reading was fetched for
    start: datetime  # start of the interval the value describes (UTC, tz-aware)
    duration: timedelta
    intensity: float | None
    kind: SignalKind
    scope: EmissionsScope
    forecast: bool
    provider: str  # static | electricitymaps | watttime | ukgrid | carbonawaresdk
    fetched_at: datetime
    stale: bool = False  # set when a cached last-good reading outlived its max age

    @property
    def usable(self) -> bool:
        return self.intensity is not None and self.intensity > 0

    @property
    def comparable_key(self) -> tuple[SignalKind, EmissionsScope]:
        """Readings rank against each other only when these agree."""
        return (self.kind, self.scope)

    def age(self, now: datetime) -> timedelta:
        """How old the information is: from the fetch, or from the interval end if that is older."""
        observed = min(self.fetched_at, self.start + self.duration)
        return max(timedelta(0), now - observed)

    def is_stale(self, now: datetime, max_age_seconds: int) -> bool:
        if self.stale:
            return True
        if self.provider == "static":
            return False  # an annual average does not age within the year it describes
        return self.age(now) > timedelta(seconds=max_age_seconds)

    def for_region(self, region: str) -> CarbonReading:
        return replace(self, region=region)

    def marked_stale(self) -> CarbonReading:
        return replace(self, stale=True)
