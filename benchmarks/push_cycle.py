"""Push cycles at a site's scale: n allocations, a month of m job rows, on a private bed, through the product's
UsageReporter with its Redis stores (the benchmark's own Redis) and the Waldur emulator.

    python benchmarks/push_cycle.py [--allocations 1000] [--rows 1000000] [--new 10000]

The tree is a site's (n/10 customers, n/4 projects, teams of 3-10 of 10 unix users); the rows are injected into
the private bed's job table across this month, up to an hour ago. Cycles, each timed with what it read and sent:
  cold         the first cycle: the whole month read, every allocation's usage posted
  idle         nothing ran since: the cycle must find that out cheaply
  incremental  `--new` more jobs ended since, spread over every allocation: every allocation posts again
  final usage  what a Terminate of 10 allocations bills before their accounts go (from the ledger), beside the
               same read over their whole month
  recount      the daily recount (the month read whole again), nothing to post
After the last cycle every allocation's totals AND every user's amounts in Waldur are compared with a ground
truth computed from the injected rows themselves (exact fractions, rounded half up to cents as sent).
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import pwd
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bed import own_redis, private_bed  # noqa: E402
from slurm_sync.domain.components import parse_components  # noqa: E402
from slurm_sync.domain.desired import ownership_mark  # noqa: E402
from slurm_sync.domain.slurm_objects import AccountSpec, AddAccounts  # noqa: E402
from slurm_sync.redis_keys import RedisKeys  # noqa: E402
from slurm_sync.redis_stores import RedisReportedStore, RedisUsageLedger  # noqa: E402
from slurm_sync.slurm import runner  # noqa: E402
from slurm_sync.slurm.runner import NativeExecutor  # noqa: E402
from slurm_sync.slurm.sacct import PopenLines  # noqa: E402
from slurm_sync.slurm.sacctmgr import SacctmgrClient  # noqa: E402
from slurm_sync.sync.push import UsageReporter  # noqa: E402
from slurm_sync.waldur.api import WaldurAPI  # noqa: E402
from testkit.job_rows import JobRow, JobTable  # noqa: E402
from testkit.waldur_emulator import WaldurEmulator  # noqa: E402

UTC = timezone.utc
USERS = tuple(f"pushb{i}" for i in range(10))
COMPONENTS = parse_components({
    "cpu": {"accounting_type": "usage", "unit_factor": 60, "measured_unit": "CPU-hours"},
    "mem": {"accounting_type": "usage", "unit_factor": 61440, "measured_unit": "GB-hours"},
    "gres/gpu": {"accounting_type": "usage", "unit_factor": 60, "measured_unit": "GPU-hours"},
})
TYPES = {c.tres: c.type for c in COMPONENTS}
FACTORS = {c.type: Fraction(str(c.unit_factor)) for c in COMPONENTS}


def resource_uuid(account: str) -> str:
    """The Waldur resource of an allocation, known before the emulator runs: the tree carries its mark."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{account}.push-bench").hex


def site_tree(n: int):
    """(AddAccounts, {allocation: team}) under the parent ``pushb``."""
    customers = [f"pbc{c}" for c in range(max(1, n // 10))]
    projects = [f"pbp{p}" for p in range(max(1, n // 4))]
    specs = [AccountSpec("pushb", "root")] + [AccountSpec(c, "pushb") for c in customers]
    specs += [AccountSpec(p, customers[i % len(customers)]) for i, p in enumerate(projects)]
    teams = {}
    for a in range(n):
        name = f"pba{a}"
        specs.append(AccountSpec(name, projects[a % len(projects)],
                                 description=ownership_mark("allocation", resource_uuid(name))))
        size = 3 + (a % len(projects)) % 8
        teams[name] = [USERS[(a + k) % len(USERS)] for k in range(size)]
    users = tuple((u, a) for a, team in teams.items() for u in team)
    return AddAccounts(tuple(specs), users), teams


def make_rows(teams, count, first_id, start, end, seed):
    """``count`` ended jobs, each inside [start, end) (some from the previous month), on every allocation in turn."""
    rng = random.Random(seed)
    accounts = sorted(teams)
    span = int((end - start).total_seconds())
    rows = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        team = teams[account]
        length = rng.randrange(60, 12 * 3600)
        finish = start + timedelta(seconds=rng.randrange(min(length, span - 1), span))
        tres = {"cpu": rng.choice((1, 2, 4, 8, 16)), "mem": rng.choice((100, 1024, 4000, 16384)), "node": 1}
        if i % 5 == 0:
            tres["gres/gpu"] = rng.choice((1, 2))
        rows.append(JobRow(first_id + i, account, team[i % len(team)], finish - timedelta(seconds=length), finish,
                           tres))
    return rows


class Truth:
    """Exact usage per (account, type) and (account, user, type), from the rows themselves."""

    def __init__(self, window):
        self.window = window
        self.totals, self.users = {}, {}

    def add(self, rows):
        lo_month, hi_month = self.window
        for row in rows:
            seconds = int((min(row.end, hi_month) - max(row.start, lo_month)).total_seconds())
            if seconds <= 0:
                continue
            for tres, amount in row.tres.items():
                if tres in TYPES:
                    value = Fraction(amount * seconds) / 60 / FACTORS[TYPES[tres]]
                    key = (row.account, TYPES[tres])
                    self.totals[key] = self.totals.get(key, 0) + value
                    key = (row.account, row.user, TYPES[tres])
                    self.users[key] = self.users.get(key, 0) + value

    @staticmethod
    def cents(value):
        return Fraction(math.floor(value * 100 + Fraction(1, 2)), 100)


def compare(emu, resources, truth, period) -> str:
    """'' when Waldur shows exactly the truth (in cents), else what differs."""
    by_uuid = {r["uuid"]: a for a, r in resources.items()}
    shown_totals, shown_users = {}, {}
    usage_of = {}
    for usage in emu.store.component_usages.values():
        if usage["billing_period"].isoformat() == period and usage["resource_uuid"] in by_uuid:
            shown_totals[(by_uuid[usage["resource_uuid"]], usage["type"])] = Fraction(str(usage["usage"]))
            usage_of[usage["uuid"]] = (by_uuid[usage["resource_uuid"]], usage["type"])
    for record in emu.store.user_usages.values():
        if record["component_usage_uuid"] in usage_of:
            account, type_ = usage_of[record["component_usage_uuid"]]
            shown_users[(account, record["username"], type_)] = Fraction(str(record["usage"]))
    want_totals = {k: truth.cents(v) for k, v in truth.totals.items()}
    want_users = {k: truth.cents(v) for k, v in truth.users.items()}
    bad = [k for k in set(want_totals) | set(shown_totals) if want_totals.get(k, 0) != shown_totals.get(k, 0)]
    bad += [k for k in set(want_users) | set(shown_users) if want_users.get(k, 0) != shown_users.get(k, 0)]
    return "" if not bad else f"{len(bad)} cells differ, e.g. {sorted(bad)[:3]}"


class CommandSeconds:
    """Seconds spent in each SLURM command, from the runner's observers."""

    def __init__(self):
        self.seconds = {}
        runner.command_observers.append(self)

    def __call__(self, argv, result, seconds, write):
        name = os.path.basename(str(argv[0]))
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def take(self) -> dict:
        taken, self.seconds = self.seconds, {}
        return taken


def peak_rss_reset() -> None:
    """Start a new peak (VmHWM) for this process: each cycle's own peak is then what it needed."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_child(function):
    """``function()`` in a forked child, its value sent back pickled. The Waldur emulator stays in this process: a
    real Waldur is another process, and client and server threads sharing one interpreter lock would measure that
    lock, not the client. The child's Redis connections are its own (redis-py reconnects after a fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            payload = pickle.dumps(function())
        except BaseException as error:  # noqa: BLE001 - handed to the parent
            payload = pickle.dumps(RuntimeError(repr(error)))
        with os.fdopen(write, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        value = pickle.loads(answer.read())
    os.waitpid(pid, 0)
    if isinstance(value, BaseException):
        raise value
    return value


def cycle(name, reporter, commands, emu, now=None):
    emu.log.clear()

    def run_cycle():
        commands.take()
        peak_rss_reset()
        started = time.monotonic()
        result = reporter.run(now=now)
        return (time.monotonic() - started, result, commands.take(), peak_rss_mib(),
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)

    seconds, result, slurm, peak, sacct_peak = in_child(run_cycle)
    print(f"{name:12} {seconds:7.2f} s | " + " ".join(f"{k} {v:5.2f} s" for k, v in sorted(slurm.items()))
          + f" | rows {result.jobs:>8} | Waldur requests {result.waldur_requests:>5} (usage posts {result.usage_posts},"
          f" per-user posts {result.user_usage_posts}, at most {emu.log.max_in_flight} in flight) | recount "
          f"{'yes' if result.recounted else 'no '} | peak RSS {peak:4.0f} MiB (sacct's {sacct_peak:.0f} MiB)", flush=True)
    return seconds


def run(args, work: Path) -> int:
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-M", user], check=True, capture_output=True)
    tree, teams = site_tree(args.allocations)
    client = SacctmgrClient(NativeExecutor(timeout=3600), timeout=3600)
    started = time.monotonic()
    client.apply([tree])
    print(f"tree: {len(tree.accounts)} accounts, {len(tree.users)} user associations, one load in "
          f"{time.monotonic() - started:.1f} s", flush=True)

    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    table, truth = JobTable.from_slurm_conf(), Truth((month_start, (month_start + timedelta(days=32)).replace(day=1)))
    started = time.monotonic()
    for part in range(0, args.rows, 100_000):  # in parts: a million rows never sit in memory at once
        rows = make_rows(teams, min(100_000, args.rows - part), table.next_job_id(), month_start - timedelta(hours=6),
                         now - timedelta(hours=1), seed=part)
        table.insert(rows)
        truth.add(rows)
    print(f"rows: {args.rows} injected in {time.monotonic() - started:.1f} s", flush=True)

    redis_proc, url = own_redis(work)
    emu = WaldurEmulator(token="bench").start()
    try:
        offering = emu.add_offering("SLURM push bench", components=[
            {"type": c.type, "name": c.type, "measured_unit": c.measured_unit, "billing_type": "usage"}
            for c in COMPONENTS])
        project = emu.add_project(emu.add_customer("Bench")["uuid"], "Bench")
        resources = {a: emu.add_resource(offering["uuid"], project["uuid"], a, backend_id=a, uuid=resource_uuid(a))
                     for a in sorted(teams)}
        keys, client_redis = RedisKeys(offering["uuid"]), redis.Redis.from_url(url)
        commands = CommandSeconds()
        reporter = UsageReporter(WaldurAPI(emu.url, "bench", offering["uuid"], concurrency=args.concurrency), client, COMPONENTS,
                                 RedisReportedStore(client_redis, keys), lines=PopenLines(timeout=3600),
                                 ledger=RedisUsageLedger(client_redis, keys))
        if args.latency_ms:
            emu.faults.latency(args.latency_ms / 1000)
        cycle("cold", reporter, commands, emu)
        cycle("idle", reporter, commands, emu)
        cycle("idle", reporter, commands, emu)
        fresh = make_rows(teams, args.new, table.next_job_id(), datetime.now(UTC) - timedelta(minutes=4),
                          datetime.now(UTC) - timedelta(seconds=30), seed=-1)
        table.insert(fresh)
        truth.add(fresh)
        cycle("incremental", reporter, commands, emu)
        leaving = {a: emu.get_resource(resources[a]["uuid"]) for a in sorted(teams)[:10]}
        commands.take()
        started = time.monotonic()
        final = reporter.report_final(leaving)
        print(f"{'final usage':12} {time.monotonic() - started:7.2f} s | "
              + " ".join(f"{k} {v:5.2f} s" for k, v in sorted(commands.take().items()))
              + f" | rows {final.jobs:>8} | 10 allocations being terminated, from the ledger", flush=True)
        started = time.monotonic()
        whole = reporter.months.read((month_start.year, month_start.month), {a: r["uuid"] for a, r in leaving.items()},
                                     datetime.now(UTC), {}, None, mode="whole")
        print(f"{'  whole':12} {time.monotonic() - started:7.2f} s | rows {whole.rows:>8} | the same 10 read over "
              "their whole month (as before the ledger)", flush=True)
        cycle("recount", reporter, commands, emu, now=datetime.now(UTC) + timedelta(hours=25))
        differs = compare(emu, resources, truth, month_start.date().isoformat())
        print(f"Waldur equals the rows' ground truth ({len(truth.totals)} totals, {len(truth.users)} user cells): "
              f"{'yes' if not differs else 'NO: ' + differs}", flush=True)
        return 1 if differs else 0
    finally:
        emu.stop()
        redis_proc.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000, help="jobs that end between the idle and the next cycle")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every Waldur request (the emulator's "
                        "latency fault): a remote Waldur")
    parser.add_argument("--concurrency", type=int, default=8, help="SLURM_SYNC_WALDUR_CONCURRENCY")
    parser.add_argument("--slurm-port-base", type=int, default=6917, help="the private bed's ports")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: it brings up a private SLURM bed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="slurm-sync-push-"))
    with private_bed("pushbench", port_base=args.slurm_port_base):
        return run(args, work)


if __name__ == "__main__":
    sys.exit(main())
