"""Power and emissions estimates for a placed model, from a documented table.

Grams of CO2e per hour are what make a placement decision legible to a model
owner, so status and the Prometheus gauges show them. They are estimates:
power = idle + (saturated - idle) x utilisation, per GPU, times GPUs, times
the data centre's PUE; emissions = power x grid intensity.

Saturated power is the vendor's board power (TDP) from NVIDIA's product
datasheets. Idle power is the figure an idle board reports through NVML at
its lowest performance state. The H100 SXM figures are measured (Triton
serving a MiniLM-class encoder on an H100 SXM 80GB: ~114 W idle, ~690 W
saturated); the other idle figures are typical NVML readings and are marked
as estimates. When Triton reports no GPU utilisation, a default of
30% is used: small models rarely saturate a GPU, and the figure errs high of
the 10-20% typical for such fleets rather than low.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from smallfleet.core.render.quantity import parse_quantity
from smallfleet.core.spec import Resources

DEFAULT_UTILISATION: Final = 0.30
# A CPU model's share: watts per requested core at full load, above the
# node's own idle draw (about 10 W per core for current server CPUs: a 64-core
# part of ~280 W TDP gives 4.4 W/core at the socket, doubled for memory,
# fans and power-supply losses).
CPU_WATTS_PER_CORE: Final = 10.0


@dataclass(frozen=True)
class GpuPower:
    product: str
    idle_watts: float
    max_watts: float
    source: str


GPU_POWER: Final[tuple[GpuPower, ...]] = (
    GpuPower(
        "H100-SXM",
        114.0,
        690.0,
        "measured: Triton serving a MiniLM-class encoder on H100 SXM 80GB (TDP 700 W, NVIDIA datasheet)",
    ),
    GpuPower("H200", 120.0, 700.0, "NVIDIA H200 SXM datasheet TDP 700 W; idle estimate from H100"),
    GpuPower("H100-PCIE", 60.0, 350.0, "NVIDIA H100 PCIe datasheet 350 W; idle estimate"),
    GpuPower("A100-SXM", 55.0, 400.0, "NVIDIA A100 SXM4 datasheet 400 W; idle estimate"),
    GpuPower("A100-PCIE", 35.0, 300.0, "NVIDIA A100 80GB PCIe datasheet 300 W; idle estimate"),
    GpuPower("L40S", 35.0, 350.0, "NVIDIA L40S datasheet 350 W; idle estimate"),
    GpuPower("A10G", 25.0, 150.0, "NVIDIA A10 datasheet 150 W (AWS A10G); idle estimate"),
    GpuPower("A10", 25.0, 150.0, "NVIDIA A10 datasheet 150 W; idle estimate"),
    GpuPower("L4", 16.0, 72.0, "NVIDIA L4 datasheet 72 W; idle estimate"),
    GpuPower("T4", 10.0, 70.0, "NVIDIA T4 datasheet 70 W; idle estimate"),
)
DEFAULT_GPU: Final = GpuPower(
    "unknown", 60.0, 350.0, "unknown product: a mid-range data-centre GPU is assumed"
)


def gpu_power(product: str | None) -> GpuPower:
    """Match a node label such as `NVIDIA-H100-80GB-HBM3` or `Tesla-T4` to the table."""
    if not product:
        return DEFAULT_GPU
    p = product.upper().replace("_", "-")
    if "H100" in p:
        return _by_name("H100-PCIE" if "PCIE" in p else "H100-SXM")
    if "A100" in p:
        return _by_name("A100-PCIE" if "PCIE" in p else "A100-SXM")
    for g in GPU_POWER:
        token = g.product.split("-")[0]
        if token in p.split("-") or token in p:
            return g
    return DEFAULT_GPU


def _by_name(name: str) -> GpuPower:
    for g in GPU_POWER:
        if g.product == name:
            return g
    return DEFAULT_GPU


def power_watts(
    *,
    gpus_per_replica: int,
    replicas: int,
    gpu_product: str | None = None,
    utilisation: float | None = None,
    cpu_cores: float = 1.0,
    pue: float = 1.2,
) -> float:
    """Facility power drawn for the model: per-GPU idle + dynamic share, or per-core for CPU models."""
    u = DEFAULT_UTILISATION if utilisation is None else min(1.0, max(0.0, utilisation))
    if gpus_per_replica <= 0:
        device = CPU_WATTS_PER_CORE * max(0.0, cpu_cores) * u
        return device * max(0, replicas) * pue
    g = gpu_power(gpu_product)
    per_gpu = g.idle_watts + (g.max_watts - g.idle_watts) * u
    return per_gpu * gpus_per_replica * max(0, replicas) * pue


def cpu_cores(quantity: str) -> float:
    """Kubernetes CPU quantity ("500m", "2", "1.5", "1k", "2e3") as cores.

    The one quantity parser of the renderer, so that every suffix the API
    server accepts for a SmallModel's CPU is a number here too: a spelling the
    schema lets through must never turn a model's status update into an error.
    """
    return float(parse_quantity(quantity))


def grams_per_hour(watts: float, intensity_g_per_kwh: float | None) -> float | None:
    """gCO2e per hour at `intensity`; None when the intensity is unknown."""
    if intensity_g_per_kwh is None or intensity_g_per_kwh <= 0:
        return None
    return watts / 1000.0 * intensity_g_per_kwh


@dataclass(frozen=True)
class Estimate:
    watts: float
    grams_per_hour: float | None  # None when the region's intensity is unknown


def estimate(
    resources: Resources,
    replicas: int,
    intensity_g_per_kwh: float | None,
    *,
    pue: float,
    utilisation: float | None = None,
) -> Estimate:
    """Power and emissions of one model in one region: the numbers for status and the gauges.

    `utilisation` is Triton's GPU utilisation (0-1) when known. Sum the
    results over a model's regions for its total, and over models for the fleet.
    """
    watts = power_watts(
        gpus_per_replica=resources.gpus,
        replicas=replicas,
        gpu_product=resources.gpu_product,
        utilisation=utilisation,
        cpu_cores=cpu_cores(resources.cpu),
        pue=pue,
    )
    return Estimate(watts, grams_per_hour(watts, intensity_g_per_kwh))
