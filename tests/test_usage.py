"""Pure tests of billing windows and usage computation.

Ground truth is computed with ``fractions.Fraction`` from plain numbers, independently of the
Decimal code under test.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from slurm_sync.domain.months import month_of, month_window, months_to_report
from slurm_sync.domain.components import parse_components
from slurm_sync.domain.slurm_objects import JobRecord
from slurm_sync.domain.usage import compute_usage, to_wire

UTC = timezone.utc
TALLINN = ZoneInfo("Europe/Tallinn")

COMPONENTS = parse_components({
    "cpu": {"accounting_type": "usage", "measured_unit": "k-Hours", "unit_factor": 60000},
    "mem": {"accounting_type": "usage", "measured_unit": "gb-Hours", "unit_factor": 61440},
    "gres/gpu": {"accounting_type": "usage", "measured_unit": "hours", "unit_factor": 60},
})
FACTORS = {"cpu": 60000, "mem": 61440, "gpu": 60}
RESOURCES = {"acc_a": "res-a", "acc_b": "res-b"}


def t(*args, tz=UTC) -> datetime:
    return datetime(*args, tzinfo=tz)


def job(job_id, account, user, start, end, **tres) -> JobRecord:
    names = {"gpu": "gres/gpu"}
    return JobRecord(job_id=str(job_id), account=account, user=user, start=start, end=end,
                     tres={names.get(k, k): Decimal(str(v)) for k, v in tres.items()})


def truth(jobs, window_start, window_end, now=None):
    """Independent ground truth: Fractions, per (account, type)."""
    out = {}
    for j in jobs:
        end = j.end or now
        lo, hi = max(j.start, window_start), min(end, window_end)
        seconds = max(0, int((hi - lo).total_seconds()))
        for tres, amount in j.tres.items():
            kind = tres.replace("gres/", "")
            if kind not in FACTORS:
                continue
            key = (j.account, kind)
            out[key] = out.get(key, Fraction(0)) + Fraction(amount) * seconds / 60 / FACTORS[kind]
    return out


def as_fraction_map(report):
    return {(a, k): Fraction(v) for a, kinds in report.totals.items() for k, v in kinds.items() if v}


def assert_matches_truth(report, expected):
    """Equal to the Fractions up to Decimal's last digit (1/3 has no finite decimal)."""
    got = as_fraction_map(report)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) < Fraction(1, 10 ** 50), key


# ---- billing windows ----------------------------------------------------------------

def test_month_window_utc_and_december():
    assert month_window(2024, 2) == (t(2024, 2, 1), t(2024, 3, 1))
    assert month_window(2024, 12) == (t(2024, 12, 1), t(2025, 1, 1))
    start, end = month_window(2024, 2)
    assert (end - start) == timedelta(days=29)  # leap year: last day counted in full


def test_month_window_in_a_zone_with_dst():
    start, end = month_window(2024, 3, "Europe/Tallinn")
    assert start.astimezone(UTC) == t(2024, 2, 29, 22)  # UTC+2 in winter
    assert end.astimezone(UTC) == t(2024, 3, 31, 21)  # UTC+3 after the switch
    assert end - start == timedelta(days=31)  # wall-clock difference
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(days=31, hours=-1)
    with pytest.raises(ValueError):
        month_window(2024, 13)


def test_months_to_report_closing_day():
    assert months_to_report(t(2024, 3, 1, 0, 5)) == [(2024, 2), (2024, 3)]
    assert months_to_report(t(2024, 3, 3, 23, 59)) == [(2024, 2), (2024, 3)]
    assert months_to_report(t(2024, 3, 4, 0, 0)) == [(2024, 3)]
    assert months_to_report(t(2024, 1, 2), closing_day=3) == [(2023, 12), (2024, 1)]
    assert months_to_report(t(2024, 1, 1), closing_day=0) == [(2024, 1)]


def test_months_to_report_uses_the_billing_zone():
    now = t(2024, 3, 31, 22, 30)  # already April 1st in Tallinn
    assert months_to_report(now, 3) == [(2024, 3)]
    assert months_to_report(now, 3, "Europe/Tallinn") == [(2024, 3), (2024, 4)]
    assert month_of(now, TALLINN) == (2024, 4)
    assert months_to_report(t(2024, 3, 31, 22, 30).replace(tzinfo=None), 3) == [(2024, 3)]  # naive = UTC


# ---- usage --------------------------------------------------------------------------

def test_simple_jobs_exact_against_ground_truth():
    start, end = month_window(2024, 5)
    jobs = [
        job(1, "acc_a", "alice", t(2024, 5, 2, 10), t(2024, 5, 2, 11, 30), cpu=2, mem=4096, node=1, billing=2),
        job(2, "acc_a", "bob", t(2024, 5, 3), t(2024, 5, 3, 0, 0, 7), cpu=1, mem=100, gpu=2),
        job(3, "acc_b", "alice", t(2024, 5, 31, 23), t(2024, 6, 1, 1), cpu=64, mem=1, gpu=8),
    ]
    report = compute_usage(jobs, (start, end), RESOURCES, COMPONENTS, now=t(2024, 7, 1))
    assert_matches_truth(report, truth(jobs, start, end))
    # 2 cpu x 90 min + 1 cpu x 7 s = 180 + 7/60 cpu-minutes
    assert abs(Fraction(report.totals["acc_a"]["cpu"]) - Fraction(180 * 60 + 7, 60 * 60000)) < Fraction(1, 10 ** 55)
    assert abs(Fraction(report.per_user["acc_a"]["bob"]["gpu"]) - Fraction(2 * 7, 60 * 60)) < Fraction(1, 10 ** 55)
    assert "gpu" not in report.per_user["acc_a"]["alice"]
    assert report.per_user["acc_b"]["alice"]["gpu"] == Decimal(8)  # 8 GPUs x 1 h inside May


def test_per_user_sums_to_totals():
    start, end = month_window(2024, 5)
    jobs = [job(i, "acc_a", f"u{i % 3}", t(2024, 5, 1 + i % 28, i % 24), t(2024, 5, 1 + i % 28, i % 24, 1 + i % 59),
                cpu=1 + i % 5, mem=(i * 37) % 9000, gpu=i % 2) for i in range(300)]
    report = compute_usage(jobs, (start, end), RESOURCES, COMPONENTS, now=t(2024, 7, 1))
    for kind in FACTORS:
        summed = sum(Fraction(u.get(kind, 0)) for u in report.per_user["acc_a"].values())
        assert abs(summed - Fraction(report.totals["acc_a"][kind])) < Fraction(1, 10 ** 50)
    assert_matches_truth(report, truth(jobs, start, end))


def test_job_spanning_midnight_of_the_first_is_split_exactly():
    jan, feb = month_window(2024, 1), month_window(2024, 2)
    spanning = job(7, "acc_a", "alice", t(2024, 1, 31, 23, 0, 0), t(2024, 2, 1, 0, 45, 0), cpu=4, gpu=1)
    now = t(2024, 3, 1)
    in_jan = compute_usage([spanning], jan, RESOURCES, COMPONENTS, now)
    in_feb = compute_usage([spanning], feb, RESOURCES, COMPONENTS, now)
    assert in_jan.totals["acc_a"]["gpu"] == 1  # 60 min
    assert in_feb.totals["acc_a"]["gpu"] == Decimal("0.75")  # 45 min
    assert Fraction(in_jan.totals["acc_a"]["cpu"]) == Fraction(4 * 60, 60000)
    assert Fraction(in_feb.totals["acc_a"]["cpu"]) == Fraction(4 * 45, 60000)
    whole = compute_usage([spanning], (jan[0], feb[1]), RESOURCES, COMPONENTS, now)
    assert in_jan.totals["acc_a"]["cpu"] + in_feb.totals["acc_a"]["cpu"] == whole.totals["acc_a"]["cpu"]


def test_suspended_time_is_not_billed():
    """A job inside one month is billed exactly its Elapsed (End - Start - Suspended); across a month's end its
    suspended seconds come out of each month in proportion, and the months add up to its Elapsed."""
    from dataclasses import replace
    march, april = month_window(2024, 3), month_window(2024, 4)
    inside = replace(job(1, "acc_a", "alice", t(2024, 3, 10, 8), t(2024, 3, 10, 12), cpu=2, gpu=1), suspended=3600)
    report = compute_usage([inside], march, RESOURCES, COMPONENTS, t(2024, 4, 2))
    assert report.totals["acc_a"]["gpu"] == 3  # 4 h less 1 h suspended, in hours
    assert Fraction(report.totals["acc_a"]["cpu"]) == Fraction(2 * 3 * 3600, 60 * 60000)
    across = replace(job(2, "acc_a", "alice", t(2024, 3, 31, 22), t(2024, 4, 1, 2), gpu=1), suspended=3600)
    in_march = compute_usage([across], march, RESOURCES, COMPONENTS, t(2024, 4, 2)).totals["acc_a"]["gpu"]
    in_april = compute_usage([across], april, RESOURCES, COMPONENTS, t(2024, 4, 2)).totals["acc_a"]["gpu"]
    assert in_march == in_april == Decimal("1.5") and in_march + in_april == 3  # 2 h each side, 1 h less in all
    running = replace(job(3, "acc_b", "bob", t(2024, 3, 10, 8), None, gpu=1), suspended=7200)
    assert compute_usage([running], march, RESOURCES, COMPONENTS, t(2024, 3, 10, 12)).totals["acc_b"]["gpu"] == 2
    never_ran = replace(job(4, "acc_b", "bob", t(2024, 3, 10, 8), t(2024, 3, 10, 9), gpu=1), suspended=3600)
    assert compute_usage([never_ran], march, RESOURCES, COMPONENTS, t(2024, 4, 2)).totals.get("acc_b", {}).get(
        "gpu", Decimal(0)) == 0


def test_split_follows_the_billing_zone():
    # Feb 1st begins at 22:00 UTC on Jan 31 in Tallinn (UTC+2): half of this hour is February's there
    late = job(8, "acc_a", "alice", t(2024, 1, 31, 21, 30), t(2024, 1, 31, 22, 30), gpu=1)
    now = t(2024, 3, 1)
    utc_jan = compute_usage([late], month_window(2024, 1), RESOURCES, COMPONENTS, now)
    tln_jan = compute_usage([late], month_window(2024, 1, TALLINN), RESOURCES, COMPONENTS, now)
    tln_feb = compute_usage([late], month_window(2024, 2, TALLINN), RESOURCES, COMPONENTS, now)
    assert utc_jan.totals["acc_a"]["gpu"] == 1
    assert tln_jan.totals["acc_a"]["gpu"] == Decimal("0.5")
    assert tln_feb.totals["acc_a"]["gpu"] == Decimal("0.5")


def test_running_job_counts_up_to_now():
    window = month_window(2024, 5)
    running = job(9, "acc_b", "bob", t(2024, 4, 30, 12), None, gpu=2)
    report = compute_usage([running], window, RESOURCES, COMPONENTS, now=t(2024, 5, 1, 3))
    assert report.totals["acc_b"]["gpu"] == 6  # 2 GPUs x 3 h since the 1st
    later = compute_usage([running], window, RESOURCES, COMPONENTS, now=t(2024, 6, 5))
    assert later.totals["acc_b"]["gpu"] == 2 * 24 * 31  # clipped to the window's end
    # a finished job is not capped by `now`
    done = job(10, "acc_b", "bob", t(2024, 5, 1), t(2024, 5, 1, 2), gpu=1)
    assert compute_usage([done], window, RESOURCES, COMPONENTS, now=t(2024, 5, 1, 1)).totals["acc_b"]["gpu"] == 2


def test_decimal_exactness_many_small_jobs():
    # 3 x one second of one cpu in a 1/3-unit world: float would drift, Decimal seconds do not
    comps = parse_components({"cpu": {"accounting_type": "usage", "unit_factor": 1}})
    window = month_window(2024, 5)
    jobs = [job(i, "acc_a", "alice", t(2024, 5, 2, 0, 0, 0) + timedelta(seconds=2 * i),
                t(2024, 5, 2, 0, 0, 1) + timedelta(seconds=2 * i), cpu="0.1") for i in range(60_000)]
    report = compute_usage(jobs, window, {"acc_a": "r"}, comps, now=t(2024, 6, 2))
    assert report.totals["acc_a"]["cpu"] == Decimal(100)  # 60000 x 0.1 cpu-seconds = 6000 s = 100 min
    assert report.jobs_counted == 60_000


def test_rounding_happens_only_on_the_wire():
    comps = parse_components({"cpu": {"accounting_type": "usage", "unit_factor": 6000}})
    window = month_window(2024, 5)
    # 3 cpu-seconds / 60 / 6000 = 1/120000: far below a cent, kept unrounded
    tiny = job(1, "acc_a", "alice", t(2024, 5, 2), t(2024, 5, 2, 0, 0, 3), cpu=1)
    report = compute_usage([tiny] * 1200, window, {"acc_a": "r"}, comps, now=t(2024, 6, 2))
    assert report.totals["acc_a"]["cpu"] == Decimal("0.01")  # 1200 tiny jobs make a cent
    single = compute_usage([tiny], window, {"acc_a": "r"}, comps, now=t(2024, 6, 2))
    assert single.totals["acc_a"]["cpu"] != 0
    assert to_wire(single.totals["acc_a"]["cpu"]) == "0.00"
    assert to_wire(Decimal("0.005")) == "0.01"
    assert to_wire(Decimal("2.675")) == "2.68"  # float would say 2.67
    assert to_wire(Decimal("0.004999")) == "0.00"
    assert to_wire(Decimal(3)) == "3.00"
    assert to_wire(Decimal("1E+2")) == "100.00"


def test_only_mapped_accounts_and_configured_components_count():
    window = month_window(2024, 5)
    jobs = [
        job(1, "acc_a", "alice", t(2024, 5, 2), t(2024, 5, 2, 1), cpu=1, energy=500, **{"fs/disk": 3}),
        job(2, "stranger", "eve", t(2024, 5, 2), t(2024, 5, 2, 1), cpu=1000),
        job(3, "acc_a", "alice", t(2024, 4, 2), t(2024, 4, 2, 1), cpu=1000),  # outside the window
    ]
    report = compute_usage(jobs, window, RESOURCES, COMPONENTS, now=t(2024, 6, 1))
    assert set(report.totals) == {"acc_a", "acc_b"}
    assert report.totals["acc_a"] == {"cpu": Decimal(60) / 60000, "mem": 0, "gpu": 0}
    assert report.totals["acc_b"] == {"cpu": 0, "mem": 0, "gpu": 0}  # quiet month reported as 0
    assert "acc_b" not in report.per_user
    assert report.jobs_ignored == 1 and report.jobs_counted == 2
    assert report.resources == RESOURCES


def test_naive_times_are_utc():
    window = tuple(x.replace(tzinfo=None) for x in month_window(2024, 5))
    naive = JobRecord("1", "acc_a", "alice", datetime(2024, 5, 2), datetime(2024, 5, 2, 1), {"gres/gpu": Decimal(1)})
    aware = job(2, "acc_a", "alice", t(2024, 5, 3), t(2024, 5, 3, 1), gpu=1)
    report = compute_usage([naive, aware], window, RESOURCES, COMPONENTS, now=datetime(2024, 6, 1))
    assert report.totals["acc_a"]["gpu"] == 2


def test_time_before_the_resource_was_created_belongs_to_an_earlier_allocation_of_that_name():
    """A terminated allocation's account name is free again; a new resource that gets it the same month is not
    billed the old one's jobs (found driving a real 7.0 server: a second allocation showed twice the usage)."""
    start, end = month_window(2024, 5)
    jobs = [job(1, "acc_a", "alice", t(2024, 5, 2, 10), t(2024, 5, 2, 11), cpu=1),   # the old allocation's
            job(2, "acc_a", "alice", t(2024, 5, 9, 11, 30), t(2024, 5, 9, 12), cpu=1),  # straddles the creation
            job(3, "acc_a", "alice", t(2024, 5, 10), t(2024, 5, 10, 1), cpu=1)]
    report = compute_usage(jobs, (start, end), RESOURCES, COMPONENTS, now=t(2024, 7, 1),
                           since={"acc_a": t(2024, 5, 9, 11, 45)})
    assert report.totals["acc_a"]["cpu"] == Decimal(75) / 60000  # 15 + 60 cpu-minutes, in k-cpu-hours of 60000
    assert report.totals["acc_b"]["cpu"] == 0
