"""Usage of a billing window in Waldur units, from accounting rows: pure, no I/O.

For each job: TRES amount x seconds it ran inside the window, summed per (account, component)
and per (account, user, component), then divided once by ``60 * unit_factor``. Keeping
TRES-seconds (exact: integer seconds times the Decimal amount) until that single division means
splitting a job across months, or summing many short jobs, never loses a fraction. Amounts stay
unrounded here; :func:`to_wire` rounds once, when they are sent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any, Container, Dict, Iterable, Mapping, Optional, Tuple

from slurm_sync.domain.months import aware
from slurm_sync.domain.components import Components
from slurm_sync.domain.slurm_objects import JobRecord

log = logging.getLogger(__name__)

# Enough digits that the one division per amount is exact to far below a cent.
_PRECISION = Context(prec=60)
_CENT = Decimal("0.01")


class UsageSeconds:
    """TRES-seconds (amount x seconds, exact Decimals) per account and component type, and per account, user
    and type: what jobs add up to before the one division into Waldur units. Sums of disjoint sets of jobs
    add up exactly, so a month's settled jobs can be kept (:mod:`slurm_sync.domain.usage_ledger`) and the
    jobs read since added to them."""

    def __init__(self):
        self.totals: Dict[str, Dict[str, Decimal]] = {}
        self.users: Dict[str, Dict[str, Dict[str, Decimal]]] = {}

    def add(self, account: str, user: str, type_: str, amount: Decimal) -> None:
        totals = self.totals.setdefault(account, {})
        totals[type_] = totals.get(type_, Decimal(0)) + amount
        per_user = self.users.setdefault(account, {}).setdefault(user, {})
        per_user[type_] = per_user.get(type_, Decimal(0)) + amount

    def add_all(self, other: "UsageSeconds", only: Optional[Container[str]] = None) -> "UsageSeconds":
        """Add ``other``'s sums (of ``only`` these accounts); returns self."""
        with localcontext(_PRECISION):
            for account, amounts in other.totals.items():
                if only is not None and account not in only:
                    continue
                for type_, amount in amounts.items():
                    totals = self.totals.setdefault(account, {})
                    totals[type_] = totals.get(type_, Decimal(0)) + amount
                for user, by_type in other.users.get(account, {}).items():
                    per_user = self.users.setdefault(account, {}).setdefault(user, {})
                    for type_, amount in by_type.items():
                        per_user[type_] = per_user.get(type_, Decimal(0)) + amount
        return self

    def of(self, account: str) -> Dict[str, Any]:
        """One account's sums as JSON-ready text: {"t": {type: "seconds"}, "u": {user: {type: "seconds"}}}."""
        return {"t": {k: str(v) for k, v in self.totals.get(account, {}).items()},
                "u": {u: {k: str(v) for k, v in by_type.items()} for u, by_type in self.users.get(account, {}).items()}}

    def put(self, account: str, data: Mapping[str, Any]) -> None:
        """Set one account's sums from :meth:`of`'s form (exact: Decimal text)."""
        self.totals.pop(account, None)
        self.users.pop(account, None)
        if data.get("t"):
            self.totals[account] = {k: Decimal(v) for k, v in data["t"].items()}
        if data.get("u"):
            self.users[account] = {u: {k: Decimal(v) for k, v in by_type.items()} for u, by_type in data["u"].items()}

    def __eq__(self, other):
        return isinstance(other, UsageSeconds) and self.totals == other.totals and self.users == other.users


@dataclass
class Tally:
    """Jobs summed in two parts: ``settled`` (ended before the given moment: they can never change again) and
    ``open`` (running, or ended since)."""

    settled: UsageSeconds = field(default_factory=UsageSeconds)
    open: UsageSeconds = field(default_factory=UsageSeconds)
    checked: UsageSeconds = field(default_factory=UsageSeconds)  # jobs ended before their account's check moment
    jobs_counted: int = 0
    jobs_ignored: int = 0  # rows of accounts outside the mapping


@dataclass
class UsageReport:
    """Usage of one window, in Waldur units (unrounded Decimals).

    ``totals[account][type]`` and ``per_user[account][user][type]``; every account in the
    account -> resource mapping has a ``totals`` entry with every configured component type,
    zero when nothing ran, so a month that went quiet is reported as 0 and not left stale.
    """

    window: Tuple[datetime, datetime]
    resources: Mapping[str, str]  # account -> Waldur resource uuid
    totals: Dict[str, Dict[str, Decimal]] = field(default_factory=dict)
    per_user: Dict[str, Dict[str, Dict[str, Decimal]]] = field(default_factory=dict)
    jobs_counted: int = 0
    jobs_ignored: int = 0  # rows of accounts outside the mapping


def tally(
    jobs: Iterable[JobRecord],
    window: Tuple[datetime, datetime],
    accounts: Container[str],
    components: Components,
    now: datetime,
    since: Optional[Mapping[str, datetime]] = None,
    settled_before: Optional[datetime] = None,
    check_before: Optional[Mapping[str, datetime]] = None,
) -> Tally:
    """Sum the TRES-seconds the jobs of ``accounts`` ran inside ``window`` = (start, end exclusive).

    ``since`` gives an account the moment its resource was created: time before it belongs to an earlier
    allocation that had the same account name (terminated, its name free again) and is not this one's.
    A job still running (``end`` None) counts up to ``now``. Times are clipped to the window here (sacct
    runs without ``--truncate``, which slows slurmdbd 13x). A job that ended before ``settled_before`` goes to
    ``settled``, every other one to ``open``; one that ended before its account's ``check_before`` moment also
    goes to ``checked`` (a recount compares those with what the ledger kept). Naive datetimes are taken as UTC.
    """
    start, end = aware(window[0]), aware(window[1])
    now = aware(now)
    settled_before = aware(settled_before) if settled_before is not None else None
    by_tres = components.by_tres()
    result = Tally()
    with localcontext(_PRECISION):
        for job in jobs:
            if job.account not in accounts:
                result.jobs_ignored += 1
                continue
            born = aware(since[job.account]) if since and job.account in since else start
            seconds = _seconds_inside(job, max(start, born), end, now)
            result.jobs_counted += 1
            if seconds <= 0:
                continue
            settled = settled_before is not None and job.end is not None and aware(job.end) < settled_before
            into = result.settled if settled else result.open
            checked = (check_before is not None and job.account in check_before and job.end is not None
                       and aware(job.end) < aware(check_before[job.account]))
            for tres, amount in job.tres.items():
                component = by_tres.get(tres)
                if component is None:
                    log.debug("job %s: TRES %s is not a configured component, ignored", job.job_id, tres)
                    continue
                into.add(job.account, job.user, component.type, amount * seconds)
                if checked:
                    result.checked.add(job.account, job.user, component.type, amount * seconds)
    return result


def to_report(window: Tuple[datetime, datetime], resources: Mapping[str, str], components: Components,
              *parts: UsageSeconds) -> UsageReport:
    """The sum of ``parts`` in Waldur units: one division per amount."""
    report = UsageReport(window=(aware(window[0]), aware(window[1])), resources=dict(resources))
    seconds = UsageSeconds()
    for part in parts:
        seconds.add_all(part, resources)
    with localcontext(_PRECISION):
        for account in resources:
            report.totals[account] = {
                c.type: _to_units(seconds.totals.get(account, {}).get(c.type, Decimal(0)), c.unit_factor)
                for c in components
            }
        for account, users in seconds.users.items():
            report.per_user[account] = {
                user: {c.type: _to_units(amounts[c.type], c.unit_factor) for c in components if c.type in amounts}
                for user, amounts in users.items()
            }
    return report


def compute_usage(
    jobs: Iterable[JobRecord],
    window: Tuple[datetime, datetime],
    resources: Mapping[str, str],
    components: Components,
    now: datetime,
    since: Optional[Mapping[str, datetime]] = None,
) -> UsageReport:
    """Usage of every account in ``resources`` (account -> Waldur resource) inside ``window``, in Waldur units,
    from these jobs alone (rows of other accounts are skipped): :func:`tally` then :func:`to_report`."""
    summed = tally(jobs, window, resources, components, now, since)
    report = to_report(window, resources, components, summed.settled, summed.open)
    report.jobs_counted, report.jobs_ignored = summed.jobs_counted, summed.jobs_ignored
    return report


def to_wire(amount: Decimal) -> str:
    """The decimal string Waldur takes: 2 places, half up (Waldur rejects a 3rd place)."""
    return str(Decimal(amount).quantize(_CENT, rounding=ROUND_HALF_UP))


def _seconds_inside(job: JobRecord, start: datetime, end: datetime, now: datetime) -> Decimal:
    """Exact seconds the job ran inside [start, end); a running job runs until ``now``.

    Suspended time is not billed. sacct says how long a job was suspended, not when, so its suspended seconds are
    taken out of each window in proportion to the job's time there: a job inside one window is billed exactly its
    Elapsed (Start..End less Suspended), and the parts of a job across a month's end add up to its Elapsed."""
    lo = max(aware(job.start), start)
    finish = aware(job.end) if job.end is not None else now
    hi = min(finish, end)
    if hi <= lo:
        return Decimal(0)
    inside = _exact_seconds(hi - lo)
    if job.suspended > 0:
        whole = _exact_seconds(finish - aware(job.start))
        inside = inside * max(whole - job.suspended, Decimal(0)) / whole
    return inside


def _exact_seconds(span: timedelta) -> Decimal:
    return Decimal(span.days * 86400 + span.seconds) + Decimal(span.microseconds) / 1_000_000


def _to_units(tres_seconds: Decimal, unit_factor: Decimal) -> Decimal:
    return tres_seconds / (60 * unit_factor)
