"""Carbon-aware placement: pure policies and the decision, fed by `smallfleet.providers`.

Public surface for the runtime: `decide`, `plan_move`, the input values
(`PlacementInput`, `NodeCapacity` via `node_capacity`, `CurrentPlacement`), the reading record
(`CarbonReading`), the region table (`RegionTable`, `merge_zone_map`) and the
energy estimates (`estimate`, `power_watts`, `grams_per_hour`).
"""

from smallfleet.core.placement.capacity import Claim, node_capacity, with_claims
from smallfleet.core.placement.decide import Exclusion, PlacementDecision, decide
from smallfleet.core.placement.energy import (
    Estimate,
    cpu_cores,
    estimate,
    gpu_power,
    grams_per_hour,
    power_watts,
)
from smallfleet.core.placement.moves import MovePlan, plan_move
from smallfleet.core.placement.policies import (
    CurrentPlacement,
    NodeCapacity,
    PlacementInput,
    PolicyResult,
)
from smallfleet.core.placement.regions import (
    RegionInfo,
    RegionTable,
    merge_zone_map,
    parse_region_table,
    with_zone_overrides,
)
from smallfleet.core.placement.signals import CarbonReading

__all__ = [
    "CarbonReading",
    "Claim",
    "CurrentPlacement",
    "Estimate",
    "Exclusion",
    "MovePlan",
    "NodeCapacity",
    "PlacementDecision",
    "PlacementInput",
    "PolicyResult",
    "RegionInfo",
    "RegionTable",
    "cpu_cores",
    "decide",
    "estimate",
    "gpu_power",
    "grams_per_hour",
    "merge_zone_map",
    "node_capacity",
    "parse_region_table",
    "plan_move",
    "power_watts",
    "with_claims",
    "with_zone_overrides",
]
