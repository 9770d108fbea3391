"""The reconcile queue: a key waits once, is never worked on twice at a time, and is not lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from smallfleet.control.facts import Key, StaticFacts
from smallfleet.control.reconcile import Reconciler
from smallfleet.control.runtime import MAX_BACKOFF_SECONDS, STANDBY_RETRY_SECONDS, Runtime
from smallfleet.control.workqueue import WorkQueue
from smallfleet.kube import Kube, Rejected, Transient
from smallfleet.settings import Settings
from smallfleet.telemetry import REGISTRY


def key(name: str) -> Key:
    return ("SmallModel", "ns", name)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the queue did not get there in time"
        time.sleep(0.005)


class Recorder:
    """Work that records each call, checks no key is worked on twice at once, and may fail."""

    def __init__(self, answers: dict[Key, list[float | None]] | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Key, bool]] = []
        self.active: set[Key] = set()
        self.overlaps = 0
        self.answers = answers or {}
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, k: Key, once: bool) -> float | None:
        with self.lock:
            if k in self.active:
                self.overlaps += 1
            self.active.add(k)
            self.calls.append((k, once))
        self.gate.wait(10)
        time.sleep(0.001)
        with self.lock:
            self.active.discard(k)
            queued = self.answers.get(k)
            return queued.pop(0) if queued else None


def started(work: Recorder, threads: int = 4) -> WorkQueue:
    q = WorkQueue(work, threads)
    q.start()
    return q


def test_a_key_added_many_times_while_waiting_is_worked_on_once() -> None:
    work = Recorder()
    q = WorkQueue(work, 4)
    for _ in range(50):
        q.add(key("a"))
    q.add(key("b"))
    assert len(q) == 2
    q.start()
    wait_for(lambda: len(work.calls) == 2 and len(q) == 0 and q.busy() == 0)
    q.stop()
    assert sorted(k for k, _ in work.calls) == [key("a"), key("b")]


def test_once_holds_only_while_every_add_asked_for_it() -> None:
    work = Recorder()
    q = WorkQueue(work, 1)
    q.add(key("a"), once=True)
    q.add(key("a"), once=False)
    q.add(key("b"), once=True)
    q.add(key("b"), once=True)
    q.start()
    wait_for(lambda: len(work.calls) == 2)
    q.stop()
    assert dict(work.calls) == {key("a"): False, key("b"): True}


def test_a_key_added_while_worked_on_is_taken_again_after_not_at_once() -> None:
    work = Recorder()
    work.gate.clear()
    q = started(work)
    q.add(key("a"))
    wait_for(lambda: q.busy() == 1)
    q.add(key("a"))
    q.add(key("a"))
    time.sleep(0.05)
    assert len(work.calls) == 1  # the second waits for the first
    work.gate.set()
    wait_for(lambda: len(work.calls) == 2 and q.busy() == 0)
    time.sleep(0.05)
    q.stop()
    assert len(work.calls) == 2
    assert work.overlaps == 0


def test_failed_work_comes_back_after_its_delay_and_stops_once_done() -> None:
    work = Recorder({key("a"): [0.05, 0.05, None]})
    q = started(work)
    q.add(key("a"))
    wait_for(lambda: len(work.calls) == 3 and q.busy() == 0)
    time.sleep(0.15)
    q.stop()
    assert len(work.calls) == 3


def test_news_during_a_backoff_brings_the_retry_forward() -> None:
    work = Recorder({key("a"): [3600.0, None]})
    q = started(work)
    q.add(key("a"))
    wait_for(lambda: len(work.calls) == 1 and q.busy() == 0)
    q.add(key("a"))
    wait_for(lambda: len(work.calls) == 2)
    q.stop()


def test_work_that_raises_is_retried_and_the_thread_survives() -> None:
    calls: list[Key] = []

    def work(k: Key, once: bool) -> float | None:
        calls.append(k)
        if len(calls) == 1:
            raise ValueError("a bug")
        return None

    q = WorkQueue(work, 1)
    q.start()
    q.add(key("a"))
    wait_for(lambda: len(calls) == 2, timeout=15)
    q.add(key("b"))
    wait_for(lambda: len(calls) == 3)
    q.stop()


def test_stop_ends_every_thread() -> None:
    q = started(Recorder(), threads=3)
    q.stop()
    assert not any(t.is_alive() for t in q._workers)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=60,
    )
)
def test_from_many_threads_no_overlap_and_every_add_is_followed_by_work(
    adds: list[tuple[str, bool, int]],
) -> None:
    """Whatever the interleaving: no key twice at once, and each key's last add is served."""
    work = Recorder()
    q = started(work, threads=3)
    last_add: dict[Key, int] = {}
    lock = threading.Lock()

    def producer(part: list[tuple[str, bool, int]]) -> None:
        for name, once, pause in part:
            with lock:
                last_add[key(name)] = len(work.calls)  # before the add: no call is missed
                q.add(key(name), once=once)
            time.sleep(pause / 1000)

    threads = [threading.Thread(target=producer, args=(adds[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(q) == 0 and q.busy() == 0)
    q.stop()
    assert work.overlaps == 0
    for k, calls_before in last_add.items():
        # A call of `k` started after its last add (the add was recorded before any later call).
        assert any(c == k for c, _ in work.calls[calls_before:]), k


def test_the_runtime_backs_off_each_failure_in_a_row_and_forgets_them_on_success() -> None:
    reconciler = Reconciler(Kube(None), Settings(), StaticFacts())
    runtime = Runtime(reconciler=reconciler)
    outcomes: list[BaseException | None] = [
        Transient(503, "busy"),
        Transient(503, "busy"),
        Transient(429, "slow down"),
        None,
        Rejected(422, "refused"),
        ValueError("a bug"),
        None,
    ]

    def reconcile_named(*_: object, once: bool = False) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    reconciler.reconcile_named = reconcile_named  # type: ignore[method-assign]
    delays = [runtime.reconcile_key(key("a"), False) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, None, MAX_BACKOFF_SECONDS, 2.0, None]
    assert runtime.failures == {}
    runtime.leading = lambda: False
    assert runtime.reconcile_key(key("a"), False) == STANDBY_RETRY_SECONDS


def test_the_queue_depth_gauge_counts_waiting_keys() -> None:
    runtime = Runtime(reconciler=Reconciler(Kube(None), Settings(), StaticFacts()))
    runtime.leading = lambda: False  # keeps what it takes waiting
    runtime.start_queue(1)
    assert runtime.queue is not None
    runtime.queue.stop()
    for name in ("a", "b", "a"):
        runtime.enqueue(key(name))
    assert REGISTRY.get_sample_value("smallfleet_reconcile_queue_depth") == 2


def test_child_news_refreshes_each_owner_once_and_leaves_a_failure_to_the_resync() -> None:
    reconciler = Reconciler(Kube(None), Settings(), StaticFacts())
    refreshed: list[tuple[str, str, str]] = []
    gate = threading.Event()

    def refresh(kind: str, namespace: str, name: str, **_: object) -> None:
        gate.wait(10)
        refreshed.append((kind, namespace, name))
        if name == "bad":
            raise Transient(503, "busy")

    reconciler.refresh = refresh  # type: ignore[method-assign,assignment]
    runtime = Runtime(reconciler=reconciler)
    runtime.start_queue(1, refresh_threads=1)
    runtime.indices_complete()
    for _ in range(20):
        runtime.refresh_soon(key("a"))
        runtime.refresh_soon(key("bad"))
    gate.set()
    assert runtime.refreshes is not None
    queue = runtime.refreshes
    wait_for(lambda: len(refreshed) >= 2 and queue.busy() == 0 and len(queue) == 0)
    time.sleep(0.05)
    runtime.stop_queues()
    # Twenty adds each: `a` once, or twice when the first was taken before the others came.
    assert refreshed.count(key("a")) in (1, 2)
    assert refreshed.count(key("bad")) == 1  # no retry loop: the resync retries


def test_keys_wait_for_the_indices_and_so_do_the_periodic_passes() -> None:
    """Until every watched kind is indexed a plan would see part of the fleet: nothing runs."""
    reconciler = Reconciler(Kube(None), Settings(), StaticFacts())
    reconciled: list[tuple[str, str, str]] = []
    passes: list[float] = []
    reconciler.reconcile_named = lambda *k, once=False: reconciled.append(k)  # type: ignore[method-assign,assignment,misc]
    runtime = Runtime(reconciler=reconciler)
    asked: list[float] = []
    runtime.leading = lambda: asked.append(time.monotonic()) is None  # a standby says so too
    runtime.start_queue(2, refresh_threads=1)
    runtime.every(0.0, lambda: passes.append(time.monotonic()), "probe")
    periodic = threading.Thread(target=runtime.run_periodic, daemon=True)
    periodic.start()
    runtime.enqueue(key("a"))
    runtime.enqueue(key("b"), once=True)
    time.sleep(1.5)
    assert reconciled == [] and passes == []
    assert asked  # leadership is still looked at (and logged) while the indices fill
    assert runtime.queue is not None and len(runtime.queue) == 2
    runtime.indices_complete()
    wait_for(lambda: len(reconciled) == 2 and bool(passes))
    assert sorted(reconciled) == [key("a"), key("b")]
    runtime.indices_complete()  # again (a second gate): the threads are not started twice
    assert len(runtime.queue._workers) == 2
    runtime.stop.set()
    runtime.stop_queues()
    periodic.join(5)
    assert not periodic.is_alive()


def test_queues_made_after_the_indices_are_complete_start_at_once() -> None:
    """kopf could not be wrapped: every owner waits at kopf's gate, so the queue need not."""
    reconciler = Reconciler(Kube(None), Settings(), StaticFacts())
    reconciled: list[tuple[str, str, str]] = []
    reconciler.reconcile_named = lambda *k, once=False: reconciled.append(k)  # type: ignore[method-assign,assignment,misc]
    runtime = Runtime(reconciler=reconciler)
    runtime.indices_complete()
    runtime.start_queue(1, refresh_threads=1)
    runtime.enqueue(key("a"))
    wait_for(lambda: reconciled == [key("a")])
    runtime.stop_queues()
