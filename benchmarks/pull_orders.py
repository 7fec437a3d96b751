"""Pull benchmark: N Create orders through a real worker on the real bed; prints the figures.

    eval "$(python -m testkit testbed env)"; python benchmarks/pull_orders.py --orders 500

Counts every sacctmgr process (and the writing ones, `-i`) with a PATH shim in front of the
real binary, and every Waldur request from the emulator's request log. Targets:
500 orders <= 30 s, <= 5 Waldur requests per order, an idle cycle with 0 SLURM writes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_bed import SacctmgrCalls, own_redis, remove_tree, sender, wait_final  # noqa: E402
from testkit.celery_procs import start_worker, sync_environment  # noqa: E402
from testkit.waldur_emulator import WaldurEmulator  # noqa: E402

COMPONENTS = [{"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
              {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
              {"type": "gpu", "name": "GPU", "measured_unit": "hours", "billing_type": "usage"}]


def seed(emu: WaldurEmulator, orders: int, customers: int, users_per_order: int, project_count: int = 0) -> list:
    offering = emu.add_offering("SLURM bench", components=COMPONENTS)
    users = []
    for i in range(users_per_order * customers):
        user = emu.add_user(f"bench-user{i}")
        emu.add_offering_user(offering["uuid"], user["uuid"], f"bu{i:03d}")
        users.append(user)
    projects = []
    owners = [emu.add_customer(f"Bench customer {c}", slug=f"bc{c}") for c in range(customers)]
    for p in range(project_count or customers):  # project p belongs to customer p % customers
        projects.append(emu.add_project(owners[p % customers]["uuid"], f"Bench project {p}", slug=f"bp{p}"))
    created = []
    for n in range(orders):
        order = emu.create_order(offering["uuid"], projects[n % len(projects)]["uuid"], type="Create", limits={},
                                 attributes={"name": f"bench-{n}"})
        # a resource's team is its project's members (as in Waldur): each project gets its own
        # ``users_per_order`` members, so every allocation has exactly that many users
        project = (n % len(projects)) % customers
        for k in range(users_per_order):
            emu.add_team_member(order["marketplace_resource_uuid"],
                                users[(project * users_per_order + k) % len(users)]["uuid"])
        created.append(order)
    return offering, created


def push_cycles(emu: WaldurEmulator, offering_uuid: str, env: dict, concurrency: int = 8) -> None:
    """Two push cycles over the allocations just made: the first reports what Waldur lacks
    (associations, zero usage), the second is idle and should only read."""
    from slurm_sync.domain.components import load_components
    from slurm_sync.sync.push import UsageReporter
    from testkit.memory_stores import MemoryStore
    from slurm_sync.slurm.runner import NativeExecutor
    from slurm_sync.slurm.sacctmgr import SacctmgrClient
    from slurm_sync.waldur.api import WaldurAPI
    reporter = UsageReporter(WaldurAPI(emu.url, "bench", offering_uuid, concurrency=concurrency), SacctmgrClient(NativeExecutor(timeout=300)),
                             load_components(env.get("SLURM_TRES_CONFIG_PATH") or "config-components.yaml"),
                             MemoryStore())
    for name in ("push cycle 1", "idle push cycle"):
        emu.log.clear()
        started = time.monotonic()
        result = reporter.run()
        print(f"{name}: {time.monotonic() - started:.2f} s, Waldur requests {result.waldur_requests} "
              f"(usage posts {result.usage_posts}, user-usage posts {result.user_usage_posts}, "
              f"association posts {result.association_posts}, limit posts {result.limit_posts}), "
              f"sacct calls {result.sacct_calls}, at most {emu.log.max_in_flight} in flight")


def timeline(records) -> str:
    """When the first request came, the approvals, the gap (SLURM) and the completions ran, from the request log."""
    start = min(r.arrived for r in records)
    spans = []
    for name in ("approve_by_provider", "set_backend_id", "set_state_done"):
        mine = [r for r in records if r.path.endswith(name + "/")]
        if mine:
            spans.append(f"{name} {min(r.arrived for r in mine) - start:.1f}-{max(r.answered for r in mine) - start:.1f} s")
    return ", ".join(spans) + f" (from the first request, {len(records)} requests)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--users", type=int, default=3, help="team members per order")
    parser.add_argument("--batch", type=int, default=500, help="SLURM_SYNC_BATCH_SIZE")
    parser.add_argument("--profile", choices=("current", "7.0"), default="current", help="emulated Waldur generation")
    parser.add_argument("--projects", type=int, default=0, help="projects (default: one per customer)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every Waldur request (the emulator's "
                        "latency fault): a remote Waldur")
    parser.add_argument("--concurrency", type=int, default=0, help="SLURM_SYNC_WALDUR_CONCURRENCY (default: its default)")
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        print('run `eval "$(python -m testkit testbed env)"` first', file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="slurm-sync-bench-"))
    (work / "bin").mkdir()
    calls = SacctmgrCalls(work / "bin")
    redis_proc, broker = own_redis(work)
    emu = WaldurEmulator(token="bench", profile=args.profile).start()
    offering, orders = seed(emu, args.orders, args.customers, args.users, args.projects)
    parent = f"bench{os.getpid()}"
    env = sync_environment(os.environ, PATH=f"{work / 'bin'}:{os.environ['PATH']}", WALDUR_API_URL=emu.url,
                           WALDUR_API_TOKEN="bench", WALDUR_OFFERING_UUID=offering["uuid"],
                           SLURM_DEFAULT_ACCOUNT=parent, CELERY_BROKER_URL=broker, REDIS_URL=broker,
                           SLURM_SYNC_BATCH_SIZE=str(args.batch),
                           **({"SLURM_SYNC_WALDUR_CONCURRENCY": str(args.concurrency)} if args.concurrency else {}))
    worker = start_worker(env, work)
    app = sender(broker)
    try:
        if args.latency_ms:
            emu.faults.latency(args.latency_ms / 1000)
        emu.log.clear()
        seeded_requests = len(emu.requests)
        calls.reset()
        started = time.monotonic()
        app.send_task("tasks.pull.poll_orders")
        seconds = wait_final(emu, len(orders), started, worker, 600)
        states = [emu.get_order(o["uuid"])["state"] for o in orders]
        requests = len(emu.requests) - seeded_requests
        print(f"orders: {len(orders)} ({args.customers} customers, {args.projects or args.customers} projects, "
              f"{args.users} users each), Waldur profile {args.profile}, latency {args.latency_ms:g} ms, "
              f"concurrency {args.concurrency or 'default'}; "
              f"done {states.count('done')}, erred {states.count('erred')}")
        print(f"seconds until all done: {seconds:.2f}")
        print(f"sacctmgr processes: {calls.processes}, writes (-i): {calls.writes}, {calls.seconds:.2f} s in sacctmgr")
        print(f"Waldur requests: {requests} ({requests / len(orders):.2f} per order), "
              f"at most {emu.log.max_in_flight} in flight")
        print("timeline: " + timeline(emu.requests))

        calls.reset()
        before = len(emu.requests)
        app.send_task("tasks.pull.poll_orders")
        time.sleep(3)
        print(f"idle cycle: sacctmgr writes {calls.writes}, "
              f"Waldur requests {len(emu.requests) - before}")
        push_cycles(emu, offering["uuid"], env, args.concurrency or 8)
    finally:
        worker.kill()
        emu.stop()
        remove_tree(parent)
        redis_proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
