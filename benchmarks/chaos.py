"""Chaos benchmark: orders and a month of usage through a faulty Waldur while the worker is killed.

    eval "$(python -m testkit testbed env)"; python benchmarks/chaos.py            # 200 Create, 20 Update, 20 Terminate

A real worker and beat (as operators run them) on the real bed, with their own Redis server (a private
port, nothing shared is flushed). The emulator answers a share of calls with 5xx (half of them after
doing the work, the answer lost), drops a share of connections after the work, and adds latency; the
worker is SIGKILLed every few seconds and started again. Then the faults stop. Printed: orders done
while the faults lasted, seconds to all done after they stopped, Waldur requests per order, duplicates
(an order approved or reported done twice, an account made twice: must be 0), kills survived, and the
month's usage posted under the same faults against the ground truth of the job rows.

With ``--dead-worker`` it measures instead how long a killed worker's orders wait when no worker comes back
under its name: a batch is killed mid-way, another worker (another node name) runs, and the seconds from the
kill until every order is final are printed (bound: 1.5 x SLURM_SYNC_ORDER_LOCK_TTL, then the batch's own time).

Not a test: the figures are for the closing note and docs/development.md.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_bed import own_redis, remove_tree  # noqa: E402
from testkit.celery_procs import start_beat, start_worker, sync_environment  # noqa: E402
from testkit.job_rows import JobRow, JobTable  # noqa: E402
from testkit.waldur_emulator import WaldurEmulator  # noqa: E402

UTC = timezone.utc
COMPONENTS_YAML = """
cpu: {accounting_type: usage, measured_unit: 'CPU-hours', label: CPU, unit_factor: 60}
mem: {accounting_type: limit, measured_unit: 'GB-hours', label: RAM, unit_factor: 61440, limit: 10}
"""
OFFERING_COMPONENTS = [{"type": "cpu", "name": "CPU", "measured_unit": "CPU-hours", "billing_type": "usage"},
                       {"type": "mem", "name": "RAM", "measured_unit": "GB-hours", "billing_type": "limit"}]
LOGINS = ("chaos1", "chaos2", "chaos3")
CENT = Decimal("0.01")


class World:
    """The offering, its customers/projects, team members and orders in the emulator."""

    def __init__(self, emu: WaldurEmulator, customers: int):
        self.emu = emu
        self.offering = emu.add_offering("SLURM chaos", components=OFFERING_COMPONENTS)
        self.members = []
        for login in LOGINS:
            user = emu.add_user(f"{login}-waldur")
            emu.add_offering_user(self.offering["uuid"], user["uuid"], login)
            self.members.append(user)
        self.projects = []
        for c in range(customers):
            customer = emu.add_customer(f"Chaos customer {c}", slug=f"cc{c}")
            for p in range(2):
                self.projects.append(emu.add_project(customer["uuid"], f"Chaos project {c}-{p}", slug=f"cp{c}x{p}"))
        self.count = 0

    def creates(self, n: int) -> list:
        orders = []
        for _ in range(n):
            project = self.projects[self.count % len(self.projects)]
            order = self.emu.create_order(self.offering["uuid"], project["uuid"], type="Create", limits={"mem": 5},
                                          attributes={"name": f"chaos-{self.count}"})
            for member in random.Random(self.count).sample(self.members, 2):
                self.emu.add_team_member(order["marketplace_resource_uuid"], member["uuid"])
            orders.append(order)
            self.count += 1
        return orders

    def change(self, order: dict, type: str, limits=None) -> dict:
        resource = self.emu.get_resource(order["marketplace_resource_uuid"])
        return self.emu.create_order(self.offering["uuid"], resource["project_uuid"], type=type, limits=limits,
                                     resource_uuid=resource["uuid"])


def finished(emu: WaldurEmulator, orders: list) -> int:
    return sum(emu.get_order(o["uuid"])["state"] in ("done", "erred") for o in orders)


def successes(emu: WaldurEmulator, fragment: str) -> Counter:
    """Per object uuid, how many POSTs whose path holds ``fragment`` took effect: answered 2xx, or struck by a
    fault after the work (502 here, or a dropped connection, logged as 0); 503 strikes before the work."""
    counts: Counter = Counter()
    for r in emu.log.snapshot():
        if r.method == "POST" and fragment in r.path and (200 <= r.status < 300 or r.status in (0, 502)):
            counts[r.path.rstrip("/").split("/")[-2]] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--terminates", type=int, default=20)
    parser.add_argument("--customers", type=int, default=10)
    parser.add_argument("--error-rate", type=float, default=0.2, help="share of calls answered 5xx")
    parser.add_argument("--drop-rate", type=float, default=0.02, help="share of connections dropped after the work")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds added to every call")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between worker SIGKILLs (0: none)")
    parser.add_argument("--fault-seconds", type=float, default=600.0, help="the faults last at most this long")
    parser.add_argument("--jobs", type=int, default=2000, help="job rows in the usage month")
    parser.add_argument("--poll", type=float, default=15.0, help="SLURM_SYNC_POLL_INTERVAL")
    parser.add_argument("--dead-worker", action="store_true", help="measure a takeover by another node instead")
    parser.add_argument("--concurrency", type=int, default=8, help="SLURM_SYNC_WALDUR_CONCURRENCY (1: one call at a time)")
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        print('run `eval "$(python -m testkit testbed env)"` first', file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="slurm-sync-chaos-"))
    components = work / "components.yaml"
    components.write_text(COMPONENTS_YAML)
    redis_proc, redis_url = own_redis(work)
    emu = WaldurEmulator(token="chaos").start()
    world = World(emu, args.customers)
    parent = f"chaos{os.getpid()}"
    env = sync_environment(os.environ, WALDUR_API_URL=emu.url, WALDUR_API_TOKEN="chaos",
                           WALDUR_OFFERING_UUID=world.offering["uuid"], WALDUR_SYNC_DIRECTION="both",
                           SLURM_DEFAULT_ACCOUNT=parent, SLURM_CUSTOMER_PREFIX="xc_", SLURM_PROJECT_PREFIX="xp_",
                           SLURM_ALLOCATION_PREFIX="xa_", SLURM_TRES_CONFIG_PATH=str(components),
                           CELERY_BROKER_URL=redis_url, REDIS_URL=redis_url,
                           SLURM_SYNC_POLL_INTERVAL=str(args.poll), SLURM_SYNC_USAGE_INTERVAL="20",
                           SLURM_SYNC_WALDUR_CONCURRENCY=str(args.concurrency))
    from tests.plugins.slurm_bed import ensure_unix_user
    for login in LOGINS:
        ensure_unix_user(login)
    worker = start_worker(env, work, name="chaos")
    beat = start_beat(env, work)
    kills = 0
    if args.dead_worker:
        try:
            return dead_worker(emu, world, env, work, worker, args.creates)
        finally:
            beat.kill()
            emu.stop()
            remove_tree(parent)
            redis_proc.terminate()
    try:
        # the allocations that Update and Terminate act on, made without faults
        base = world.creates(args.updates + args.terminates)
        wait(lambda: finished(emu, base) == len(base), 600, "the base allocations")
        # backdate them to the month's start: the usage month's jobs are theirs
        month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        for order in base:
            emu.store.get("resources", order["marketplace_resource_uuid"])["created"] = month_start
        requests_before = len(emu.log.snapshot())
        orders = (world.creates(args.creates)
                  + [world.change(o, "Update", {"mem": 7}) for o in base[:args.updates]]
                  + [world.change(o, "Terminate") for o in base[args.updates:]])
        truth = usage_month(base[:args.updates], emu, args.jobs)

        emu.faults.latency(args.latency)
        half = args.error_rate / 2
        emu.faults.fail_rate(half, status=503, seed=15)
        emu.faults.fail_rate(half / (1 - half), status=502, after=True)  # of what is left: half after the work
        emu.faults.drop_rate(args.drop_rate)
        started = time.monotonic()
        next_kill = started + args.kill_every if args.kill_every else float("inf")
        while time.monotonic() - started < args.fault_seconds and finished(emu, orders) < len(orders):
            if time.monotonic() >= next_kill:
                worker.kill()
                kills += 1
                worker = start_worker(env, work, name="chaos")
                next_kill = time.monotonic() + args.kill_every
            time.sleep(0.5)
        fault_seconds = time.monotonic() - started
        done_in_faults = finished(emu, orders)
        emu.faults.clear()
        calm = time.monotonic()
        wait(lambda: finished(emu, orders) == len(orders), 600, "every order after the faults")
        after = time.monotonic() - calm
        wait(lambda: usage_matches(emu, truth), 300, "the usage after the faults")
        usage_after = time.monotonic() - calm
        requests = len(emu.log.snapshot()) - requests_before
        states = Counter(emu.get_order(o["uuid"])["state"] for o in orders)
        approve_twice = sum(1 for n in successes(emu, "approve_by_provider").values() if n > 1)
        done_twice = sum(1 for n in successes(emu, "set_state_done").values() if n > 1)
        accounts = Counter(description for _, description in allocation_accounts(parent))
        made_twice = sum(1 for n in accounts.values() if n > 1)
        expected = args.creates + args.updates
        print(f"orders: {len(orders)} ({args.creates} Create, {args.updates} Update, {args.terminates} Terminate); "
              f"faults: {args.error_rate:.0%} 5xx (half after the work), {args.drop_rate:.0%} dropped, "
              f"{args.latency * 1000:.0f} ms latency, worker SIGKILL every {args.kill_every:.0f} s; Waldur "
              f"concurrency {args.concurrency}, at most {emu.log.max_in_flight} calls in flight")
        print(f"done while the faults lasted: {done_in_faults}/{len(orders)} "
              f"({done_in_faults / len(orders):.0%}) in {fault_seconds:.0f} s; kills survived: {kills}")
        print(f"after the faults stopped: all orders final in {after:.1f} s, usage right in {usage_after:.1f} s")
        print(f"final states: {dict(states)}")
        print(f"Waldur requests: {requests} ({requests / len(orders):.2f} per order, usage cycles included)")
        print(f"duplicates: approved twice {approve_twice}, done twice {done_twice}, account made twice "
              f"{made_twice}; allocation accounts {sum(accounts.values())} (expected {expected})")
        print(f"usage: {len(truth)} allocations, {args.jobs} job rows, posted totals equal the ground truth")
    finally:
        worker.kill()
        beat.kill()
        emu.stop()
        JobTable.from_slurm_conf().delete_synthetic()
        remove_tree(parent)
        redis_proc.terminate()
        print(f"(kills: {kills}; logs in {work})")
    return 0


def dead_worker(emu: WaldurEmulator, world: World, env: dict, work: Path, worker, creates: int) -> int:
    """Kill the worker mid-batch; another node takes over. Seconds from the kill until every order is final."""
    orders = world.creates(creates)
    emu.faults.latency(0.05, path_contains="set_backend_id")  # a batch long enough to be killed in its middle
    wait(lambda: emu.count("POST", "approve_by_provider") >= len(orders), 300, "the batch's approvals")
    worker.kill()
    killed = time.monotonic()
    done_at_kill = finished(emu, orders)
    emu.faults.clear()
    heir = start_worker(env, work, name="heir")
    try:
        wait(lambda: finished(emu, orders) == len(orders), 600, "every order after the kill")
    finally:
        heir.kill()
    seconds = time.monotonic() - killed
    print(f"dead worker: {len(orders)} orders, {done_at_kill} final at the kill; all final {seconds:.1f} s after it "
          f"(another node; SLURM_SYNC_ORDER_LOCK_TTL {env.get('SLURM_SYNC_ORDER_LOCK_TTL', '40')} s)")
    done_twice = sum(1 for n in successes(emu, "set_state_done").values() if n > 1)
    print(f"duplicates: done twice {done_twice}")
    return 0


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def usage_month(orders: list, emu: WaldurEmulator, jobs: int) -> dict:
    """Job rows for the allocations of ``orders`` this month, written into slurmdbd; {resource: cpu hours}."""
    table = JobTable.from_slurm_conf()
    now = datetime.now(UTC).replace(microsecond=0)
    month_start = now.replace(day=1, hour=0, minute=0, second=0)
    span = int((now - month_start).total_seconds()) - 7200
    accounts = {}
    for order in orders:
        resource = emu.get_resource(order["marketplace_resource_uuid"])
        accounts[resource["backend_id"]] = resource["uuid"]
    names = sorted(accounts)
    team = {name: [u for _, u in user_rows(name)] for name in names}
    rng = random.Random(15)
    rows, seconds = [], Counter()
    first = table.next_job_id()
    for i in range(jobs):
        account = names[i % len(names)]
        begin = month_start + timedelta(seconds=rng.randrange(0, span))
        length = timedelta(seconds=rng.randrange(60, 7200))
        cpus = rng.choice((1, 2, 4, 8))
        rows.append(JobRow(first + i, account, team[account][i % len(team[account])], begin, begin + length,
                           {"cpu": cpus, "mem": 100, "node": 1}))
        seconds[account] += cpus * int(length.total_seconds())
    table.insert(rows)
    return {accounts[a]: (Decimal(seconds[a]) / 3600).quantize(CENT, rounding=ROUND_HALF_UP) for a in names}


def usage_matches(emu: WaldurEmulator, truth: dict) -> bool:
    period = datetime.now(UTC).strftime("%Y-%m-01")
    for resource, hours in truth.items():
        posted = [Decimal(u["usage"]) for u in emu.component_usages(resource, period) if u["type"] == "cpu"]
        if not posted or posted[-1] != hours:
            return False
    return True


def user_rows(account: str) -> list:
    out = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", f"account={account}", "format=account,user"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.split("|")[1]]


def allocation_accounts(parent: str) -> list:
    out = subprocess.run(["sacctmgr", "-n", "-P", "show", "account", "format=account,description"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.startswith("xa_")]


if __name__ == "__main__":
    sys.exit(main())
