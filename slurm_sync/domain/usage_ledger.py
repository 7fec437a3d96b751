"""A month's settled usage, kept between cycles, so a cycle reads only the jobs that can still change.

A job that ended before the *watermark* is settled: slurmdbd has its final record and its seconds inside the
month never change again. The ledger keeps, per account, the TRES-seconds of its settled jobs of the month
(:class:`~slurm_sync.domain.usage.UsageSeconds`) and the watermark they are complete up to. A cycle then asks
sacct only for ``--starttime=<watermark>``: slurmdbd selects ``time_end >= start || time_end = 0`` (22.05,
``as_mysql_jobacct_process.c``), which is exactly the jobs the ledger does NOT hold, so the month's usage is

    the ledger's settled seconds + everything that read returns, clipped to the month as before

and no job is counted twice or missed. The jobs of that read that ended before the new cutoff are folded into
the ledger and the watermark moves to the cutoff. The cutoff is a moment the accounting is proved complete up to
(:func:`slurm_sync.slurm.sdiag.accounting_complete_at`: slurmctld's queue to slurmdbd empty, minus a margin);
when that cannot be proved, nothing new is folded and the watermark stays.

A month is read whole again (a *recount*) when its ledger is missing, was made for other components or another
TRES source (the fingerprint), or is older than the recount interval: what can change a settled job's record
afterwards (``sacctmgr`` fixing runaway jobs, an archive loaded back) is then counted again within a day.
An account whose resource is not the one its entry was made for (a name reused) starts again from the month's
first second; so does an account new to the ledger (one extra sacct call, for those accounts only).

The watermark never passes the month's end: only jobs that ended inside the month are settled in its ledger. A
job still running at the month's end, or ending after it, is read again every cycle the month is reported (in
the closing days: ``--starttime`` = ``--endtime`` = the month's end, which sacct answers with exactly the jobs
that ran across it). A cutoff past the month's end therefore never asks sacct for a start after the end, and a
job that ended in the next month is never settled twice. An entry whose watermark lies outside its month (a
ledger written before this rule) is read again from the month's first second.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Dict, List, Mapping, Optional, Tuple

from slurm_sync.domain.components import Components
from slurm_sync.domain.months import aware
from slurm_sync.domain.usage import Tally, UsageSeconds


def fingerprint(components: Components, tres_source: str) -> str:
    """What the kept seconds depend on: which TRES feed which component type, and the TRES source. (Unit factors
    are applied after, so changing one needs no recount.)"""
    return json.dumps([tres_source, sorted((c.type, c.tres) for c in components if c.accounting_type == "usage")])


@dataclass
class Entry:
    """One account's settled jobs of the month: complete up to ``watermark``, for resource ``resource``."""

    resource: str
    watermark: datetime


@dataclass
class MonthLedger:
    fingerprint: str
    counted_at: datetime  # when the month was last read whole
    entries: Dict[str, Entry] = field(default_factory=dict)
    seconds: UsageSeconds = field(default_factory=UsageSeconds)

    # -- as stored: one text per account and one for the month, so a store can keep them as a hash --

    def dump(self) -> Dict[str, str]:
        fields = {"meta": json.dumps({"fingerprint": self.fingerprint, "counted_at": self.counted_at.isoformat()})}
        for account, entry in self.entries.items():
            fields[f"a:{account}"] = json.dumps({"r": entry.resource, "w": entry.watermark.isoformat(),
                                                 **self.seconds.of(account)})
        return fields

    @classmethod
    def load(cls, fields: Mapping[str, str]) -> Optional["MonthLedger"]:
        """The ledger :meth:`dump` wrote; None when there is none or it cannot be read (the month is recounted)."""
        try:
            meta = json.loads(fields["meta"])
            ledger = cls(meta["fingerprint"], aware(datetime.fromisoformat(meta["counted_at"])))
            for name, text in fields.items():
                if name.startswith("a:"):
                    data = json.loads(text)
                    account = name[2:]
                    ledger.entries[account] = Entry(data["r"], aware(datetime.fromisoformat(data["w"])))
                    ledger.seconds.put(account, data)
        except (KeyError, ValueError, TypeError, AttributeError, ArithmeticError):
            return None
        return ledger


@dataclass
class ReadPlan:
    """The sacct reads one cycle makes for a month: ``(start, accounts)`` each, and the ledger they continue."""

    reads: List[Tuple[datetime, List[str]]]
    ledger: MonthLedger
    recount: bool


def settled_until(cutoff: Optional[datetime], month_end: datetime) -> Optional[datetime]:
    """Jobs that ended before this are settled in the month's ledger: the proved cutoff, never past the month."""
    return None if cutoff is None else min(aware(cutoff), aware(month_end))


def plan_reads(ledger: Optional[MonthLedger], resources: Mapping[str, str], month_start: datetime,
               now: datetime, fingerprint_now: str, recount_every: timedelta,
               month_end: Optional[datetime] = None) -> ReadPlan:
    """Which jobs to read for the accounts in ``resources`` ({account: resource uuid}): accounts whose entry
    is valid from their watermark (one read per distinct watermark, normally one), the others from the month's
    start. ``recount_every`` 0 reads the whole month every cycle."""
    month_start, now = aware(month_start), aware(now)
    month_end = aware(month_end) if month_end is not None else None
    recount = (ledger is None or ledger.fingerprint != fingerprint_now or not recount_every
               or now - ledger.counted_at >= recount_every or ledger.counted_at > now)
    if recount:
        fresh = MonthLedger(fingerprint_now, now)
        return ReadPlan([(month_start, sorted(resources))] if resources else [], fresh, True)
    kept = MonthLedger(ledger.fingerprint, ledger.counted_at)
    groups: Dict[datetime, List[str]] = {}
    for account in sorted(resources):
        entry = ledger.entries.get(account)
        if (entry is not None and entry.resource == resources[account] and entry.watermark >= month_start
                and (month_end is None or entry.watermark <= month_end)):
            kept.entries[account] = entry
            kept.seconds.put(account, ledger.seconds.of(account))
            groups.setdefault(entry.watermark, []).append(account)
        else:
            groups.setdefault(month_start, []).append(account)
    return ReadPlan(sorted(groups.items()), kept, False)


def fold(plan: ReadPlan, resources: Mapping[str, str], summed: Tally, cutoff: Optional[datetime],
         month_start: datetime) -> MonthLedger:
    """The ledger after this cycle: every read account's settled jobs added, its watermark at ``cutoff`` (never
    back: the jobs between were not read). ``cutoff`` is :func:`settled_until` (never past the month's end) and
    ``summed`` must be tallied with ``settled_before=cutoff``; a ``cutoff`` of None (completeness not proved)
    folds nothing and keeps every watermark."""
    ledger = plan.ledger
    ledger.seconds.add_all(summed.settled)
    for start, accounts in plan.reads:
        for account in accounts:
            watermark = max(aware(start), aware(cutoff)) if cutoff is not None else aware(start)
            ledger.entries[account] = Entry(resources[account], max(watermark, aware(month_start)))
    return ledger
