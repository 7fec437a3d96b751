"""The first days of a month, on the real bed: the previous month is still reported (closing day ahead) after it
ended, and every push cycle goes on, both months exact.

A cutoff past the previous month's end once moved that month's watermark past its end, and the next cycle asked
sacct for ``--starttime`` after ``--endtime``: every cycle failed, the current month's included. Here the clock
walks from the month's last evening into its 2nd day, across a month's and a year's end, with a job that runs
across the boundary (ending after it, and one still running) and jobs of the new month; after each cycle each
month's totals in Waldur equal the truth computed from the rows.
"""
import math
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest

from slurm_sync.domain.months import month_window
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from testkit.memory_stores import MemoryLedger
from slurm_sync.sync.push import UsageReporter
from testkit.memory_stores import MemoryStore
from slurm_sync.waldur.api import WaldurAPI

from tests.plugins.slurm_bed import mark_ours
from tests.test_push import COMPONENTS, OFFERING_COMPONENTS, usages
from tests.test_sacct import bed_accounts, job_table  # noqa: F401  (fixtures)

UTC = timezone.utc
TRES = {"cpu": 2, "mem": 1024, "node": 1, "gres/gpu": 1}
TYPES = (("cpu", "cpu"), ("mem", "mem"), ("gres/gpu", "gpu"))


def truth(rows, window, now, factor):
    """{(account, type): Fraction} inside ``window`` (running jobs up to ``now``), from the rows themselves."""
    totals = {}
    for row in rows:
        lo, hi = max(row.start, window[0]), min(row.end or now, window[1], now)
        seconds = max(0, int((hi - lo).total_seconds()))
        for tres, type_ in TYPES:
            if row.tres.get(tres) and seconds:
                key = (row.account, type_)
                totals[key] = totals.get(key, 0) + Fraction(row.tres[tres] * seconds) / 60 / factor[type_]
    return {k: Fraction(math.floor(v * 100 + Fraction(1, 2)), 100) for k, v in totals.items()}  # cents, half up


@pytest.mark.bed
@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
@pytest.mark.parametrize("boundary", [datetime(2024, 4, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)],
                         ids=["month-end", "year-end"])
def test_the_closing_days_report_both_months_exactly(waldur, waldur_profile, bed_accounts, job_table, boundary):
    from testkit.job_rows import JobRow

    accounts, users = bed_accounts
    a, b = accounts
    before = month_window((boundary - timedelta(days=1)).year, (boundary - timedelta(days=1)).month)
    after = month_window(boundary.year, boundary.month)
    periods = {before: before[0].strftime("%Y-%m-01"), after: after[0].strftime("%Y-%m-01")}
    clock = {"now": before[0] - timedelta(days=20)}
    waldur.now = lambda: clock["now"]  # resources made before the month; 7.0 files usage under the server's month
    offering = waldur.add_offering("SLURM", components=OFFERING_COMPONENTS)
    project = waldur.add_project(waldur.add_customer("Acme")["uuid"], "Physics")
    resources = {x: waldur.add_resource(offering["uuid"], project["uuid"], x, backend_id=x) for x in accounts}
    mark_ours(resources)
    reporter = UsageReporter(WaldurAPI(waldur.url, waldur.token, offering["uuid"]),
                             SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS, MemoryStore(), closing_day=3,
                             ledger=MemoryLedger(), complete_at=lambda: clock["now"] - timedelta(minutes=5))
    factor = {c.type: Fraction(str(c.unit_factor)) for c in COMPONENTS}
    hours = lambda h: boundary + timedelta(hours=h)  # noqa: E731

    base = job_table.next_job_id()
    rows = [JobRow(base + i, (a, b)[i % 2], users[i % 2], hours(-30 + i), hours(-20 + i), TRES) for i in range(6)]
    rows += [JobRow(base + 7, b, users[1], hours(-1), None, {"cpu": 1, "mem": 100, "node": 1})]  # still running
    job_table.insert(rows)
    # what slurmdbd holds by the 1st, 06:00: a job that ran across the boundary and ended after it, the new month's
    later = [JobRow(base + 6, a, users[0], hours(-2), hours(2), TRES),
             JobRow(base + 8, a, users[1], hours(1), hours(3), TRES),
             JobRow(base + 9, b, users[0], hours(4), hours(5), TRES)]

    def shown(window):
        return {(x, t): v for x in accounts for t, v in usages(waldur, resources[x], periods[window]).items() if v}

    def cycle(now):
        clock["now"] = now
        return reporter.run(now=now)

    last_evening = cycle(hours(-0.5))
    assert last_evening.months == [(before[0].year, before[0].month)]
    assert shown(before) == truth(rows, before, hours(-0.5), factor)
    closed_at_month_end = shown(before)
    job_table.insert(later)
    rows += later

    for now in (hours(6), hours(12), hours(30)):  # day 1 (the cutoff past the month's end), again, day 2
        result = cycle(now)
        assert result.months == [(before[0].year, before[0].month), (after[0].year, after[0].month)], now
        assert shown(after) == truth(rows, after, now, factor), now
        if waldur_profile == "current":
            assert shown(before) == truth(rows, before, now, factor), now
        else:  # 7.0 files every post under the server's month: the closed month keeps what was sent in it, and
            # the hours the job across the boundary added to it are said once, as unreportable
            assert shown(before) == closed_at_month_end
            assert bool(result.unreportable) == (now == hours(6)), now
    # the previous month's ledger holds only jobs that ended inside it, complete up to its end
    ledger = reporter.months.ledger.get((before[0].year, before[0].month))
    assert {entry.watermark for entry in ledger.entries.values()} == {boundary}
