"""Scale curve: n Creates then n Terminates through a real worker, beside the floor (one `sacctmgr load` of the
same tree), at growing n, each size on a private bed of its own that is purged afterwards.

    python benchmarks/scale_curve.py [--sizes 50,500,1000,2000] [--batch 1000]

The shape is a site's: n/10 customers, n/4 projects, each project a team of 3-10 members (every allocation of a
project gets that team). Counts every sacctmgr process and write (`-i`), and the time spent in them, with a
PATH shim. The Redis is the benchmark's own, the beds are its own: nothing shared is touched. Prints one table
row per size. Then, for each of ``--rows`` (100,000 and 1,000,000 job rows in a month), the push cycles of 1,000
allocations (benchmarks/push_cycle.py: cold, idle, incremental, recount, checked against the rows' ground truth).

    python benchmarks/scale_curve.py --sizes 50,500,1000,2000 --rows 100000,1000000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_bed import SacctmgrCalls, own_redis, private_bed, sender, wait_final  # noqa: E402
from pull_orders import COMPONENTS  # noqa: E402
from slurm_sync.settings import Settings  # noqa: E402
from slurm_sync.domain.real_tree import ActualState  # noqa: E402
from slurm_sync.domain.slurm_objects import AccountSpec, AddAccounts  # noqa: E402
from slurm_sync.slurm.runner import NativeExecutor  # noqa: E402
from slurm_sync.slurm.sacctmgr import SacctmgrClient  # noqa: E402
from testkit.celery_procs import start_worker, sync_environment  # noqa: E402
from testkit.waldur_emulator import WaldurEmulator  # noqa: E402

PARENT = "scale"


def seed(emu: WaldurEmulator, n: int) -> tuple:
    offering = emu.add_offering("SLURM scale", components=COMPONENTS)
    customers = [emu.add_customer(f"Scale customer {c}", slug=f"sc{c}") for c in range(max(1, n // 10))]
    projects, teams = [], []
    for p in range(max(1, n // 4)):
        projects.append(emu.add_project(customers[p % len(customers)]["uuid"], f"Scale project {p}", slug=f"sp{p}"))
        team = []
        for k in range(3 + p % 8):
            user = emu.add_user(f"scale-user-{p}-{k}")
            emu.add_offering_user(offering["uuid"], user["uuid"], f"su{p}x{k}")
            team.append(user["uuid"])
        teams.append(team)
    orders = []
    for a in range(n):
        order = emu.create_order(offering["uuid"], projects[a % len(projects)]["uuid"], type="Create",
                                 limits={"cpu": 100 + a}, attributes={"name": f"scale-{a}"})
        for user in teams[a % len(projects)]:
            emu.add_team_member(order["marketplace_resource_uuid"], user)
        orders.append(order)
    return offering, orders


def taken(calls: SacctmgrCalls) -> tuple:
    """(writes, processes, seconds in sacctmgr) since the last call; then starts counting anew."""
    figures = calls.writes, calls.processes, calls.seconds
    calls.reset()
    return figures


def our_tree(client: SacctmgrClient) -> AddAccounts:
    """What slurm-sync made under PARENT, as one load (parents first)."""
    rows = client.read_associations()
    tree = ActualState(rows)
    accounts = list(reversed(tree.subtree(PARENT)))
    specs = tuple(AccountSpec(a, tree.parent(a) or "root", description=tree.description(a),
                              grp_tres_mins=tree.limits(a)) for a in accounts)
    users = tuple((user, a) for a in accounts for user in sorted(tree.users.get(a, ())))
    return AddAccounts(specs, users)


def age_associations(days: int = 2) -> None:
    """Make the private bed's associations look ``days`` old. slurmdbd 22.05 deletes an association younger than a
    day (and without jobs) row by row, renumbering the tree's lft/rgt for each: minutes for thousands; an older one
    (a site's allocation, which lived for more than a day or ran a job) it only marks deleted."""
    db = {k: os.environ[f"SLURM_SYNC_TESTBED_DB_{k}"] for k in ("HOST", "PORT", "USER", "PASSWORD", "NAME")}
    table = f"{os.environ['SLURM_SYNC_TESTBED_CLUSTER']}_assoc_table"
    subprocess.run(["mariadb", "--protocol=tcp", f"-h{db['HOST']}", f"-P{db['PORT']}", f"-u{db['USER']}",
                    f"-p{db['PASSWORD']}", db["NAME"], "-e",
                    f"UPDATE `{table}` SET creation_time = creation_time - {days * 86400}"], check=True, timeout=120)


def slurm_sync_point(n: int, batch: int, work: Path, young: bool) -> dict:
    calls = SacctmgrCalls(work / "bin")
    redis_proc, broker = own_redis(work)
    emu = WaldurEmulator(token="bench").start()
    worker = None
    try:
        offering, orders = seed(emu, n)
        env = sync_environment(os.environ, PATH=f"{work / 'bin'}:{os.environ['PATH']}", WALDUR_API_URL=emu.url,
                               WALDUR_API_TOKEN="bench", WALDUR_OFFERING_UUID=offering["uuid"],
                               SLURM_DEFAULT_ACCOUNT=PARENT, CELERY_BROKER_URL=broker, REDIS_URL=broker,
                               SLURM_SYNC_BATCH_SIZE=str(batch))
        worker = start_worker(env, work)
        app = sender(broker)
        calls.reset()
        started = time.monotonic()
        app.send_task("tasks.pull.poll_orders")
        point = {"create_s": wait_final(emu, n, started, worker, 3600)}
        point["create_writes"], point["create_procs"], point["create_slurm_s"] = taken(calls)
        point["erred"] = sum(1 for o in orders if emu.get_order(o["uuid"])["state"] != "done")
        client = SacctmgrClient(NativeExecutor(timeout=600), timeout=600)
        point["tree"] = our_tree(client)
        if not young:
            age_associations()
        for order in orders:
            emu.create_order(offering["uuid"], order["project_uuid"], type="Terminate",
                             resource_uuid=order["marketplace_resource_uuid"])
        started = time.monotonic()
        app.send_task("tasks.pull.poll_orders")
        point["terminate_s"] = wait_final(emu, 2 * n, started, worker, 3600)
        point["terminate_writes"], point["terminate_procs"], point["terminate_slurm_s"] = taken(calls)
        point["left"] = len(ActualState(client.read_associations()).subtree(PARENT)) - 1
        return point
    finally:
        if worker:
            worker.kill()
        emu.stop()
        redis_proc.terminate()


def floor(tree: AddAccounts) -> float:
    client = SacctmgrClient(NativeExecutor(timeout=3600), timeout=3600)
    started = time.monotonic()
    client.apply([tree])
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500,1000,2000")
    parser.add_argument("--batch", type=int, default=Settings.batch_size, help="SLURM_SYNC_BATCH_SIZE (the product's default)")
    parser.add_argument("--young", action="store_true", help="terminate allocations minutes old (the worst case: "
                        "slurmdbd renumbers its tree per association) instead of ones that lived for two days")
    parser.add_argument("--rows", default="100000,1000000",
                        help="job rows per month for the push cycles of 1,000 allocations ('' for none)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: each size brings up a private SLURM bed", file=sys.stderr)
        return 2
    print(f"{'n':>5} {'accounts':>8} {'users':>6} | {'Creates s':>9} {'in sacctmgr':>11} {'writes':>6} {'procs':>5} | "
          f"{'1 load s':>8} {'ratio':>5} | {'Terminate s':>11} {'in sacctmgr':>11} {'writes':>6} {'procs':>5} "
          f"{'left':>4}", flush=True)
    for n in (int(size) for size in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="slurm-sync-scale-"))
        (work / "bin").mkdir()
        with private_bed(f"scale{n}"):
            p = slurm_sync_point(n, args.batch, work, args.young)
        with private_bed(f"floor{n}"):
            floor_s = floor(p["tree"])
        print(f"{n:>5} {len(p['tree'].accounts):>8} {len(p['tree'].users):>6} | {p['create_s']:>9.1f} "
              f"{p['create_slurm_s']:>11.1f} {p['create_writes']:>6} {p['create_procs']:>5} | {floor_s:>8.1f} "
              f"{p['create_s'] / floor_s:>5.2f} | {p['terminate_s']:>11.1f} {p['terminate_slurm_s']:>11.1f} "
              f"{p['terminate_writes']:>6} {p['terminate_procs']:>5} {p['left']:>4}"
              + (f"  ({p['erred']} Creates erred)" if p["erred"] else ""), flush=True)
    failed = 0
    for rows in (int(r) for r in args.rows.split(",") if r):
        print(f"\npush cycles, 1,000 allocations, {rows} job rows this month:", flush=True)
        failed |= subprocess.run([sys.executable, str(Path(__file__).with_name("push_cycle.py")),
                                  "--allocations", "1000", "--rows", str(rows)]).returncode
    return failed


if __name__ == "__main__":
    sys.exit(main())
