"""Usage of a billing window in Waldur units, from accounting rows: pure, no I/O.

For each job: TRES amount x seconds it ran inside the window, summed per (account, component)
and per (account, user, component), then divided once by ``60 * unit_factor``. Keeping
TRES-seconds (exact: integer seconds times the Decimal amount) until that single division means
splitting a job across months, or summing many short jobs, never loses a fraction. Amounts stay
unrounded here; :func:`to_wire` rounds once, when they are sent.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Dict, Iterable, Mapping, Optional, Tuple

from slurm_sync.domain.months import aware
from slurm_sync.domain.components import Components
from slurm_sync.domain.slurm_objects import JobRecord

log = logging.getLogger(__name__)

# Enough digits that the one division per amount is exact to far below a cent.
_PRECISION = Context(prec=60)
_CENT = Decimal("0.01")


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


def compute_usage(
    jobs: Iterable[JobRecord],
    window: Tuple[datetime, datetime],
    resources: Mapping[str, str],
    components: Components,
    now: datetime,
    since: Optional[Mapping[str, datetime]] = None,
) -> UsageReport:
    """Sum the jobs' usage inside ``window`` = (start, end exclusive) per account and user.

    ``resources`` maps SLURM account -> Waldur resource; rows of other accounts are skipped.
    ``since`` gives an account the moment its resource was created: time before it belongs to an earlier
    allocation that had the same account name (terminated, its name free again) and is not this one's.
    A job still running (``end`` None) counts up to ``now``. Times are clipped to the window
    here (sacct runs without ``--truncate``, which slows slurmdbd 13x). Naive datetimes are taken as UTC.
    """
    start, end = aware(window[0]), aware(window[1])
    now = aware(now)
    by_tres = components.by_tres()
    seconds_total: Dict[str, Dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    seconds_user: Dict[str, Dict[str, Dict[str, Decimal]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Decimal))
    )
    report = UsageReport(window=(start, end), resources=dict(resources))
    with localcontext(_PRECISION):
        for job in jobs:
            if job.account not in resources:
                report.jobs_ignored += 1
                continue
            born = aware(since[job.account]) if since and job.account in since else start
            seconds = _seconds_inside(job, max(start, born), end, now)
            report.jobs_counted += 1
            if seconds <= 0:
                continue
            for tres, amount in job.tres.items():
                component = by_tres.get(tres)
                if component is None:
                    log.debug("job %s: TRES %s is not a configured component, ignored", job.job_id, tres)
                    continue
                tres_seconds = amount * seconds
                seconds_total[job.account][component.type] += tres_seconds
                seconds_user[job.account][job.user][component.type] += tres_seconds
        for account in resources:
            report.totals[account] = {
                c.type: _to_units(seconds_total.get(account, {}).get(c.type, Decimal(0)), c.unit_factor)
                for c in components
            }
        for account, users in seconds_user.items():
            report.per_user[account] = {
                user: {c.type: _to_units(amounts[c.type], c.unit_factor) for c in components if c.type in amounts}
                for user, amounts in users.items()
            }
    return report


def to_wire(amount: Decimal) -> str:
    """The decimal string Waldur takes: 2 places, half up (Waldur rejects a 3rd place)."""
    return str(Decimal(amount).quantize(_CENT, rounding=ROUND_HALF_UP))


def _seconds_inside(job: JobRecord, start: datetime, end: datetime, now: datetime) -> Decimal:
    """Exact seconds the job ran inside [start, end); a running job runs until ``now``."""
    lo = max(aware(job.start), start)
    hi = min(aware(job.end) if job.end is not None else now, end)
    if hi <= lo:
        return Decimal(0)
    span = hi - lo
    return Decimal(span.days * 86400 + span.seconds) + Decimal(span.microseconds) / 1_000_000


def _to_units(tres_seconds: Decimal, unit_factor: Decimal) -> Decimal:
    return tres_seconds / (60 * unit_factor)
