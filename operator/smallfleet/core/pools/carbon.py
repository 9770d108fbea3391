"""A pool server's power and emissions, attributed to the models it holds.

One server's estimated facility power (its CPUs or GPUs, as a dedicated
server's is estimated) is split among its models in proportion to the memory
they declare: that is what sizes the server and what packing counts, and it
changes only when the server's models change. Splitting by live traffic
would be closer to the joules of each request, but it would rewrite every
model's status on every scrape; status carries nothing that changes unless
the world did.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from smallfleet.core.placement.energy import cpu_cores, grams_per_hour, power_watts
from smallfleet.core.placement.signals import CarbonReading
from smallfleet.core.pools.spec import PoolSpec


def server_watts(pool: PoolSpec, *, pue: float) -> float:
    """Estimated facility power of one server of the pool."""
    return power_watts(
        gpus_per_replica=pool.server.gpus,
        replicas=1,
        gpu_product=pool.server.gpu_product,
        cpu_cores=cpu_cores(pool.server.cpu),
        pue=pue,
    )


def shares(memory: Mapping[str, int]) -> dict[str, float]:
    """Each model's share of its server, by declared memory (equal when none declares any)."""
    total = sum(max(0, m) for m in memory.values())
    if total <= 0:
        return {name: 1.0 / len(memory) for name in memory} if memory else {}
    return {name: max(0, m) / total for name, m in memory.items()}


def model_carbon(
    watts: float, share: float, reading: CarbonReading | None, now: datetime
) -> dict[str, Any]:
    """`status.carbon` of one pooled model: its share of the server's power, and its emissions."""
    mine = watts * share
    out: dict[str, Any] = {
        "energyWatts": round(mine, 1),
        "stale": reading is None or reading.stale,
    }
    if reading is not None and reading.usable and reading.intensity is not None:
        out.update(
            provider=reading.provider,
            signalKind=reading.kind,
            observedAt=reading.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            intensity=round(reading.intensity, 1),
        )
        grams = grams_per_hour(mine, reading.intensity)
        if grams is not None:
            out["gramsCO2ePerHour"] = round(grams, 2)
    return out
