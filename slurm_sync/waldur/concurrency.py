"""Bounded concurrency for Waldur calls: one limiter per deployment (API URL) and process, and an executor
that runs a list of intents through it.

Waldur is a round trip away (20-150 ms over HTTPS): a batch's calls that do not depend on each other go
out together, at most ``SLURM_SYNC_WALDUR_CONCURRENCY`` at a time, and the server is kept from harm:

- every HTTP attempt (first tries and retries) holds a slot: never more than the setting in flight;
- a 429 or 503 with Retry-After pauses every later attempt of the process for that deployment (the
  calls in flight then wait before their retry, the next ones before their first try);
- a burst of server errors (``BURST`` among the last ``WINDOW`` answers) halves the limit; each run of
  ``limit`` good answers in a row grows it by one, back up to the setting.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")
PAUSE_CAP = 30.0  # seconds: as the retries' own cap on Retry-After


class Limiter:
    """In-flight slots with a limit that shrinks on bursts of server errors and grows back, and a pause that a
    Retry-After sets for everyone."""

    BURST, WINDOW = 3, 10

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic):
        if maximum < 1:
            raise ValueError("the concurrency is at least 1")
        self.maximum = self.limit = maximum
        self.clock = clock
        self.in_flight = self.max_in_flight = 0
        self.paused_until = 0.0
        self.shrinks = self.grows = self.pauses = 0
        self._recent: deque = deque(maxlen=self.WINDOW)  # True: a server error or no answer
        self._good_run = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight slot: waits for a free one under the current limit and for any pause."""
        with self._cond:
            while True:
                wait = self.paused_until - self.clock()
                if wait <= 0 and self.in_flight < self.limit:
                    break
                self._cond.wait(timeout=wait if wait > 0 else None)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def answered(self, status: int, retry_after: Optional[float] = None) -> None:
        """One answer (status 0: none came). A 429/503's Retry-After pauses everyone; errors may shrink the
        limit, good answers grow it back."""
        with self._cond:
            if retry_after and status in (429, 503):
                self.paused_until = max(self.paused_until, self.clock() + min(float(retry_after), PAUSE_CAP))
                self.pauses += 1
            failed = status == 0 or status == 429 or status >= 500
            self._recent.append(failed)
            if failed:
                self._good_run = 0
                if sum(self._recent) >= self.BURST and self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self.shrinks += 1
                    self._recent.clear()
                return
            self._good_run += 1
            if self.limit < self.maximum and self._good_run >= self.limit:
                self.limit += 1
                self.grows += 1
                self._good_run = 0
                self._cond.notify_all()

    def wait_pause(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Before a retry: wait out a pause some answer to this deployment asked for."""
        while True:
            with self._cond:
                wait = self.paused_until - self.clock()
            if wait <= 0:
                return
            sleep(wait)


_limiters: Dict[Tuple[str, int], Limiter] = {}
_limiters_pid = os.getpid()
_limiters_lock = threading.Lock()


def limiter_for(api_url: str, maximum: int) -> Limiter:
    """The process's limiter of one deployment (a forked child gets fresh ones)."""
    global _limiters_pid
    with _limiters_lock:
        if _limiters_pid != os.getpid():
            _limiters.clear()
            _limiters_pid = os.getpid()
        key = (api_url, maximum)
        if key not in _limiters:
            _limiters[key] = Limiter(maximum)
        return _limiters[key]


class CallRunner:
    """Runs one function over many items on at most ``size`` threads, results in the items' order. The first
    error is raised once every call has finished (none is left running behind the caller's back). A call
    made from one of its own threads runs the items one after another (no pool waits on itself)."""

    def __init__(self, size: int):
        self.size = size
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pid = 0
        self._lock = threading.Lock()
        self._inside = threading.local()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # threads do not survive a fork
                self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="waldur")
                self._pid = os.getpid()
            return self._pool

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> List[R]:
        items = list(items)
        if self.size <= 1 or len(items) <= 1 or getattr(self._inside, "active", False):
            return [function(item) for item in items]

        def run(item: T) -> R:
            self._inside.active = True
            try:
                return function(item)
            finally:
                self._inside.active = False

        futures = [self._executor().submit(run, item) for item in items]
        results: List[R] = []
        error: Optional[BaseException] = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as failed:  # noqa: BLE001 - raised below, after the others finished
                error = error or failed
                results.append(None)  # type: ignore[arg-type]
        if error is not None:
            raise error
        return results
