"""In-memory stand-ins for the product's Redis stores (tests, benchmarks, one-off runs): the push cycle's
reported amounts (a :class:`~slurm_sync.sync.reported_store.ReportedStore`) and the usage ledger (a
:class:`~slurm_sync.sync.month_usage.LedgerStore`)."""
from __future__ import annotations

from typing import Dict, Tuple

from slurm_sync.domain.usage_ledger import MonthLedger

Month = Tuple[int, int]


class MemoryStore:
    """A ReportedStore in a dict (tests, one-off runs)."""

    def __init__(self):
        self.data: Dict[Tuple[str, Month], Tuple[Dict[str, str], Dict[str, Dict[str, str]]]] = {}
        self.states: Dict[str, str] = {}
        self.noted: set = set()

    def first_time(self, note):
        fresh = note not in self.noted
        self.noted.add(note)
        return fresh

    def state(self, resource):
        return self.states.get(resource)

    def put_state(self, resource, state):
        self.states[resource] = state

    def get(self, resource, month):
        totals, users = self.data.get((resource, month), ({}, {}))
        return dict(totals), {u: dict(v) for u, v in users.items()}

    def put(self, resource, month, totals, users):
        self.data[(resource, month)] = (dict(totals), {u: dict(v) for u, v in users.items()})

    def forget(self, resource=None, month=None):
        for key in [k for k in self.data if (resource is None or k[0] == resource) and (month is None or k[1] == month)]:
            del self.data[key]


class MemoryLedger:
    """A LedgerStore in a dict (tests, one-off runs); kept as signed text, as Redis keeps it."""

    def __init__(self, key: bytes = b""):
        self.data: Dict[Month, Dict[str, str]] = {}
        self.key = key

    def get(self, month):
        return MonthLedger.load(self.data[month], self.key) if month in self.data else None

    def put(self, month, ledger):
        self.data[month] = ledger.dump(self.key)

    def forget(self, month=None):
        for key in [k for k in self.data if month is None or k == month]:
            del self.data[key]
