"""The hindsight bound of carbon placement, as the carbon bench and its tests name it.

The optimisation itself lives in the pure core
(`smallfleet.core.placement.optimum`), because the operator uses the same
programme to place the fleet jointly and to advise where capacity would pay.
For one hour, the bound places every model in the regions it is allowed in,
within each region's GPU capacity per product, minimising emissions, with
moves free and models divisible (the LP relaxation, so it is never above any
real placement). It has no `main()`, so `bench/run.py` does not run it as a
benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "operator") not in sys.path:
    sys.path.insert(0, str(ROOT / "operator"))

from smallfleet.core.placement.optimum import (  # noqa: E402
    Demand,
    Optimum,
    fleet_optimum,
    unlimited_optimum,
)

HourBound = Optimum
hour_bound = fleet_optimum

__all__ = ["Demand", "HourBound", "Optimum", "fleet_optimum", "hour_bound", "unlimited_optimum"]
