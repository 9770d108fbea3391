"""Run every benchmark in this folder: each module with a `main()` prints its own table.

`make bench` calls this. Benchmarks print figures; none asserts on time.
Pass module names to run only some: `python bench/run.py carbon_placement`.
A module that sets `IN_MAKE_BENCH = False` (fleet.py: hours at its default
sizes) runs only when named.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent, HERE.parent / "operator"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def main(argv: list[str]) -> int:
    names = argv or sorted(
        f.stem
        for f in HERE.glob("*.py")
        if f.stem not in ("run", "__init__") and not f.stem.startswith("_")
    )
    failed: list[str] = []
    for name in names:
        module = importlib.import_module(name)
        entry = getattr(module, "main", None)
        if entry is None or (not argv and not getattr(module, "IN_MAKE_BENCH", True)):
            continue
        print(f"\n##### bench/{name}.py", flush=True)
        t0 = time.perf_counter()
        rc = entry()
        print(
            f"##### bench/{name}.py done in {time.perf_counter() - t0:.1f}s (exit {rc or 0})",
            flush=True,
        )
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
