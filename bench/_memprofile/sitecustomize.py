"""Memory probes inside an operator process that `bench/fleet_profile.py` starts.

Python imports `sitecustomize` at start-up from the first folder of
PYTHONPATH that holds one; the profile bench puts this folder there and sets
SMALLFLEET_MEMPROFILE to an output folder, so the operator's own code carries
no hook. With the variable unset this module does nothing.

Every SMALLFLEET_MEMPROFILE_EVERY seconds (default 2) a thread appends one
line to `timeline.tsv`: time, VmRSS and VmHWM, what tracemalloc traces now
and its high since the last mark (when PYTHONTRACEMALLOC is set), and
threads. SIGUSR1 writes `marked-N.snap` (the snapshot), `marked-N-types.txt`
(live objects by type, asyncio tasks among them) and last `marked-N.txt`
(traced memory when the snapshot was taken): the bench sends it at idle,
every so often during the burst, at all Ready and once settled. Nothing is
dumped on its own: a snapshot holds the interpreter for seconds, and taking
them as memory grows would slow the operator more than tracemalloc does.
The high is reset after each dump, which builds Python objects for every
trace and would otherwise count as the operator's.

A jump is caught as it happens: every 0.1 s a thread compares VmRSS with
the last look, and when it grew by SMALLFLEET_MEMPROFILE_JUMP_MIB (default
16) or more it appends every thread's Python stack to `jumps.txt` (at most
SMALLFLEET_MEMPROFILE_JUMPS, default 20, times): who allocates in a burst
that the 2-s timeline only shows as a step.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

OUT = os.environ.get("SMALLFLEET_MEMPROFILE")


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _types(path: Path) -> None:
    """Live gc-tracked objects by type, largest counts first, and asyncio tasks not done."""
    import asyncio

    counts: Counter[str] = Counter()
    tasks = 0
    for obj in gc.get_objects():
        t = type(obj)
        counts[f"{t.__module__}.{t.__qualname__}"] += 1
        if isinstance(obj, asyncio.Task) and not obj.done():
            tasks += 1
    lines = [f"{n}\t{name}" for name, n in counts.most_common(60)]
    path.write_text(
        f"total\t{sum(counts.values())}\ntasks not done\t{tasks}\n" + "\n".join(lines) + "\n"
    )


def _dump(out: Path, name: str) -> None:
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(str(out / f"{name}.snap"))
        del snap
    _types(out / f"{name}-types.txt")
    if tracemalloc.is_tracing():
        tracemalloc.reset_peak()
    (out / f"{name}.txt").write_text(f"{traced}\n")


def _watch(out: Path, every: float) -> None:
    t0 = time.time()
    with (out / "timeline.tsv").open("a", buffering=1) as fh:
        fh.write("seconds\trss_mib\thwm_mib\ttraced_mib\ttraced_high_mib\tthreads\n")
        while True:
            traced, peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
            fh.write(
                f"{time.time() - t0:.1f}\t{_status('VmRSS'):.1f}\t{_status('VmHWM'):.1f}\t"
                f"{traced / 2**20:.1f}\t{peak / 2**20:.1f}\t{threading.active_count()}\n"
            )
            time.sleep(every)


def _jumps(out: Path, mib: float, limit: int) -> None:
    import traceback

    last = _status("VmRSS")
    written = 0
    while written < limit:
        time.sleep(0.1)
        now = _status("VmRSS")
        if now - last >= mib:
            names = {t.ident: t.name for t in threading.enumerate()}
            me = threading.get_ident()
            stacks = [
                f"--- thread {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
                for ident, frame in sys._current_frames().items()
                if ident != me
            ]
            with (out / "jumps.txt").open("a") as fh:
                fh.write(f"=== {time.time():.1f}: VmRSS {last:.1f} -> {now:.1f} MiB\n")
                fh.write("\n".join(stacks) + "\n")
            written += 1
        last = now


def _start() -> None:
    if not OUT:
        return
    out = Path(OUT)
    out.mkdir(parents=True, exist_ok=True)
    marks = iter(range(1, 1_000_000))

    def mark(signum: int, frame: FrameType | None) -> None:
        name = f"marked-{next(marks)}"
        threading.Thread(target=_dump, args=(out, name), daemon=True).start()

    signal.signal(signal.SIGUSR1, mark)
    every = float(os.environ.get("SMALLFLEET_MEMPROFILE_EVERY", "2"))
    threading.Thread(target=_watch, args=(out, every), name="memprofile", daemon=True).start()
    jump = float(os.environ.get("SMALLFLEET_MEMPROFILE_JUMP_MIB", "16"))
    limit = int(os.environ.get("SMALLFLEET_MEMPROFILE_JUMPS", "20"))
    threading.Thread(
        target=_jumps, args=(out, jump, limit), name="memprofile-jumps", daemon=True
    ).start()


if "pytest" not in sys.modules:
    _start()
