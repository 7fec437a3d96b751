"""What one push cycle did: counts, and the notes an operator reads (the task returns it; metrics count it)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

Month = Tuple[int, int]
_counting = threading.Lock()


@dataclass
class PushResult:
    months: List[Month] = field(default_factory=list)
    sacct_calls: int = 0
    jobs: int = 0  # job rows read and counted
    recounted: List[Month] = field(default_factory=list)  # months read whole (no ledger, or its recount)
    usage_posts: int = 0
    user_usage_posts: int = 0
    limit_posts: int = 0
    association_posts: int = 0
    erred: List[str] = field(default_factory=list)
    recovered: List[str] = field(default_factory=list)
    anomalies: List[str] = field(default_factory=list)
    unreportable: List[str] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)  # reports Waldur refused (4xx): tried again next cycle
    ledger: List[str] = field(default_factory=list)  # ledger entries not trusted, recount differences (said, recounted)
    foreign: List[str] = field(default_factory=list)  # newly found resources whose account is not ours (said once)
    skipped_foreign: int = 0  # resources left alone this cycle: their account does not carry our mark for them
    # {resource uuid: (transient, Waldur's answer)} of the reports that did not go through
    not_accepted: Dict[str, Tuple[bool, str]] = field(default_factory=dict)
    waldur_requests: int = 0

    def add(self, counter: str, count: int) -> None:
        """A count from one of the resources posted concurrently (their notes are appended whole, atomically)."""
        with _counting:
            setattr(self, counter, getattr(self, counter) + count)
