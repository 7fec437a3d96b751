"""One month's usage cycle at scale on the real bed.

1,000 allocations (accounts under one parent, each with two users) and 100,000 job rows in
one billing month written straight into the job table; then ONE sacct call streamed into the
usage computation. Prints wall time per phase, sacct calls, rows parsed, peak memory, and
whether the totals match a ground truth computed from the injected rows.

    PYTHONPATH=. python benchmarks/usage_cycle.py [--accounts 1000] [--rows 100000] [--keep]

Needs root and the test bed (brought up if it is not running), or SLURM_CONF pointing at
another throw-away bed.
"""
from __future__ import annotations

import argparse
import os
import pwd
import random
import resource
import secrets
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import testkit.testbed as testbed
from slurm_sync.domain.months import month_window
from slurm_sync.domain.components import parse_components
from slurm_sync.slurm.sacct import ParseStats, PopenLines, read_jobs, sacct_argvs
from testkit.job_rows import JobRow, JobTable
from slurm_sync.domain.usage import compute_usage

UTC = timezone.utc
USERS = ("usbench1", "usbench2")
COMPONENTS = parse_components({
    "cpu": {"accounting_type": "usage", "unit_factor": 60000},
    "mem": {"accounting_type": "usage", "unit_factor": 61440},
    "gres/gpu": {"accounting_type": "usage", "unit_factor": 60},
})
TYPES = {"cpu": "cpu", "mem": "mem", "gres/gpu": "gpu"}


def sacctmgr(*args: str) -> None:
    done = subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"sacctmgr {' '.join(args)[:80]}... exited {done.returncode}: {done.stdout}{done.stderr}")


def make_rows(accounts, first_id, count, year, month, seed=7):
    """Jobs inside the month, plus some crossing each of its boundaries."""
    rng = random.Random(seed)
    start, end = month_window(year, month)
    span = int((end - start).total_seconds())
    rows = []
    for i in range(count):
        begin = start + timedelta(seconds=rng.randrange(-6 * 3600, span))
        length = timedelta(seconds=rng.randrange(1, 2 * 86400))
        tres = {"cpu": rng.choice((1, 2, 4, 8, 16)), "mem": rng.choice((100, 1024, 4000, 16384)), "node": 1}
        if i % 5 == 0:
            tres["gres/gpu"] = rng.choice((1, 2))
        rows.append(JobRow(first_id + i, accounts[i % len(accounts)], USERS[i % 2], begin, begin + length, tres))
    return rows


def ground_truth(rows, window):
    """Per (account, type): Fractions from the rows themselves, independent of sacct."""
    totals = defaultdict(Fraction)
    factors = {c.tres: Fraction(c.unit_factor) for c in COMPONENTS}
    for row in rows:
        lo, hi = max(row.start, window[0]), min(row.end, window[1])
        seconds = int((hi - lo).total_seconds())
        if seconds <= 0:
            continue
        for tres, amount in row.tres.items():
            if tres in factors:
                totals[(row.account, TYPES[tres])] += Fraction(amount * seconds) / 60 / factors[tres]
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--month", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave accounts and rows in place")
    args = parser.parse_args(argv)

    if not os.environ.get("SLURM_CONF"):  # else: the cluster SLURM_CONF names (a throw-away one!)
        testbed.up(say=lambda message: None)
        os.environ.update(testbed.env())
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-m", user], check=True, capture_output=True)

    parent = f"b{secrets.token_hex(4)}"
    accounts = [f"{parent}_{i:04d}" for i in range(args.accounts)]
    table = JobTable.from_slurm_conf()
    timings = {}
    t0 = time.perf_counter()
    sacctmgr("add", "account", parent, "parent=root")
    sacctmgr("add", "account", ",".join(accounts), f"parent={parent}")
    for user in USERS:
        sacctmgr("add", "user", user, f"account={','.join(accounts)}")
    timings["create accounts+associations"] = time.perf_counter() - t0
    try:
        rows = make_rows(accounts, table.next_job_id(), args.rows, args.year, args.month)
        t0 = time.perf_counter()
        table.insert(rows)
        timings["insert job rows"] = time.perf_counter() - t0

        window = month_window(args.year, args.month)
        resources = {a: f"res-{a}" for a in accounts}
        now = datetime.now(UTC)
        source, stats = PopenLines(timeout=600), ParseStats()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        report = compute_usage(read_jobs(accounts, *window, lines=source, stats=stats),
                               window, resources, COMPONENTS, now)
        timings["ONE sacct + parse + usage"] = time.perf_counter() - t0
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

        # the sacct process alone, its output drained and not parsed: what the cycle cannot go below
        t0 = time.perf_counter()
        drained = sum(1 for _ in PopenLines(timeout=600)(sacct_argvs(accounts, *window)[0]))
        timings[f"  of which sacct alone ({drained} lines)"] = time.perf_counter() - t0

        # the same again under tracemalloc, for the Python heap peak of the streamed pass
        tracemalloc.start()
        compute_usage(read_jobs(accounts, *window, lines=PopenLines(timeout=600)), window, resources,
                      COMPONENTS, now)
        heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        truth = ground_truth(rows, window)
        worst = max(abs(Fraction(report.totals[a][k]) - v) for (a, k), v in truth.items())
        mismatched = [(a, k) for a in accounts for k in TYPES.values()
                      if abs(Fraction(report.totals[a][k]) - truth.get((a, k), 0)) > Fraction(1, 10 ** 40)]
        for name, seconds in timings.items():
            print(f"{name:32} {seconds:8.2f} s")
        print(f"{'sacct calls':32} {source.calls:8d}")
        print(f"{'rows parsed (records)':32} {stats.records:8d}  (lines {stats.lines}, skipped {stats.skipped})")
        print(f"{'python heap peak (streamed)':32} {heap_peak / 2**20:8.1f} MiB")
        print(f"{'python process max RSS':32} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.1f} MiB")
        if children_after > children_before:
            print(f"{'sacct max RSS':32} {children_after / 1024:8.1f} MiB")
        print(f"{'matches ground truth':32} {'yes' if not mismatched else f'NO {mismatched[:3]}'}"
              f"  (worst difference {float(worst):.1e} units)")
        return 0 if not mismatched and source.calls == 1 else 1
    finally:
        if not args.keep:
            table.delete_synthetic(accounts)
            # the benchmark's own users, removed completely: their DefaultAccount is one of ours
            for what in (["user", "where", f"name={','.join(USERS)}"],
                         ["account", "where", f"name={','.join(accounts)}"],
                         ["account", "where", f"name={parent}"]):
                done = subprocess.run(["sacctmgr", "-i", "remove", *what], capture_output=True, text=True,
                                      timeout=600)
                if done.returncode != 0:
                    print(f"cleanup: sacctmgr remove {what[0]} failed: {done.stdout}{done.stderr}", file=sys.stderr)

if __name__ == "__main__":
    sys.exit(main())
