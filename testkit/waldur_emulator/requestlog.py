"""The record of calls the emulator answered, for assertions in tests."""
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str      # full path without query, e.g. "/api/marketplace-orders/"
    query: dict    # name -> list of values (parse_qs shape)
    status: int
    body: object   # the parsed JSON request body, or None


class RequestLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._records = []

    def append(self, record: RequestRecord):
        with self._lock:
            self._records.append(record)

    def clear(self):
        with self._lock:
            self._records = []

    def snapshot(self) -> list:
        with self._lock:
            return list(self._records)

    def count(self, method=None, path_contains=None) -> int:
        return sum(1 for r in self.snapshot()
                   if (method is None or r.method == method.upper())
                   and (path_contains is None or path_contains in r.path))
