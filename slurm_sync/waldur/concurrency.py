"""Bounded concurrency for Waldur calls: one limiter per deployment (API URL) and process, and :func:`run_each`,
which runs one intent over many items through it.

Waldur is a round trip away (20-150 ms over HTTPS): a batch's calls that do not depend on each other go
out together, at most ``SLURM_SYNC_WALDUR_CONCURRENCY`` at a time, and the server is kept from harm:

- every HTTP attempt (first tries and retries) holds a slot: never more than the setting in flight;
- a 429 or 503 with Retry-After pauses every later attempt of the process for that deployment (the
  calls in flight then wait before their retry, the next ones before their first try);
- a burst of server errors (``BURST`` among the last ``WINDOW`` answers) halves the limit; each run of
  ``limit`` good answers in a row grows it by one, back up to the setting.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, List, Optional



class Limiter:
    """In-flight slots under a limit that shrinks on bursts of server errors and grows back, and a pause that
    one Retry-After sets for every call."""

    BURST, WINDOW = 3, 10

    def __init__(self, maximum: int):
        self.maximum = self.limit = max(1, maximum)
        self.in_flight = self.max_in_flight = self.shrinks = self.grows = self._good_run = 0
        self.paused_until = 0.0  # time.monotonic() before which no attempt goes out
        self._recent: deque = deque(maxlen=self.WINDOW)  # True: a server error or no answer
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight slot: waits for a free one under the current limit and for any pause."""
        with self._cond:
            while self.in_flight >= self.limit or self.paused_until > time.monotonic():
                self._cond.wait(timeout=max(0.0, self.paused_until - time.monotonic()) or None)
            self.in_flight, self.max_in_flight = self.in_flight + 1, max(self.max_in_flight, self.in_flight + 1)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def answered(self, status: int, retry_after: Optional[float] = None) -> None:
        """One answer (status 0: none came): a 429/503's Retry-After pauses everyone, a burst of errors halves
        the limit, a run of good answers grows it by one."""
        with self._cond:
            if retry_after and status in (429, 503):  # the server asks the whole deployment to slow down (capped)
                self.paused_until = max(self.paused_until, time.monotonic() + float(retry_after))
            failed = status in (0, 429) or status >= 500
            self._recent.append(failed)
            self._good_run = 0 if failed else self._good_run + 1
            if failed and sum(self._recent) >= self.BURST and self.limit > 1:
                self.limit, self.shrinks = self.limit // 2, self.shrinks + 1
                self._recent.clear()
            elif not failed and self.limit < self.maximum and self._good_run >= self.limit:
                self.limit, self.grows, self._good_run = self.limit + 1, self.grows + 1, 0
                self._cond.notify_all()

    def wait_pause(self) -> None:
        """Before a retry: wait out a pause some answer to this deployment asked for."""
        while self.paused_until > time.monotonic():
            time.sleep(self.paused_until - time.monotonic())


@functools.lru_cache(maxsize=None)
def _limiter(pid: int, api_url: str, maximum: int) -> Limiter:
    return Limiter(maximum)


def limiter_for(api_url: str, maximum: int) -> Limiter:
    """The process's limiter of one deployment (a forked child gets its own)."""
    return _limiter(os.getpid(), api_url, maximum)


def run_each(size: int, function: Callable[[Any], Any], items: Iterable[Any]) -> List[Any]:
    """``function`` over ``items`` on at most ``size`` threads, results in the items' order; the first error
    is raised once every call has finished (none is left running behind the caller's back)."""
    items = list(items)
    if size <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(size, len(items)), thread_name_prefix="waldur") as pool:
        futures = [pool.submit(function, item) for item in items]
    return [future.result() for future in futures]
