"""Where the operator's memory goes in a burst of new SmallModels: tracemalloc inside the process.

`fleet.py` says how much memory a fleet costs; this says what holds it. On a
fresh cluster (fleet.py's, with its raised limits) it starts the operator
with tracemalloc on (SMALLFLEET_PROFILE_FRAMES frames deep, default 10;
20 slowed the operator too much to finish) and the probes of
`bench/_memprofile/sitecustomize.py`, creates N SmallModels
(SMALLFLEET_PROFILE_N, default 300) the way fleet.py does, waits until all
are Ready and some seconds more, and marks moments with SIGUSR1: idle
(before the first apply), every SMALLFLEET_PROFILE_MARK_EVERY_S (30) of the
burst, all Ready, settled. With SMALLFLEET_PROFILE_UPDATE=1 it then updates
every spec as fleet.py's update phase does (each model's config changes and
its Deployment rolls) and marks that the same way. With
SMALLFLEET_PROFILE_RESTART=1 it instead makes the N Ready under an operator
without tracemalloc, stops it and profiles a new one that finds them in
place: marks when it is healthy, after every 5 s of CPU above 10% of a core
(the dumps not counted), and settled. Then it prints, from the snapshots:

- the timeline (RSS, traced memory and its high, threads, every 2 s);
- what grew from idle to the burst's (and the update's) mark with the most
  traced memory, and from idle to the last mark, settled (what stays per
  model): by line (where the memory was allocated), by the first frame in
  smallfleet, kopf or the clients (who asked for it) and by whole stack;
- live objects by type (and asyncio tasks) at idle, that mark and settled;
- each jump of RSS (see `bench/_memprofile/sitecustomize.py`) with the
  stacks of every thread as it was seen.

tracemalloc slows allocation and doubles what each block costs, so its
times are no figures to quote (fleet.py's are); its proportions are what it
is for. SMALLFLEET_PROFILE_FRAMES=0 runs without tracemalloc (timeline and
object counts only). The snapshots stay in SMALLFLEET_PROFILE_OUT (default:
a temporary folder, removed) for `python bench/fleet_profile.py DIR`, which
prints the report again from them.

    SMALLFLEET_PROFILE_N=300 .venv/bin/python bench/run.py fleet_profile
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml

from _kube import (
    SM,
    Cluster,
    OperatorProcess,
    Watcher,
    apply_all,
    bench_nodes,
    cpu_seconds,
    fresh_cluster,
    handled,
    install_chart,
    install_crds,
    log,
    namespaces_manifest,
    ready,
    start_operator,
    workdir,
)
from fleet import (
    BENCH_NODES,
    CHUNK,
    QUIET_CPU,
    SMALLFLEET,
    WORKERS,
    cluster_config,
    node_pods,
)

IN_MAKE_BENCH: Final = False  # a diagnosis, not a figure: run it by name

N: Final = int(os.environ.get("SMALLFLEET_PROFILE_N", "300"))
FRAMES: Final = int(os.environ.get("SMALLFLEET_PROFILE_FRAMES", "10"))
OUT: Final = os.environ.get("SMALLFLEET_PROFILE_OUT", "")
CLUSTER_NAME: Final = os.environ.get("SMALLFLEET_CLUSTER_NAME", "sf-bench-profile")
LIMIT_S: Final = float(os.environ.get("SMALLFLEET_BENCH_LIMIT_S", "1800"))
SETTLE_S: Final = 20.0
MARK_EVERY_S: Final = float(os.environ.get("SMALLFLEET_PROFILE_MARK_EVERY_S", "30"))
UPDATE: Final = os.environ.get("SMALLFLEET_PROFILE_UPDATE", "") == "1"
RESTART: Final = os.environ.get("SMALLFLEET_PROFILE_RESTART", "") == "1"
RESTART_MARK_EVERY_S: Final = 5.0
STACKS: Final = 8
STACK_DEPTH: Final = 8
HOOK: Final = Path(__file__).resolve().parent / "_memprofile"
# Frames of these packages say who asked for memory (the first one from the top of the stack).
OWNERS: Final = ("/smallfleet/", "/kopf/", "/kubernetes/", "/urllib3/", "/aiohttp/", "/asyncio/")


@contextmanager
def _out() -> Iterator[Path]:
    if OUT:
        Path(OUT).mkdir(parents=True, exist_ok=True)
        yield Path(OUT)
    else:
        with tempfile.TemporaryDirectory(prefix="sf-profile-") as tmp:
            yield Path(tmp)


class Marks:
    """SIGUSR1 to the operator: its probe writes marked-K.snap; each mark is named here."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.names: list[str] = []

    def mark(self, name: str) -> None:
        self.names.append(name)
        os.kill(self.pid, signal.SIGUSR1)
        done = self.out / f"marked-{len(self.names)}.txt"  # written last
        deadline = time.monotonic() + 300
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        (self.out / "marks.txt").write_text("\n".join(self.names) + "\n")


def profile(out: Path) -> None:
    with (
        workdir("sf-profile-") as work,
        fresh_cluster(CLUSTER_NAME, work, cluster_config(work)) as cluster,
    ):
        cluster.apply_yaml(
            yaml.safe_dump_all(bench_nodes(BENCH_NODES, node_pods(N))), server_side=False
        )
        cluster.apply_yaml(namespaces_manifest(SMALLFLEET.namespaces()))
        install_crds(cluster)
        chart = install_chart(cluster)
        env = {
            "PYTHONPATH": str(HOOK),
            "SMALLFLEET_MEMPROFILE": str(out),
            **({"PYTHONTRACEMALLOC": str(FRAMES)} if FRAMES else {}),
        }
        api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig)
        )
        if RESTART:
            _restart(cluster, chart, api, work, out, env)
            return
        operator = start_operator(cluster, chart, work / "op", all_namespaces=True, env=env)
        try:
            time.sleep(5)
            marks = Marks(operator.pid, out)
            marks.mark("idle")
            _burst(
                cluster,
                api,
                operator,
                marks,
                [SMALLFLEET.make(i, SMALLFLEET.namespace(i), False) for i in range(N)],
                {"handled": handled, "ready": ready},
                ("creating", "burst", "ready"),
                lambda w: f"{w.count('handled')} handled, {w.count('ready')} Ready",
            )
            marks.mark("all Ready")
            time.sleep(SETTLE_S)
            marks.mark(f"settled ({SETTLE_S:.0f} s after all Ready)")
            if UPDATE:
                _update(cluster, api, operator, marks)
        finally:
            operator.stop()


def _restart(
    cluster: Cluster, chart: Any, api: Any, work: Path, out: Path, env: dict[str, str]
) -> None:
    """N Ready under an unprofiled operator, then a profiled one started with them in place."""
    first = start_operator(cluster, chart, work / "first", all_namespaces=True)
    try:
        docs = [SMALLFLEET.make(i, SMALLFLEET.namespace(i), False) for i in range(N)]
        with Watcher(api, SM, {"ready": ready}) as watcher:
            started = time.monotonic()
            log(f"creating {N} SmallModels (not profiled)")
            apply_all(cluster, docs, WORKERS, CHUNK, LIMIT_S)
            while watcher.count("ready") < N:
                if not first.running() or time.monotonic() - started > LIMIT_S:
                    raise RuntimeError(
                        f"{watcher.count('ready')}/{N} Ready:\n{first.log()[-3000:]}"
                    )
                time.sleep(1)
        time.sleep(SETTLE_S)
    finally:
        first.stop()
    log(f"restarting under tracemalloc ({FRAMES} frames) with {N} in place")
    operator = start_operator(cluster, chart, work / "op", all_namespaces=True, env=env)
    try:
        marks = Marks(operator.pid, out)
        started = time.monotonic()
        marks.mark("restart: healthy")
        while time.monotonic() - started < LIMIT_S:
            # CPU over a window of its own: a mark's dump would count as busy.
            t0, c0 = time.monotonic(), cpu_seconds(operator.pid)
            time.sleep(RESTART_MARK_EVERY_S)
            if not operator.running():
                raise RuntimeError(f"operator exited:\n{operator.log()[-3000:]}")
            busy = (cpu_seconds(operator.pid) - c0) / (time.monotonic() - t0)
            if busy < QUIET_CPU:
                break
            marks.mark(f"restart at {time.monotonic() - started:.0f} s: CPU {busy:.0%}")
        time.sleep(SETTLE_S)
        marks.mark(f"settled ({SETTLE_S:.0f} s after the CPU fell quiet)")
    finally:
        operator.stop()


def _burst(
    cluster: Cluster,
    api: Any,
    operator: OperatorProcess,
    marks: Marks,
    docs: list[dict[str, Any]],
    tests: dict[str, Any],
    names: tuple[str, str, str],
    counts: Callable[[Watcher], str],
) -> None:
    """Apply `docs`; mark every MARK_EVERY_S until all N pass the goal test.

    `names` are the verb for the log, the marks' prefix and the goal (a key of
    `tests`); `counts` says, from the watcher, how far the burst has got.
    """
    verb, prefix, goal = names
    with Watcher(api, SM, tests) as watcher:
        started = time.monotonic()
        log(f"{verb} {N} SmallModels under tracemalloc ({FRAMES} frames)")
        apply_all(cluster, docs, WORKERS, CHUNK, LIMIT_S)
        next_mark = time.monotonic()
        while watcher.count(goal) < N:
            if not operator.running():
                raise RuntimeError(f"operator exited:\n{operator.log()[-3000:]}")
            if time.monotonic() - started > LIMIT_S:
                raise RuntimeError(f"{watcher.count(goal)}/{N} {goal} after {LIMIT_S}s")
            if time.monotonic() >= next_mark:
                marks.mark(f"{prefix} at {time.monotonic() - started:.0f} s: {counts(watcher)}")
                next_mark = time.monotonic() + MARK_EVERY_S
            time.sleep(1)
        log(f"all {N} {goal} after {time.monotonic() - started:.1f}s (under tracemalloc)")


def _update(cluster: Cluster, api: Any, operator: OperatorProcess, marks: Marks) -> None:
    """fleet.py's update phase: every spec changes (its rendered config too), each model rolls."""
    _burst(
        cluster,
        api,
        operator,
        marks,
        [SMALLFLEET.make(i, SMALLFLEET.namespace(i), True) for i in range(N)],
        {"updated": SMALLFLEET.updated},
        ("updating", "update", "updated"),
        lambda w: f"{w.count('updated')} updated and Ready",
    )
    marks.mark("all updated")
    time.sleep(SETTLE_S)
    marks.mark(f"settled ({SETTLE_S:.0f} s after all updated)")


def _owner(frames: tracemalloc.Traceback) -> str:
    """The innermost frame in one of OWNERS' packages: who asked for the block."""
    for frame in reversed(frames):  # most recent call first
        if any(o in frame.filename for o in OWNERS):
            short = frame.filename.split("site-packages/")[-1].split("/operator/")[-1]
            return f"{short}:{frame.lineno}"
    return "?"


def _by_owner(snap: tracemalloc.Snapshot, base: tracemalloc.Snapshot, top: int) -> list[str]:
    sizes: dict[str, int] = {}
    for sign, s in ((1, snap), (-1, base)):
        for trace in s.traces:
            key = _owner(trace.traceback)
            sizes[key] = sizes.get(key, 0) + sign * trace.size
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return [f"  {size / 2**20:8.2f} MiB  {key}" for key, size in ranked]


def _growth(name: str, snap: Path, base: Path, top: int = 25) -> list[str]:
    if not snap.exists() or not base.exists():
        return [f"{name}: no snapshot (tracemalloc off?)"]
    a, b = tracemalloc.Snapshot.load(str(snap)), tracemalloc.Snapshot.load(str(base))
    grown = sum(t.size for t in a.traces) - sum(t.size for t in b.traces)
    lines = [f"### {name}: {grown / 2**20:.1f} MiB traced more than idle", "", "by line:"]
    for stat in a.compare_to(b, "lineno")[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/operator/")[-1]
        lines.append(
            f"  {stat.size_diff / 2**20:8.2f} MiB {stat.count_diff:+9d} blocks  {where}:{frame.lineno}"
        )
    lines += ["", "by the first frame in smallfleet, kopf, the clients or asyncio:"]
    lines += _by_owner(a, b, top)
    lines += ["", "largest whole stacks (most recent call last):"]
    for stat in a.compare_to(b, "traceback")[:STACKS]:
        lines.append(f"  {stat.size_diff / 2**20:.2f} MiB {stat.count_diff:+d} blocks")
        for frame in list(stat.traceback)[-STACK_DEPTH:]:
            where = frame.filename.split("site-packages/")[-1].split("/operator/")[-1]
            lines.append(f"      {where}:{frame.lineno}")
    return [*lines, ""]


def report(out: Path) -> None:
    print(f"\n## Operator memory profile: {N} SmallModels, tracemalloc {FRAMES} frames\n")
    timeline = out / "timeline.tsv"
    if timeline.exists():
        print("```\n" + timeline.read_text().strip() + "\n```\n")
    jumps = out / "jumps.txt"
    if jumps.exists():
        print("### RSS jumps, with every thread's stack as each was seen\n")
        print("```\n" + jumps.read_text().strip() + "\n```\n")
    names = (out / "marks.txt").read_text().splitlines() if (out / "marks.txt").exists() else []
    traced = {}
    for k, name in enumerate(names, 1):
        info = out / f"marked-{k}.txt"
        if info.exists():
            traced[k] = int(info.read_text().split()[0])
            print(f"- mark {k}: {name}: {traced[k] / 2**20:.1f} MiB traced")
    print()
    if not traced:
        return
    idle = out / "marked-1.snap"
    highs = []
    for phase in ("burst", "update", "restart at"):
        during = [k for k in traced if names[k - 1].startswith(phase)]
        if during:
            highs.append(max(during, key=lambda k: traced[k]))
    last = max(traced)
    for k in [*highs, last]:
        for line in _growth(f"mark {k}, {names[k - 1]}", out / f"marked-{k}.snap", idle):
            print(line)
    for k in sorted({1, *highs, last}):
        types = out / f"marked-{k}-types.txt"
        if types.exists():
            rows = types.read_text().splitlines()[:32]
            print(
                f"### live objects by type: mark {k}, {names[k - 1]}\n\n```\n"
                + "\n".join(rows)
                + "\n```\n"
            )


def main() -> int:
    with _out() as out:
        try:
            profile(out)
        finally:
            report(out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        report(Path(sys.argv[1]))
    else:
        sys.exit(main())
