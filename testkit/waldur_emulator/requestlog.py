"""The record of calls the emulator answered, for assertions in tests, and how many were in flight at once."""
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str      # full path without query, e.g. "/api/marketplace-orders/"
    query: dict    # name -> list of values (parse_qs shape)
    status: int
    body: object   # the parsed JSON request body, or None
    arrived: float = 0.0   # time.monotonic() when the call came in
    answered: float = 0.0  # time.monotonic() when it was answered (0: dropped)


class RequestLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._records = []
        self.in_flight = 0
        self.max_in_flight = 0  # most calls being handled at once since the last clear()

    def enter(self) -> float:
        """A call came in; returns its arrival time."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.monotonic()

    def leave(self):
        with self._lock:
            self.in_flight -= 1

    def append(self, record: RequestRecord):
        with self._lock:
            self._records.append(record)

    def clear(self):
        with self._lock:
            self._records = []
            self.max_in_flight = self.in_flight

    def snapshot(self) -> list:
        with self._lock:
            return list(self._records)

    def count(self, method=None, path_contains=None) -> int:
        return sum(1 for r in self.snapshot()
                   if (method is None or r.method == method.upper())
                   and (path_contains is None or path_contains in r.path))
