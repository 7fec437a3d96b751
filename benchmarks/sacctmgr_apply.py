"""Create N allocations (customers -> projects -> allocations, users each) in ONE apply,
re-apply it (idempotent), change every limit, then remove it all; print seconds and commits.

Needs a running SLURM (SLURM_CONF set, e.g. ``eval "$(python -m testkit.testbed.cli env)"``).
Usage: python benchmarks/sacctmgr_apply.py [--allocations 200] [--customers 20] [--users 3]
"""
from __future__ import annotations

import argparse
import secrets
import time

from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.domain.slurm_objects import AccountSpec, AddAccounts, CancelJobs, RemoveAccounts, SetLimits
from slurm_sync.slurm.sacctmgr import SacctmgrClient


def build(prefix: str, allocations: int, customers: int, users: int):
    accounts, members = [], []
    per_customer = max(1, allocations // customers)
    for c in range(customers):
        customer = f"{prefix}c{c}"
        accounts.append(AccountSpec(customer, "root", description=f"Customer {c}"))
        for a in range(per_customer):
            project, allocation = f"{customer}p{a}", f"{customer}p{a}a"
            accounts.append(AccountSpec(project, customer))
            accounts.append(AccountSpec(allocation, project,
                                        grp_tres_mins={"cpu": 6000 + a, "mem": 1024000, "gres/gpu": 60}))
            members.extend((f"{prefix}u{c}x{u}", allocation) for u in range(users))
    return accounts, members


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--allocations", type=int, default=200)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--users", type=int, default=3)
    args = parser.parse_args()
    prefix = "bm" + secrets.token_hex(3)
    accounts, members = build(prefix, args.allocations, args.customers, args.users)
    allocations = [spec.name for spec in accounts if spec.name.endswith("a")]
    parents = tuple((spec.name, spec.parent) for spec in accounts if spec.name in allocations)
    executor = NativeExecutor(timeout=600)
    client = SacctmgrClient(executor, timeout=600)
    client.cluster  # resolve before timing
    steps = [
        ("create", [AddAccounts(tuple(accounts), tuple(members))]),
        ("re-apply", [AddAccounts(tuple(accounts), tuple(members))]),
        ("limits (all equal)", [SetLimits(tuple((a, {"cpu": 9000}) for a in allocations))]),
        ("limits (all distinct)", [SetLimits(tuple((a, {"cpu": 9000 + i}) for i, a in enumerate(allocations)),
                                             parents)]),
        ("limits (20 values)", [SetLimits(tuple((a, {"cpu": 7000 + i % 20}) for i, a in enumerate(allocations)),
                                          parents)]),
        ("remove", [CancelJobs(tuple(allocations)),
                    RemoveAccounts(tuple(spec.name for spec in reversed(accounts)))]),
    ]
    print(f"{len(allocations)} allocations, {len(accounts)} accounts, {len(members)} user associations")
    try:
        for name, operations in steps:
            before = executor.counter
            started = time.monotonic()
            report = client.apply(operations)
            print(f"{name:22} {time.monotonic() - started:7.2f} s  commits={report.commits:3}  "
                  f"processes={executor.counter - before}")
        start = time.monotonic()
        rows = client.read_associations(client.cluster)
        print(f"{'read_associations':22} {time.monotonic() - start:7.2f} s  rows={len(rows)}")
    finally:
        left = [a for a in client.read_associations() if a.account.startswith(prefix)]
        if left:
            client.apply([RemoveAccounts(tuple(sorted({a.account for a in left}, key=len, reverse=True)))])


if __name__ == "__main__":
    main()
