"""Incremental usage: a month's settled jobs are kept, each cycle reads only the jobs since, totals stay exact.

The domain rules without SLURM, sdiag's answer parsed, then the whole cycle on the real bed: injected job rows
read through the real sacct, cycle after cycle, against a ground truth computed from the rows themselves.
"""
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from slurm_sync.domain.usage import UsageSeconds, tally
from slurm_sync.domain.usage_ledger import (Entry, MonthLedger, compare_recount, fingerprint, fold, ledger_key,
                                           plan_reads, settled_until)
from slurm_sync.domain.slurm_objects import JobRecord
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.slurm.sdiag import accounting_complete_at, complete_at
from testkit.memory_stores import MemoryLedger
from slurm_sync.sync.push import UsageReporter
from testkit.memory_stores import MemoryStore
from slurm_sync.waldur.api import WaldurAPI

from tests.plugins.slurm_bed import mark_ours
from tests.test_push import COMPONENTS, OFFERING_COMPONENTS, usages
from tests.test_sacct import bed_accounts, job_table  # noqa: F401  (fixtures)

UTC = timezone.utc
MARCH = (2024, 3)
MARCH_START = datetime(2024, 3, 1, tzinfo=UTC)
FP = fingerprint(COMPONENTS, "alloc")


def at(day, hour=0, minute=0):
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


# ---- the rules, without SLURM -------------------------------------------------------------------------------

def test_a_first_cycle_reads_the_whole_month_and_later_ones_read_from_the_watermark():
    resources = {"acc_a": "r1", "acc_b": "r2"}
    first = plan_reads(None, resources, MARCH_START, at(10), FP, timedelta(hours=24))
    assert first.recount and first.reads == [(MARCH_START, ["acc_a", "acc_b"])]
    jobs = [JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(2)}),
            JobRecord("2", "acc_b", "u2", at(9, 23), at(9, 23, 58), {"cpu": Decimal(1)}),  # after the cutoff
            JobRecord("3", "acc_b", "u2", at(9), None, {"cpu": Decimal(4)})]  # running
    summed = tally(jobs, (MARCH_START, at(31)), resources, COMPONENTS, at(10), settled_before=at(9, 23, 55))
    ledger = fold(first, resources, summed, at(9, 23, 55), MARCH_START)
    assert ledger.seconds.totals == {"acc_a": {"cpu": Decimal(2 * 86400)}}  # only job 1 settled
    assert {a: e.watermark for a, e in ledger.entries.items()} == {"acc_a": at(9, 23, 55), "acc_b": at(9, 23, 55)}
    assert summed.open.totals == {"acc_b": {"cpu": Decimal(1 * 58 * 60 + 4 * 86400)}}

    stored = MonthLedger.load(ledger.dump())  # as a store keeps it: exact
    assert stored.seconds == ledger.seconds and stored.entries == ledger.entries
    later = plan_reads(stored, {**resources, "acc_c": "r3"}, MARCH_START, at(10, 1), FP, timedelta(hours=24))
    assert not later.recount
    assert later.reads == [(MARCH_START, ["acc_c"]), (at(9, 23, 55), ["acc_a", "acc_b"])]  # a new account: whole


def test_a_recount_is_due_after_the_interval_or_when_components_or_source_change():
    ledger = MonthLedger(FP, at(10))
    resources = {"acc_a": "r1"}
    assert not plan_reads(ledger, resources, MARCH_START, at(10, 23), FP, timedelta(hours=24)).recount
    assert plan_reads(ledger, resources, MARCH_START, at(11), FP, timedelta(hours=24)).recount
    assert plan_reads(ledger, resources, MARCH_START, at(10, 1), FP, timedelta(0)).recount  # 0: every cycle
    assert plan_reads(ledger, resources, MARCH_START, at(10, 1), fingerprint(COMPONENTS, "req"),
                      timedelta(hours=24)).recount
    assert plan_reads(ledger, resources, MARCH_START, at(9), FP, timedelta(hours=24)).recount  # clock went back
    assert MonthLedger.load({"meta": "{not json"}) is None and MonthLedger.load({}) is None


def test_an_account_whose_resource_changed_starts_from_the_first_second_and_drops_what_it_kept():
    ledger = MonthLedger(FP, at(10))
    first = plan_reads(ledger, {"acc_a": "r1"}, MARCH_START, at(10), FP, timedelta(hours=24))
    summed = tally([JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(1)})], (MARCH_START, at(31)),
                   {"acc_a": "r1"}, COMPONENTS, at(10), settled_before=at(9))
    kept = fold(first, {"acc_a": "r1"}, summed, at(9), MARCH_START)
    reused = plan_reads(kept, {"acc_a": "r9"}, MARCH_START, at(10, 1), FP, timedelta(hours=24))
    assert reused.reads == [(MARCH_START, ["acc_a"])]
    assert reused.ledger.seconds.totals == {} and reused.ledger.entries == {}


def test_nothing_is_settled_when_completeness_is_not_proved():
    resources = {"acc_a": "r1"}
    plan = plan_reads(None, resources, MARCH_START, at(10), FP, timedelta(hours=24))
    summed = tally([JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(1)})], (MARCH_START, at(31)),
                   resources, COMPONENTS, at(10), settled_before=None)
    ledger = fold(plan, resources, summed, None, MARCH_START)
    assert ledger.seconds == UsageSeconds() and ledger.entries["acc_a"].watermark == MARCH_START
    assert summed.open.totals == {"acc_a": {"cpu": Decimal(86400)}}


def test_a_month_is_settled_up_to_its_end_and_never_past_it():
    """In the closing days the cutoff lies in the next month: the month's watermark stops at its end, a job that
    ended after it is not settled (it is read again, with start = end = the month's end), and an entry written
    past the month's end (before this rule) is read again from the month's first second."""
    april = datetime(2024, 4, 1, tzinfo=UTC)
    cutoff = settled_until(april + timedelta(hours=6), april)
    assert cutoff == april and settled_until(at(20), april) == at(20) and settled_until(None, april) is None
    resources = {"acc_a": "r1"}
    plan = plan_reads(None, resources, MARCH_START, april + timedelta(hours=6), FP, timedelta(hours=24), april)
    jobs = [JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(1)}),
            JobRecord("2", "acc_a", "u1", at(31, 23), april + timedelta(hours=2), {"cpu": Decimal(1)})]
    summed = tally(jobs, (MARCH_START, april), resources, COMPONENTS, april + timedelta(hours=6),
                   settled_before=cutoff)
    ledger = fold(plan, resources, summed, cutoff, MARCH_START)
    assert ledger.entries["acc_a"].watermark == april
    assert ledger.seconds.totals == {"acc_a": {"cpu": Decimal(86400)}}  # job 2 ended in April: not settled
    assert summed.open.totals == {"acc_a": {"cpu": Decimal(3600)}}  # its March hour, read every cycle
    again = plan_reads(ledger, resources, MARCH_START, april + timedelta(hours=7), FP, timedelta(hours=24), april)
    assert again.reads == [(april, ["acc_a"])] and not again.recount
    ledger.entries["acc_a"] = Entry("r1", april + timedelta(hours=5))  # as the old rule left it
    old = plan_reads(ledger, resources, MARCH_START, april + timedelta(hours=7), FP, timedelta(hours=24), april)
    assert old.reads == [(MARCH_START, ["acc_a"])] and old.ledger.seconds.totals == {}


def _kept_ledger(key):
    """A stored ledger of March with acc_a's settled job (2 cpu-days by u1), as a store keeps it (signed)."""
    resources = {"acc_a": "r1", "acc_b": "r2"}
    plan = plan_reads(None, resources, MARCH_START, at(10), FP, timedelta(hours=24))
    summed = tally([JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(2)})], (MARCH_START, at(31)),
                   resources, COMPONENTS, at(10), settled_before=at(9, 23, 55))
    return fold(plan, resources, summed, at(9, 23, 55), MARCH_START).dump(key), resources


@pytest.mark.parametrize("tamper, why", [
    (lambda d: {**d, "t": {"cpu": "8640000000"}, "u": {"u1": {"cpu": "8640000000"}}}, "signature"),  # forged seconds
    (lambda d: {**d, "w": "2024-03-30T00:00:00+00:00"}, "signature"),  # watermark moved on
])
def test_a_changed_ledger_entry_is_dropped_said_and_read_again(tamper, why):
    import json
    key = ledger_key("the deployment's token")
    fields, resources = _kept_ledger(key)
    stored = json.loads(fields["a:acc_a"])
    forged = json.dumps(tamper(json.loads(stored["d"])), sort_keys=True)
    fields["a:acc_a"] = json.dumps({"d": forged, "mac": stored["mac"]})
    ledger = MonthLedger.load(fields, key)
    assert "acc_a" not in ledger.entries and "acc_b" in ledger.entries
    assert len(ledger.problems) == 1 and "acc_a" in ledger.problems[0] and why in ledger.problems[0]
    plan = plan_reads(ledger, resources, MARCH_START, at(10, 1), FP, timedelta(hours=24), datetime(2024, 4, 1,
                                                                                                 tzinfo=UTC))
    assert plan.reads == [(MARCH_START, ["acc_a"]), (at(9, 23, 55), ["acc_b"])] and plan.problems == ledger.problems
    assert plan.ledger.seconds.totals == {}  # nothing of acc_a's forged sums is kept
    assert MonthLedger.load(fields, ledger_key("another deployment's token")) is None  # meta not ours: recount


def test_an_entry_signed_right_but_impossible_is_dropped_too():
    """NaN, a negative amount, users that do not add up to the totals, a watermark in the future: each is an entry
    no cycle writes; the month is read again for its account instead of billing it or crashing the cycle."""
    from slurm_sync.domain import usage_ledger
    key = ledger_key("t0ken-value")
    for data, reason in [({"t": {"cpu": "NaN"}, "u": {"u1": {"cpu": "NaN"}}}, "finite"),
                         ({"t": {"cpu": "-5"}, "u": {"u1": {"cpu": "-5"}}}, "non-negative"),
                         ({"t": {"cpu": "100"}, "u": {"u1": {"cpu": "7"}}}, "add up"),
                         ({"t": {"cpu": "zz"}, "u": {}}, "not a number")]:
        fields, resources = _kept_ledger(key)
        fields["a:acc_a"] = usage_ledger._signed({"r": "r1", "w": at(9).isoformat(), **data}, key, "acc_a")
        ledger = MonthLedger.load(fields, key)
        assert "acc_a" not in ledger.entries and reason in ledger.problems[0], (data, ledger.problems)
    fields, resources = _kept_ledger(key)
    fields["a:acc_a"] = usage_ledger._signed({"r": "r1", "w": at(20).isoformat(), "t": {}, "u": {}}, key, "acc_a")
    plan = plan_reads(MonthLedger.load(fields, key), resources, MARCH_START, at(10, 1), FP, timedelta(hours=24))
    assert plan.reads[0] == (MARCH_START, ["acc_a"]) and "future" in plan.problems[0]


def test_a_recount_says_where_the_ledger_differed_from_sacct():
    key = ledger_key("t0ken-value")
    fields, resources = _kept_ledger(key)
    kept = MonthLedger.load(fields, key)
    late = tally([JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(2)}),
                  JobRecord("9", "acc_a", "u2", at(4), at(5), {"cpu": Decimal(1)})],  # reached slurmdbd late
                 (MARCH_START, at(31)), resources, COMPONENTS, at(11), check_before={"acc_a": at(9, 23, 55),
                                                                                      "acc_b": at(9, 23, 55)})
    notes = compare_recount(kept, late.checked, resources)
    assert len(notes) == 1 and "acc_a" in notes[0] and "172800" in notes[0] and "259200" in notes[0]
    same = tally([JobRecord("1", "acc_a", "u1", at(2), at(3), {"cpu": Decimal(2)})], (MARCH_START, at(31)),
                 resources, COMPONENTS, at(11), check_before={"acc_a": at(9, 23, 55), "acc_b": at(9, 23, 55)})
    assert compare_recount(kept, same.checked, resources) == []


SDIAG = """*******************************************************
sdiag output at Sat Nov 28 04:22:45 2026 (1795839765)
Data since      Sat Nov 28 04:21:27 2026 (1795839687)
*******************************************************
Server thread count:  3
Agent queue size:     0
Agent count:          0
Agent thread count:   0
DBD Agent queue size: {queue}
"""


def test_sdiag_proves_completeness_only_with_an_empty_queue_to_slurmdbd():
    margin = timedelta(minutes=5)
    assert complete_at(SDIAG.format(queue=0), margin) == datetime.fromtimestamp(1795839765, UTC) - margin
    assert complete_at(SDIAG.format(queue=12), margin) is None
    assert complete_at("sdiag: error: slurm_get_statistics: Unable to contact slurm controller", margin) is None
    assert complete_at(SDIAG.format(queue=0).replace("sdiag output at", "output"), margin) is None


@pytest.mark.bed
def test_sdiag_on_the_bed_answers_a_recent_moment():
    moment = accounting_complete_at(NativeExecutor(timeout=30), timedelta(minutes=5))
    assert moment is not None and timedelta(minutes=4) < datetime.now(UTC) - moment < timedelta(minutes=6)


# ---- cycles on the real bed ---------------------------------------------------------------------------------

def truth(rows, now, factor):
    """{(account, type): Fraction} from the rows themselves: seconds inside March (running ones up to ``now``)."""
    totals = {}
    for row in rows:
        lo, hi = max(row.start, MARCH_START), min(row.end or now, datetime(2024, 4, 1, tzinfo=UTC))
        seconds = max(0, int((hi - lo).total_seconds()))
        for tres, type_ in (("cpu", "cpu"), ("mem", "mem"), ("gres/gpu", "gpu")):
            if row.tres.get(tres):
                key = (row.account, type_)
                totals[key] = totals.get(key, 0) + Fraction(row.tres[tres] * seconds) / 60 / factor[type_]
    return totals


@pytest.mark.bed
@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
def test_cycles_read_only_the_jobs_since_the_watermark_and_the_totals_stay_exact(waldur, bed_accounts, job_table):
    from testkit.job_rows import JobRow

    accounts, users = bed_accounts
    a, b = accounts
    clock = {"now": datetime(2024, 2, 1, tzinfo=UTC)}
    waldur.now = lambda: clock["now"]  # resources created before March; 7.0 files usage under the server's month
    offering = waldur.add_offering("SLURM", components=OFFERING_COMPONENTS)
    project = waldur.add_project(waldur.add_customer("Acme")["uuid"], "Physics")
    resources = {x: waldur.add_resource(offering["uuid"], project["uuid"], x, backend_id=x) for x in accounts}
    mark_ours(resources)
    reporter = UsageReporter(WaldurAPI(waldur.url, waldur.token, offering["uuid"]),
                             SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS, MemoryStore(),
                             ledger=MemoryLedger(), complete_at=lambda: clock["now"] - timedelta(minutes=5))
    factor = {c.type: Fraction(str(c.unit_factor)) for c in COMPONENTS}

    def cycle(now):
        clock["now"] = now
        return reporter.run(now=now)

    def shown():
        return {(x, t): Fraction(str(v)) for x in accounts
                for t, v in usages(waldur, resources[x], "2024-03-01").items() if v}

    def expected(rows, now):  # in cents, half up, as sent
        return {k: Fraction(math.floor(v * 100 + Fraction(1, 2)), 100) for k, v in truth(rows, now, factor).items()}

    base = job_table.next_job_id()
    tres = {"cpu": 2, "mem": 1024, "node": 1, "gres/gpu": 1}
    first = [JobRow(base + i, (a, b)[i % 2], users[i % 2], at(1 + i % 9, i % 24), at(2 + i % 9, i % 24, 7), tres)
             for i in range(18)]
    first.append(JobRow(base + 18, a, users[0], datetime(2024, 2, 29, 22, tzinfo=UTC), at(1, 2), tres))  # from Feb
    running = JobRow(base + 19, b, users[1], at(5), None, {"cpu": 1, "mem": 100, "node": 1})
    job_table.insert(first + [running])

    one = cycle(at(12))
    assert one.recounted == [MARCH] and one.sacct_calls == 1 and one.jobs == 20
    assert shown() == expected(first + [running], at(12))

    idle = cycle(at(12, 0, 15))  # nothing ended since: only the running job is read again
    assert idle.recounted == [] and idle.sacct_calls == 1 and idle.jobs == 1
    assert idle.usage_posts == 1  # b's total grew by the running job's 15 minutes
    assert shown() == expected(first + [running], at(12, 0, 15))

    later = [JobRow(base + 20 + i, (a, b)[i % 2], users[i % 2], at(11, i), at(12, 1, i), tres) for i in range(6)]
    job_table.insert(later)
    three = cycle(at(12, 20))
    assert three.recounted == [] and three.jobs == 7  # the six that ended since, and the running one
    assert shown() == expected(first + later + [running], at(12, 20))

    # a record that reaches slurmdbd after its time was settled (sdiag proves it cannot happen unnoticed in
    # production): the incremental read does not see it, the daily recount does
    late = JobRow(base + 30, a, users[0], at(3), at(4), tres)
    job_table.insert([late])
    four = cycle(at(12, 20, 30))
    assert four.jobs == 1 and shown() == expected(first + later + [running], at(12, 20, 30))
    # the ledger changed behind the product's back (forged seconds): dropped, said, its account read again
    import json
    stored = reporter.months.ledger.data[MARCH]
    entry = json.loads(stored[f"a:{b}"])
    body = json.loads(entry["d"])
    body["t"] = {t: "3600000000" for t in body["t"]}
    stored[f"a:{b}"] = json.dumps({"d": json.dumps(body, sort_keys=True), "mac": entry["mac"]})
    forged = cycle(at(12, 20, 45))
    assert len(forged.ledger) == 1 and b in forged.ledger[0] and forged.recounted == []
    assert shown() == expected(first + later + [running], at(12, 20, 45))  # b's total as the rows say
    five = cycle(at(13, 1))  # 25 h after the first read
    assert five.recounted == [MARCH] and five.jobs == 27
    assert shown() == expected(first + later + [late, running], at(13, 1))
    # the recount compared its fresh sums with the ledger it replaces: the late record was not in it
    assert len(five.ledger) == 1 and a in five.ledger[0] and "differed from sacct" in five.ledger[0]

    # the last usage of an allocation being terminated: read from the ledger (nothing since), nothing stored
    kept = reporter.months.ledger.data[MARCH]
    final = reporter.report_final({a: waldur.get_resource(resources[a]["uuid"])}, now=at(13, 2))
    assert final.jobs == 0 and final.sacct_calls == 1 and final.recounted == []
    assert shown() == expected(first + later + [late, running], at(13, 1)) and reporter.months.ledger.data[MARCH] == kept
