"""Membership-sync benchmark: N allocations on the real bed, then idle cycles and one team change.

    eval "$(python -m testkit testbed env)"; python benchmarks/membership_sync.py --allocations 500

Builds the allocations with the real order processor (one batch), then runs MembershipSync in
process against the emulator and the real sacctmgr, counting Waldur requests (the emulator's
log) and SLURM processes and writes (a spy on the executor). Targets: an idle cycle
is 0 SLURM writes and at most one Waldur request per page of each listing; one team change is
one write. ``--per-resource`` plays a token that may not list the provider's project
permissions (teams read per resource, the fallback).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench_bed import remove_tree  # noqa: E402

from slurm_sync.domain.desired import NamingPolicy  # noqa: E402
from slurm_sync.domain.components import parse_components  # noqa: E402
from slurm_sync.sync.membership import MembershipSync  # noqa: E402
from slurm_sync.sync.pull import OrderProcessor  # noqa: E402
from slurm_sync.slurm.runner import NativeExecutor  # noqa: E402
from slurm_sync.slurm.sacctmgr import SacctmgrClient  # noqa: E402
from testkit.waldur_emulator import WaldurEmulator  # noqa: E402
from slurm_sync.waldur.api import WaldurAPI  # noqa: E402

COMPONENTS_YAML = "cpu: {accounting_type: usage, measured_unit: k-Hours, label: CPU, unit_factor: 60000}\n"
OFFERING_COMPONENTS = [{"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"}]


class Spy(NativeExecutor):
    def __init__(self):
        super().__init__(timeout=900)
        self.calls = []

    def run(self, argv, *, timeout=None, input=None, check=True):
        self.calls.append(list(argv))
        return super().run(argv, timeout=timeout, input=input, check=check)

    def writes(self):
        return sum(1 for argv in self.calls if argv[:2] == ["sacctmgr", "-i"])


def seed(emu, allocations, customers, projects_per_customer, users_per_project):
    offering = emu.add_offering("SLURM bench", components=OFFERING_COMPONENTS)
    projects, users = [], []
    for c in range(customers):
        customer = emu.add_customer(f"Bench customer {c}", slug=f"mc{c}")
        for p in range(projects_per_customer):
            projects.append(emu.add_project(customer["uuid"], f"Bench project {c}-{p}", slug=f"mp{c}-{p}"))
    for i in range(len(projects) * users_per_project + 1):
        user = emu.add_user(f"member{i}")
        emu.add_offering_user(offering["uuid"], user["uuid"], f"mu{i:04d}")
        users.append(user)
    resources = []
    for n in range(allocations):
        index = n % len(projects)
        order = emu.create_order(offering["uuid"], projects[index]["uuid"], type="Create", limits={},
                                 attributes={"name": f"mbench-{n}"})
        if n < len(projects):  # a project's team is per project: seed it once
            for k in range(users_per_project):
                emu.add_team_member(order["marketplace_resource_uuid"], users[index * users_per_project + k]["uuid"])
        resources.append(order["marketplace_resource_uuid"])
    return offering, resources, users[-1]


def cycle(name, sync, spy, emu):
    spy.calls.clear()
    before = len(emu.requests)
    started = time.monotonic()
    result = sync.run()
    seconds = time.monotonic() - started
    sacctmgr = [argv for argv in spy.calls if argv[0] == "sacctmgr"]
    print(f"{name}: {seconds:.2f} s, Waldur requests {len(emu.requests) - before}, sacctmgr processes "
          f"{len(sacctmgr)}, writes {spy.writes()}, associations added {len(result.added)}, removed "
          f"{len(result.removed)}")
    return result


def orders(name, processor, spy, emu, count):
    spy.calls.clear()
    before = len(emu.requests)
    started = time.monotonic()
    result = processor.process(processor.waldur.active_orders())
    requests = len(emu.requests) - before
    writes = [argv for argv in spy.calls if argv[:2] == ["sacctmgr", "-i"]]
    kinds = {}
    for argv in writes:
        kinds[" ".join(argv[2:4])] = kinds.get(" ".join(argv[2:4]), 0) + 1
    print(f"{name}: {time.monotonic() - started:.2f} s, done {len(result.by_result('done'))}, Waldur requests "
          f"{requests} ({requests / count:.2f} per order), sacctmgr writes {len(writes)} {kinds}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=500)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--projects", type=int, default=5, help="projects per customer")
    parser.add_argument("--users", type=int, default=3, help="members per project")
    parser.add_argument("--profile", choices=("current", "7.0"), default="current")
    parser.add_argument("--per-resource", action="store_true", help="the token may not list project permissions")
    parser.add_argument("--orders", type=int, default=50, help="Update and Terminate orders measured at the end")
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        print('run `eval "$(python -m testkit testbed env)"` first', file=sys.stderr)
        return 2
    emu = WaldurEmulator(token="bench", profile=args.profile).start()
    parent = f"mbench{os.getpid()}"
    policy = NamingPolicy(parent, "mc_", "mp_", "ma_", 34)
    spy = Spy()
    sacctmgr = SacctmgrClient(spy)
    try:
        offering, resources, newcomer = seed(emu, args.allocations, args.customers, args.projects, args.users)
        api = WaldurAPI(emu.url, "bench", offering["uuid"])
        processor = OrderProcessor(api, sacctmgr, parse_components(yaml.safe_load(COMPONENTS_YAML)), policy)
        print(f"{args.allocations} allocations ({args.customers} customers x {args.projects} projects, "
              f"{args.users} members each), Waldur {args.profile}")
        orders(f"{args.allocations} Create orders", processor, spy, emu, args.allocations)
        emu.token_is_provider_owner = not args.per_resource
        sync = MembershipSync(api, sacctmgr, policy)
        cycle("first cycle (looks up the service provider)", sync, spy, emu)
        cycle("idle cycle", sync, spy, emu)
        emu.add_team_member(resources[0], newcomer["uuid"])
        cycle("one member joins a project", sync, spy, emu)
        emu.remove_team_member(resources[0], newcomer["uuid"])
        cycle("the member leaves", sync, spy, emu)
        cycle("idle cycle", sync, spy, emu)
        for kind, limits in (("Update", {}), ("Terminate", None)):
            batch = resources[:args.orders]
            for resource in batch:
                project = emu.get_resource(resource)["project_uuid"]
                emu.create_order(offering["uuid"], project, type=kind, limits=limits, resource_uuid=resource)
            orders(f"{len(batch)} {kind} orders", processor, spy, emu, len(batch))
    finally:
        emu.stop()
        remove_tree(parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
