"""A month's usage per account and user, reading from SLURM only the jobs that can still change.

:class:`MonthUsage` keeps each month's settled jobs in a :class:`LedgerStore` (Redis in the worker) and asks
sacct only for the jobs since the ledger's watermark (the why and the proof are in
:mod:`slurm_sync.domain.usage_ledger`). For a subset of the offering's resources it stores nothing: the last
usage of allocations being terminated reads from the ledger (``mode="use"``), a forced resync of one resource
reads its whole month (``mode="whole"``); without a store every read is a whole month.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Callable, Iterable, List, Mapping, Optional, Protocol, Tuple

from slurm_sync.domain.components import Components
from slurm_sync.domain.months import month_window
from slurm_sync.domain.usage import UsageReport, tally, to_report
from slurm_sync.domain.usage_ledger import (MonthLedger, ReadPlan, compare_recount, fingerprint, fold, plan_reads,
                                            settled_until)
from slurm_sync.slurm.sacct import ParseStats, read_jobs

log = logging.getLogger(__name__)
Month = Tuple[int, int]


class LedgerStore(Protocol):
    def get(self, month: Month) -> Optional[MonthLedger]: ...

    def put(self, month: Month, ledger: MonthLedger) -> None:
        """Replace the month's ledger at once (never half-written)."""

    def forget(self, month: Optional[Month] = None) -> None: ...


@dataclass
class MonthRead:
    report: UsageReport
    sacct_reads: int  # sacct calls (one per distinct watermark, one for the whole month on a recount)
    rows: int  # job rows read and counted
    recount: bool  # the whole month was read
    problems: List[str] = field(default_factory=list)  # ledger entries not trusted, recount differences


class MonthUsage:
    def __init__(self, components: Components, *, tres_source: str = "alloc", tz: str = "UTC",
                 lines: Optional[Callable[[List[str]], Iterable[str]]] = None,
                 ledger: Optional[LedgerStore] = None, recount_every: timedelta = timedelta(hours=24)):
        self.components = components
        self.tres_source = tres_source
        self.tz = tz
        self.lines = lines
        self.ledger = ledger
        self.recount_every = recount_every
        self.fingerprint = fingerprint(components, tres_source)

    def read(self, month: Month, resources: Mapping[str, str], now: datetime,
             since: Mapping[str, datetime], cutoff: Optional[datetime], mode: str = "keep") -> MonthRead:
        """Usage of ``resources`` ({account: resource uuid}) in ``month``. ``cutoff``: the moment the accounting
        is proved complete up to (jobs ended before it are settled), None when not proved. ``mode``: "keep" reads
        from the ledger and stores it (a cycle of all the offering's resources), "use" reads from it and stores
        nothing, "whole" reads the whole month and leaves the ledger alone."""
        window = month_window(month[0], month[1], self.tz)
        cutoff = settled_until(cutoff, window[1])
        use_ledger = self.ledger is not None and mode != "whole"
        keep = use_ledger and mode == "keep"
        if use_ledger:
            plan = plan_reads(self.ledger.get(month), resources, window[0], now, self.fingerprint,
                              self.recount_every, window[1])
        else:
            plan = ReadPlan([(window[0], sorted(resources))] if resources else [],
                            MonthLedger(self.fingerprint, now), True)
        stats = ParseStats()
        jobs = chain.from_iterable(
            read_jobs(accounts, start, window[1], tres_source=self.tres_source, lines=self.lines, stats=stats)
            for start, accounts in plan.reads)
        check = ({a: e.watermark for a, e in plan.previous.entries.items()
                  if resources.get(a) == e.resource and window[0] <= e.watermark <= min(window[1], now)}
                 if keep and plan.previous is not None else None)
        summed = tally(jobs, window, resources, self.components, now, since,
                       settled_before=cutoff if keep else None, check_before=check)
        problems = list(plan.problems) if keep else []
        if check:
            problems += compare_recount(plan.previous, summed.checked, {a: resources[a] for a in check})
        for note in problems:
            log.warning("usage %d-%02d: %s", month[0], month[1], note)
        if keep:
            kept = fold(plan, resources, summed, cutoff, window[0])
            self.ledger.put(month, kept)  # only after the whole read: a failed sacct folds nothing
            report = to_report(window, resources, self.components, kept.seconds, summed.open)
        else:  # with mode "use", plan.ledger holds the kept sums of these accounts only
            report = to_report(window, resources, self.components,
                               *((plan.ledger.seconds,) if use_ledger else ()), summed.settled, summed.open)
        report.jobs_counted, report.jobs_ignored = summed.jobs_counted, summed.jobs_ignored
        if plan.recount and keep:
            log.info("usage %d-%02d: the whole month read (%d rows) and kept up to %s", month[0], month[1],
                     stats.records, cutoff.isoformat() if cutoff else "its start (completeness not proved)")
        return MonthRead(report, len(plan.reads), summed.jobs_counted, plan.recount, problems)
