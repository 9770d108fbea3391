"""Kubernetes quantities with every suffix the API server accepts, as exact numbers.

The CRD lets any positive quantity through as a SmallModel's `cpu` (its CEL
rule is `isQuantity`), so every spelling Kubernetes knows must parse in the
renderer and in the energy estimate: once, `cpu: "1k"` passed the API server
and then made every status update of that model raise.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from smallfleet.core.placement.energy import CPU_WATTS_PER_CORE, cpu_cores, estimate
from smallfleet.core.render.quantity import parse_quantity
from smallfleet.core.spec import Resources, parse_small_model

ROOT = Path(__file__).resolve().parents[2]

# (quantity, exact value): every decimal SI suffix, every binary suffix, exponents, odd forms.
TABLE: list[tuple[str, Fraction]] = [
    ("1", Fraction(1)),
    ("1.", Fraction(1)),
    (".5", Fraction(1, 2)),
    ("+2", Fraction(2)),
    ("1.5", Fraction(3, 2)),
    ("100n", Fraction(100, 10**9)),
    ("250u", Fraction(250, 10**6)),
    ("500m", Fraction(1, 2)),
    ("1k", Fraction(1000)),
    ("1.5k", Fraction(1500)),
    ("2M", Fraction(2 * 10**6)),
    ("3G", Fraction(3 * 10**9)),
    ("4T", Fraction(4 * 10**12)),
    ("5P", Fraction(5 * 10**15)),
    ("6E", Fraction(6 * 10**18)),
    ("1Ki", Fraction(1024)),
    ("1Mi", Fraction(2**20)),
    ("1Gi", Fraction(2**30)),
    ("1Ti", Fraction(2**40)),
    ("1Pi", Fraction(2**50)),
    ("1Ei", Fraction(2**60)),
    ("0.5Gi", Fraction(2**29)),
    ("2e3", Fraction(2000)),
    ("2E3", Fraction(2000)),
    ("1e-3", Fraction(1, 1000)),
    ("12E+2", Fraction(1200)),
]


@pytest.mark.parametrize(("text", "value"), TABLE)
def test_every_kubernetes_suffix_parses_exactly(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(("text", "value"), TABLE)
def test_the_energy_estimate_reads_every_cpu_quantity(text: str, value: Fraction) -> None:
    assert cpu_cores(text) == pytest.approx(float(value))
    # The estimate a model's status carries: a CPU model's watts scale with its cores.
    watts = estimate(Resources(gpus=0, cpu=text), 1, 100.0, pue=1.0, utilisation=1.0).watts
    assert watts == pytest.approx(CPU_WATTS_PER_CORE * float(value))


def test_a_smallmodel_with_cpu_1k_parses_and_estimates() -> None:
    """The case that raised: the spec accepts "1k", so the estimate must too."""
    body = yaml.safe_load((ROOT / "examples" / "cpu-classifier.yaml").read_text())
    body["spec"]["resources"]["cpu"] = "1k"
    resources = parse_small_model(body).resources
    assert resources.cpu == "1k"
    assert estimate(resources, 1, 50.0, pue=1.0, utilisation=1.0).watts == pytest.approx(
        CPU_WATTS_PER_CORE * 1000
    )


@pytest.mark.parametrize("bad", ["", "m", "1x", "1 k", "1KiB", "1.2.3", "k1", "1e", "--1", "1mi"])
def test_what_is_not_a_quantity_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(bad)
    with pytest.raises(ValueError, match="not a quantity"):
        cpu_cores(bad)
