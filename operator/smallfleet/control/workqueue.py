"""The reconcile queue: keys, not events, each waiting at most once, drained by a fixed pool.

kopf gives each object a worker that holds its event's body until a handler
thread is free. In a burst of thousands of new models that backlog, not the
fleet, was most of the operator's memory, and a model updated twice while
waiting was reconciled twice. The handlers now only put the object's key
here and return; a fixed set of threads takes the keys and reconciles each
from the freshest body the watch holds (`Reconciler.body`). This is the
work queue of Kubernetes' own controllers (client-go's `workqueue`):

- a key waits at most once: adding one that waits already changes nothing
  but its mode (`once` holds only while every add asked for it) and its
  due time (the earlier);
- a key is never worked on by two threads: one added while it is being
  worked on is taken again once that work is done;
- work that fails transiently comes back after a delay that doubles with
  each failure in a row (1 s to 60 s), as kopf's retries did.

The queue's memory is one small entry per waiting key, whatever the burst.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from smallfleet.control.facts import Key

log = logging.getLogger("smallfleet.queue")

# What a piece of work answers: None when done, else seconds until it is to be tried again.
Work = Callable[[Key, bool], "float | None"]
IDLE_WAIT_SECONDS: Final = 1.0


@dataclass
class _Entry:
    due: float
    once: bool


class WorkQueue:
    """Keys to reconcile, each waiting at most once and never worked on twice at a time."""

    def __init__(
        self,
        work: Work,
        threads: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "smallfleet-reconcile",
    ) -> None:
        self.work = work
        self.threads = threads
        self.clock = clock
        self.name = name
        self._cond = threading.Condition()
        self._waiting: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, int, Key]] = []  # (due, order, key); stale items skipped
        self._order = itertools.count()
        self._busy: set[Key] = set()
        self._again: dict[Key, _Entry] = {}  # added while busy: taken once the work is done
        self._stopped = False
        self._workers: list[threading.Thread] = []

    # -- the producer side (kopf's handlers, on its event loop) ----------------------------------

    def add(self, key: Key, *, once: bool = False, after: float = 0.0) -> None:
        """Reconcile `key` (no sooner than `after` seconds from now), unless it already waits."""
        due = self.clock() + after
        with self._cond:
            if key in self._busy:
                self._merge(self._again, key, due, once)
                return
            if self._merge(self._waiting, key, due, once):
                heapq.heappush(self._heap, (self._waiting[key].due, next(self._order), key))
                self._cond.notify()

    @staticmethod
    def _merge(entries: dict[Key, _Entry], key: Key, due: float, once: bool) -> bool:
        """Add or fold into `entries`; True when the key's due time is new or earlier."""
        found = entries.get(key)
        if found is None:
            entries[key] = _Entry(due, once)
            return True
        found.once = found.once and once
        if due < found.due:
            found.due = due
            return True
        return False

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting) + len(self._again)

    def busy(self) -> int:
        with self._cond:
            return len(self._busy)

    # -- the workers -----------------------------------------------------------------------------

    def started(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        """Start the threads; keys added before wait until then."""
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking keys; wait up to `timeout` for the work in hand."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _take(self) -> tuple[Key, bool] | None:
        with self._cond:
            while not self._stopped:
                now = self.clock()
                while self._heap:
                    due, _, key = self._heap[0]
                    entry = self._waiting.get(key)
                    if entry is None or entry.due != due:
                        heapq.heappop(self._heap)  # taken already, or moved earlier
                        continue
                    if due > now:
                        break
                    heapq.heappop(self._heap)
                    del self._waiting[key]
                    self._busy.add(key)
                    return key, entry.once
                wait = self._heap[0][0] - now if self._heap else IDLE_WAIT_SECONDS
                self._cond.wait(min(max(wait, 0.0), IDLE_WAIT_SECONDS))
            return None

    def _done(self, key: Key, retry_after: float | None) -> None:
        with self._cond:
            self._busy.discard(key)
            again = self._again.pop(key, None)
            if again is not None:
                # New news came while it was worked on: take it again now, at its own time.
                due, once = again.due, again.once
            elif retry_after is not None:
                due, once = self.clock() + retry_after, False
            else:
                return
            if self._merge(self._waiting, key, due, once):
                heapq.heappush(self._heap, (self._waiting[key].due, next(self._order), key))
            self._cond.notify()

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            key, once = taken
            retry_after: float | None = None
            try:
                retry_after = self.work(key, once)
            except Exception:  # the work reports its own failures; one more must not kill a thread
                log.exception("reconcile of %s %s/%s failed", *key)
                retry_after = IDLE_WAIT_SECONDS
            finally:
                self._done(key, retry_after)
