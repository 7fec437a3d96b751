"""sacct: command line, stream parsing of recorded lines, and reading the real bed.

The bed tests need root and the slurm_bed plugin (``-p tests.plugins.slurm_bed``).
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from slurm_sync.domain.months import month_window
from slurm_sync.domain.components import parse_components
from slurm_sync.slurm import sacct
from slurm_sync.slurm.sacct import (
    MalformedLine, ParseStats, PopenLines, SacctError, parse_elapsed, parse_lines, parse_tres,
    read_jobs, sacct_argvs,
)
from slurm_sync.domain.usage import compute_usage

UTC = timezone.utc
COMPONENTS = parse_components({
    "cpu": {"accounting_type": "usage", "unit_factor": 60000},
    "mem": {"accounting_type": "usage", "unit_factor": 61440},
    "gres/gpu": {"accounting_type": "usage", "unit_factor": 60},
})


def same(amount: Decimal, expected: Fraction) -> bool:
    """Equal up to the last of the 60 digits usage computes with (1/3 has no finite decimal)."""
    return abs(Fraction(amount) - expected) < Fraction(1, 10 ** 50)


# ---- the command line ---------------------------------------------------------------

def test_one_call_for_all_accounts_in_utc():
    start, end = month_window(2024, 3, "Europe/Tallinn")
    argvs = sacct_argvs(["b", "A", "a"], start, end)
    assert len(argvs) == 1
    argv = argvs[0]
    assert argv[:5] == ["sacct", "--allocations", "--allusers", "--parsable2", "--noheader"]
    assert "--truncate" not in argv  # 13x slower in slurmdbd; usage clips to the window itself
    assert "--starttime=2024-02-29T22:00:00" in argv and "--endtime=2024-03-31T21:00:00" in argv
    assert "--accounts=a,b" in argv  # lower case, deduplicated
    assert "--format=JobID,Account,User,Start,End,State,Elapsed,Suspended,AllocTRES" in argv
    assert sacct_argvs(["a"], start, end, tres_source="req")[0][-2].endswith(",ReqTRES")
    with pytest.raises(ValueError):
        sacct_argvs(["a"], start, end, tres_source="billing")


def test_accounts_chunked_only_past_the_argument_limit():
    start, end = month_window(2024, 3)
    names = [f"acct_{i:05d}_{'x' * 20}" for i in range(3000)]  # ~90 kB: one call
    assert len(sacct_argvs(names, start, end)) == 1
    many = [f"acct_{i:05d}_{'x' * 20}" for i in range(10_000)]  # ~300 kB: over Linux's 128 KiB per argument
    argvs = sacct_argvs(many, start, end)
    assert len(argvs) == 4
    arguments = [a for argv in argvs for a in argv if a.startswith("--accounts=")]
    assert all(len(a.encode()) <= sacct.MAX_ACCOUNTS_ARG_BYTES for a in arguments)
    got = [n for a in arguments for n in a[len("--accounts="):].split(",")]
    assert sorted(got) == sorted(many)


# ---- parsing recorded lines -----------------------------------------------------------

RECORDED = [
    "1|usexp|usx1|2026-11-25T11:59:33|2026-11-25T11:59:35|COMPLETED|00:00:02|00:00:00|billing=1,cpu=1,mem=100M,node=1",
    "10000002|usexp|usx1|2026-10-01T00:00:00|2026-11-01T00:00:00|RUNNING|31-00:00:00|00:00:00|cpu=4,mem=1000M,node=1",
    "10000001|usexp|usx1|2026-10-31T23:00:00|2026-11-01T00:00:00|COMPLETED|01:00:00|00:00:00|"
    "cpu=2,gres/gpu=1,mem=2048M,node=1",
    "7_3|acc|bob|2024-05-01T00:00:00|Unknown|RUNNING|1-02:03:04|00:00:00|cpu=8,mem=1.5G,node=1,gres/gpu=2,gres/gpu:a100=2",
    "8|acc|bob|2024-05-01T00:00:00|2024-05-01T00:00:01|CANCELLED by 0|00:00:01|00:00:00|cpu=1,mem=512K,node=1",
    "9|acc|bob|Unknown|Unknown|PENDING|00:00:00|00:00:00|",
    "10|acc|bob|None|2024-05-01T00:00:00|CANCELLED by 0|00:00:00|00:00:00|",
    "11|acc|bob|2024-05-01T00:00:00|2024-05-01T00:00:00|CANCELLED by 0|00:00:00|00:00:00|",
    "12|acc|carol|2024-05-01T00:00:00|2024-05-02T00:00:00|COMPLETED|1-00:00:00|00:00:00|cpu=1,mem=1T,energy=55,fs/disk=0",
]


def test_recorded_lines():
    stats = ParseStats()
    records = list(parse_lines((line + "\n" for line in RECORDED), stats))
    assert stats.lines == 9 and stats.records == 6 and stats.not_started == 3 and stats.skipped == 0
    first = records[0]
    assert (first.job_id, first.account, first.user, first.state) == ("1", "usexp", "usx1", "COMPLETED")
    assert first.start == datetime(2026, 11, 25, 11, 59, 33, tzinfo=UTC)
    assert first.tres == {"billing": 1, "cpu": 1, "mem": 100, "node": 1}
    running = records[3]
    assert running.end is None  # Unknown: still running, counted up to now
    assert running.tres == {"cpu": 8, "mem": 1536, "node": 1, "gres/gpu": 2}  # typed GPU not counted twice
    assert records[4].state == "CANCELLED"
    assert records[4].tres["mem"] == Decimal("0.5")
    assert records[5].tres == {"cpu": 1, "mem": 1024 * 1024, "energy": 55, "fs/disk": 0}  # unknown TRES kept


def test_tres_units():
    assert parse_tres("mem=2G,vmem=3K") == {"mem": 2048, "vmem": Decimal(3) / 1024}
    assert parse_tres("mem=100") == {"mem": 100}
    assert parse_tres("") == {}
    for bad in ("cpu", "cpu=", "=1", "cpu=x", "mem=5Q", "cpu=-1", "cpu=NaN"):
        with pytest.raises(MalformedLine):
            parse_tres(bad)


def test_elapsed():
    assert parse_elapsed("1-02:03:04") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert parse_elapsed("45-00:00:00") == timedelta(days=45)
    assert parse_elapsed("00:00:07") == timedelta(seconds=7)
    assert parse_elapsed("03:07") == timedelta(minutes=3, seconds=7)
    for bad in ("", "x", "1-2", "00:61:00", "--1:00:00", "-1-00:00:00"):
        with pytest.raises(MalformedLine):
            parse_elapsed(bad)


MALFORMED = [
    "20|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1,oops,node=1",  # TRES w/o =
    "21|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=abc",  # bad number
    "22|ac|c|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # | inside a field
    "23|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00",  # a field short
    "|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # empty JobID
    "24||bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # empty Account
    "25|acc||2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # empty User
    "26|acc|bob|2024-05-01 00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # other time format
    "27|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|1-2:xx|00:00:00|cpu=1",  # bad Elapsed
    "28|acc|bob|2024-05-01T02:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1",  # End before Start
]


def test_malformed_lines_are_logged_and_skipped_without_losing_others(caplog):
    good = "30|acc|bob|2024-05-01T00:00:00|2024-05-01T01:00:00|COMPLETED|01:00:00|00:00:00|cpu=1,gres/gpu=1"
    lines = [good] + MALFORMED + ["", good.replace("30|", "31|", 1)]
    stats = ParseStats()
    with caplog.at_level(logging.WARNING, logger="slurm_sync.slurm.sacct"):
        records = list(parse_lines(lines, stats))
    assert [r.job_id for r in records] == ["30", "31"]
    assert stats.skipped == len(MALFORMED) and stats.records == 2
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == len(MALFORMED)
    for line, message in zip(MALFORMED, warned):
        assert repr(line) in message  # the line itself is in the log


def test_no_tres_on_a_job_that_ran_aborts_the_read():
    # what sacct prints when it fetched the jobs but not the TRES names from slurmdbd
    with pytest.raises(SacctError):
        list(parse_lines(["2|usexp|usx1|2026-11-25T11:59:45|2026-11-25T12:00:15|COMPLETED|00:00:30|00:00:00|"]))


def test_parsed_lines_feed_usage():
    window = month_window(2024, 5)
    records = list(parse_lines(RECORDED))
    report = compute_usage(records, window, {"acc": "r"}, COMPONENTS, now=datetime(2024, 5, 2, 2, 3, 4, tzinfo=UTC))
    # job 7_3: 2 GPUs since May 1st 00:00, running until now = 26h03m04s
    assert same(report.per_user["acc"]["bob"]["gpu"], Fraction(2 * (26 * 3600 + 3 * 60 + 4), 3600))
    # carol: 1 TiB for a day = 1024*1024 MB x 1440 min / 61440
    assert report.per_user["acc"]["carol"]["mem"] == Decimal(1024 * 1024 * 1440) / 61440


# ---- the line source ------------------------------------------------------------------

def test_popen_lines_streams_and_reports_failure(tmp_path):
    source = PopenLines(timeout=30)
    script = "import sys\nfor i in range(3): print(f'l{i}', flush=True)\nsys.exit(int(sys.argv[1]))\n"
    assert list(source([sys.executable, "-c", script, "0"])) == ["l0\n", "l1\n", "l2\n"]
    lines = source([sys.executable, "-c", script + "", "3"])
    with pytest.raises(SacctError, match="exited 3"):
        list(lines)
    assert source.calls == 2


def test_popen_lines_timeout_and_zone():
    with pytest.raises(SacctError, match="timed out"):
        list(PopenLines(timeout=0.5)(["sleep", "30"]))
    assert list(PopenLines(timeout=10)(["sh", "-c", "echo $TZ $SLURM_TIME_FORMAT"])) == ["UTC standard\n"]


def test_read_jobs_one_call_through_a_fake_source():
    calls = []

    def fake(argv):
        calls.append(argv)
        return iter(RECORDED)

    start, end = month_window(2024, 5)
    records = list(read_jobs(["acc", "usexp"], start, end, lines=fake))
    assert len(calls) == 1 and len(records) == 6


# ---- the real bed -------------------------------------------------------------------------

def _sbatch(user: str, account: str, seconds: int) -> str:
    done = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", f"--account={account}", "--mem=64",
         "--chdir=/tmp", "--output=/dev/null", "--wrap", f"sleep {seconds}"],
        capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().split(";")[0]


def _wait_done(job_ids, timeout=120):
    """Until slurmdbd has every job's end and eligible time: squeue empties before slurmctld's completion
    message reaches the database (until then sacct shows the job RUNNING with ElapsedRaw growing), and
    slurmdbd 22.05 first writes a job's row with no eligible time, which ``sacct -j`` shows (Eligible
    Unknown) but a time-window query (``-S/-E``, how usage is read) does not list: measured here, the End
    could arrive ~1 s before the Eligible time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-o", "%A", "-j", ",".join(job_ids)],
                                capture_output=True, text=True, timeout=60).stdout.split()
        if not queued:
            rows = subprocess.run(["sacct", "-X", "-P", "-n", "-o", "Eligible,End", "-j", ",".join(job_ids)],
                                  capture_output=True, text=True, timeout=60).stdout.split()
            if len(rows) == len(job_ids) and not any("Unknown" in row.split("|") for row in rows):
                return
        time.sleep(0.5)
    raise AssertionError(f"jobs {job_ids} not ended in accounting after {timeout}s")


@pytest.fixture
def bed_accounts(slurm_sandbox):
    """Two accounts under the sandbox, two unix users each associated with both.

    The users (names used by these tests only) are removed completely afterwards: their
    DefaultAccount is in the sandbox, so their associations cannot go one by one.
    """
    from tests.plugins.slurm_bed import add_slurm_user, ensure_unix_user, sacctmgr

    accounts = [f"{slurm_sandbox}_a", f"{slurm_sandbox}_b"]
    sacctmgr("-i", "add", "account", ",".join(accounts), f"parent={slurm_sandbox}")
    users = [ensure_unix_user("ususer1"), ensure_unix_user("ususer2")]
    for account in accounts:
        for user in users:
            add_slurm_user(user, account)
    yield accounts, users
    sacctmgr("-i", "remove", "user", "where", f"name={','.join(users)}", check=False)


@pytest.mark.bed
def test_real_jobs_read_with_one_sacct(bed_accounts):
    accounts, users = bed_accounts
    jobs = {_sbatch(user, account, 2): (account, user) for account in accounts for user in users}
    _wait_done(list(jobs))
    # ground truth: each job's full rows from `sacct -j`, no truncation
    truth = {}
    out = subprocess.run(["sacct", "-j", ",".join(jobs), "-X", "-P", "-n", "--noconvert",
                          "-o", "JobID,Account,User,ElapsedRaw,AllocTRES"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for line in out.splitlines():
        job_id, account, user, elapsed, tres = line.split("|")
        assert jobs[job_id] == (account, user)
        pairs = dict(p.split("=") for p in tres.split(","))
        cpu_seconds = int(pairs["cpu"]) * int(elapsed)
        mem_seconds = int(pairs["mem"].rstrip("M")) * int(elapsed)
        key = (account, user)
        got = truth.setdefault(key, [0, 0])
        got[0] += cpu_seconds
        got[1] += mem_seconds
    assert len(truth) == 4 and all(v[0] > 0 for v in truth.values())

    now = datetime.now(UTC)
    window = (now - timedelta(days=1), now + timedelta(days=1))
    source = PopenLines(timeout=60)
    stats = ParseStats()
    records = list(read_jobs(accounts, *window, lines=source, stats=stats))
    assert source.calls == 1 and stats.skipped == 0
    assert sorted(r.job_id for r in records) == sorted(jobs)
    report = compute_usage(records, window, {a: f"res-{a}" for a in accounts}, COMPONENTS, now)
    for (account, user), (cpu_seconds, mem_seconds) in truth.items():
        assert same(report.per_user[account][user]["cpu"], Fraction(cpu_seconds, 60 * 60000))
        assert same(report.per_user[account][user]["mem"], Fraction(mem_seconds, 60 * 61440))
    for account in accounts:
        cpu = sum(v[0] for (a, _), v in truth.items() if a == account)
        assert same(report.totals[account]["cpu"], Fraction(cpu, 60 * 60000))


@pytest.fixture
def job_table(bed_accounts):
    from testkit.job_rows import JobTable

    table = JobTable.from_slurm_conf()
    accounts, _ = bed_accounts
    yield table
    table.delete_synthetic(accounts)  # before the sandbox goes: a running row blocks its removal


@pytest.mark.bed
def test_injected_rows_across_a_month_boundary(bed_accounts, job_table):
    from testkit.job_rows import JobRow

    accounts, users = bed_accounts
    a, b = accounts
    base = job_table.next_job_id()
    rows = [
        # 23:00 Jan 31 -> 01:30 Feb 1 UTC: 1 h in January, 1.5 h in February
        JobRow(base, a, users[0], datetime(2024, 1, 31, 23, tzinfo=UTC), datetime(2024, 2, 1, 1, 30, tzinfo=UTC),
               {"cpu": 2, "mem": 2048, "node": 1, "gres/gpu": 1}),
        # a whole-day job on the last day of January
        JobRow(base + 1, b, users[1], datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC),
               {"cpu": 4, "mem": 1000, "node": 1}),
        # started in December, ran into February: all of January
        JobRow(base + 2, b, users[0], datetime(2023, 12, 20, tzinfo=UTC), datetime(2024, 2, 3, tzinfo=UTC),
               {"cpu": 1, "mem": 100, "node": 1, "gres/gpu": 2}),
    ]
    assert job_table.insert(rows) == 3
    resources = {acc: f"res-{acc}" for acc in accounts}
    now = datetime(2024, 3, 1, tzinfo=UTC)
    reports = {}
    for month in (1, 2):
        window = month_window(2024, month)
        records = list(read_jobs(accounts, *window))
        assert sorted(r.job_id for r in records) == sorted(str(r.job_id) for r in rows)
        # sacct runs without --truncate: the records carry the jobs' real times, compute_usage clips them
        real = {str(r.job_id): (r.start, r.end) for r in rows}
        assert {r.job_id: (r.start, r.end) for r in records} == real
        reports[month] = compute_usage(records, window, resources, COMPONENTS, now)
    jan, feb = reports[1], reports[2]
    assert jan.totals[a]["gpu"] == 1 and feb.totals[a]["gpu"] == Decimal("1.5")
    assert jan.per_user[a][users[0]]["cpu"] == Decimal(2 * 60) / 60000
    assert feb.per_user[a][users[0]]["cpu"] == Decimal(2 * 90) / 60000
    assert jan.per_user[b][users[1]]["cpu"] == Decimal(4 * 1440) / 60000
    assert users[1] not in feb.per_user.get(b, {})
    assert jan.per_user[b][users[0]]["gpu"] == 2 * 24 * 31
    assert feb.per_user[b][users[0]]["gpu"] == 2 * 24 * 2
    # whole-run totals are preserved by the split
    both = compute_usage(list(read_jobs(accounts, month_window(2024, 1)[0], month_window(2024, 2)[1])),
                         (month_window(2024, 1)[0], month_window(2024, 2)[1]), resources, COMPONENTS, now)
    for account in accounts:
        for kind in ("cpu", "mem", "gpu"):
            assert jan.totals[account][kind] + feb.totals[account][kind] == both.totals[account][kind]


@pytest.mark.bed
def test_a_suspended_job_is_billed_what_slurm_says_it_ran(bed_accounts, job_table):
    """slurmdbd's own Elapsed leaves the suspension out: inside one month the amount is Elapsed x TRES exactly;
    across a month's end the two months add up to it."""
    from testkit.job_rows import JobRow

    accounts, users = bed_accounts
    a, b = accounts
    base = job_table.next_job_id()
    tres = {"cpu": 2, "mem": 1024, "node": 1, "gres/gpu": 1}
    rows = [JobRow(base, a, users[0], datetime(2024, 3, 10, 8, tzinfo=UTC), datetime(2024, 3, 10, 12, tzinfo=UTC),
                   tres, suspended=5400),  # 4 h, 1.5 h of it suspended
            JobRow(base + 1, b, users[1], datetime(2024, 3, 31, 22, tzinfo=UTC), datetime(2024, 4, 1, 2, tzinfo=UTC),
                   tres, suspended=3600)]  # 2 h in each month, 1 h suspended somewhere
    job_table.insert(rows)
    out = subprocess.run(["sacct", "-j", f"{base},{base + 1}", "-X", "-P", "-n", "-o", "JobID,ElapsedRaw,Suspended"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    elapsed = {job: int(raw) for job, raw, _ in (line.split("|") for line in out.splitlines())}
    assert elapsed == {str(base): 9000, str(base + 1): 10800}  # what SLURM says each ran
    resources = {acc: f"res-{acc}" for acc in accounts}
    now = datetime(2024, 4, 2, tzinfo=UTC)
    march, april = month_window(2024, 3), month_window(2024, 4)
    records = list(read_jobs(accounts, march[0], april[1]))
    assert {r.job_id: r.suspended for r in records} == {str(base): 5400, str(base + 1): 3600}
    in_march = compute_usage(records, march, resources, COMPONENTS, now)
    in_april = compute_usage(records, april, resources, COMPONENTS, now)
    assert in_march.totals[a]["gpu"] == Decimal(elapsed[str(base)]) / 3600  # Elapsed x 1 GPU, in hours
    assert in_march.per_user[a][users[0]]["cpu"] == Decimal(2 * elapsed[str(base)]) / 60 / 60000
    assert in_march.totals[b]["gpu"] + in_april.totals[b]["gpu"] == Decimal(elapsed[str(base + 1)]) / 3600
    assert in_march.totals[b]["gpu"] == in_april.totals[b]["gpu"] == Decimal("1.5")


def test_time_shape_is_strict():
    from slurm_sync.slurm.sacct import parse_time

    assert parse_time("2024-02-29T23:59:59") == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    for bad in ("2024-02-29 23:59:59", "2024-02-29T23:59:59+02:00", "2024-02-30T00:00:00", "Unknown", "",
                "20240229T235959"):
        with pytest.raises(MalformedLine):
            parse_time(bad)
