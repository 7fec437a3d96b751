"""`slurm-sync adopt` at scale: the dry run, --apply and a second run on n incumbent allocations.

On a private SLURM bed (benchmarks/bench_bed.py private_bed, purged afterwards) and an in-process Waldur
emulator: n resources in a site's shape (n/10 customers, n/4 projects, 3 members an allocation). The tree is
the incumbent's: every name comes from waldur-site-agent 1.0.7's own naming methods (testkit.incumbent, mode
"names"), every Description and Organization is what its ``_create_backend_resource`` writes (the customer's,
project's and resource's names; the customer's and project's account as Organization), and users carry
DefaultAccount as its ``add_user`` sets it. Only the writing is ours: one ``sacctmgr load`` instead of the
incumbent's 12.7 processes an allocation, which would take hours at 2,000 (docs: the reference measured 240 s for 50).

    .venv/bin/python benchmarks/adopt.py --n 2000 [--profile 7.0]
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_bed import private_bed  # noqa: E402
from slurm_sync.cli.adopt import adopt  # noqa: E402
from slurm_sync.domain.desired import NamingPolicy  # noqa: E402
from slurm_sync.slurm.runner import NativeExecutor  # noqa: E402
from slurm_sync.slurm.sacctmgr import SacctmgrClient  # noqa: E402
from slurm_sync.waldur.api import WaldurAPI  # noqa: E402
from testkit import incumbent  # noqa: E402
from testkit.waldur_emulator.emulator import WaldurEmulator  # noqa: E402

SETTINGS = {"default_account": "root", "customer_prefix": "hpc_", "project_prefix": "hpc_", "allocation_prefix": "hpc_"}
COMPONENTS = {"cpu": {"limit": 10, "measured_unit": "hours", "unit_factor": 60, "accounting_type": "limit",
                      "label": "CPU"}}


def site(emu, offering, n):
    """n resources in Waldur and the incumbent's names for them."""
    customers = [emu.add_customer(f"Customer {i}", slug=f"cust{i}") for i in range(max(1, n // 10))]
    projects = [(emu.add_project(customers[i % len(customers)]["uuid"], f"Project {i}", slug=f"proj{i}"),
                 customers[i % len(customers)]) for i in range(max(1, n // 4))]
    rows = []
    for i in range(n):
        project, customer = projects[i % len(projects)]
        resource = emu.add_resource(offering["uuid"], project["uuid"], f"alloc {i}", limits={"cpu": 10})
        rows.append({"uuid": resource["uuid"], "name": f"alloc {i}", "customer_name": customer["name"],
                     "project_name": project["name"], "customer_slug": customer["slug"],
                     "project_slug": project["slug"], "slug": emu.store.get("resources", resource["uuid"])["slug"]})
    names = incumbent.build(SETTINGS, COMPONENTS, rows, mode="names")
    return rows, names


def load_file(cluster, rows, names):
    """The incumbent's accounts, as its create path describes them, in one load (users: 3 an allocation)."""
    lines, made = [f"Cluster - '{cluster}'"], set()
    for i, row in enumerate(rows):
        customer, project, allocation = names[row["uuid"]]
        for name, parent, text, org in ((customer, "root", row["customer_name"], customer),
                                        (project, customer, row["project_name"], project),
                                        (allocation, project, row["name"], project)):
            if name not in made:
                made.add(name)
                limit = ":GrpTRESMins=cpu=600" if name == allocation else ""
                lines += [f"Parent - '{parent}'", f"Account - '{name}':Description='{text}':Organization='{org}'"
                          + limit]
        lines += [f"Parent - '{allocation}'"] + [f"User - 'u{(i + k) % (len(rows) // 2 + 3)}'" for k in range(3)]
    return "\n".join(lines) + "\n"


def dump(cluster):
    out = subprocess.run(["sacctmgr", "dump", cluster, "file=/dev/stdout"], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    return [re.sub(r":Description='[^']*'", "", line) for line in out.splitlines() if not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--profile", default="current", choices=("current", "7.0"))
    parser.add_argument("--port-base", type=int, default=7617)
    args = parser.parse_args()
    emu = WaldurEmulator(token="bench", profile=args.profile).start()
    try:
        with private_bed("adoptbench", port_base=args.port_base) as env:
            offering = emu.add_offering("SLURM", components=[{"type": "cpu", "name": "CPU", "measured_unit": "hours",
                                                              "billing_type": "limit"}])
            rows, names = site(emu, offering, args.n)
            api = WaldurAPI(emu.url, "bench", offering["uuid"])
            for row in rows:
                api.set_backend_id(row["uuid"], names[row["uuid"]][2])
            cluster = env["SLURM_SYNC_TESTBED_CLUSTER"]
            started = time.monotonic()
            subprocess.run(["sacctmgr", "-i", "load", "file=/dev/stdin"], input=load_file(cluster, rows, names),
                           capture_output=True, text=True, timeout=7200, check=True)
            print(f"incumbent tree: {args.n} allocations, {len(set(sum(names.values(), [])))} accounts, "
                  f"loaded in {time.monotonic() - started:.1f} s")
            before = dump(cluster)
            slurm = SacctmgrClient(NativeExecutor(timeout=600))
            policy = NamingPolicy("root", "hpc_", "hpc_", "hpc_", 64)
            for label, apply in (("dry run", False), ("--apply", True), ("second run", True)):
                requests = api.request_count
                started = time.monotonic()
                adoption = adopt(api, slurm, policy, apply, io.StringIO())
                print(f"{label}: {time.monotonic() - started:.1f} s; {adoption.count('adopted')} adopted, "
                      f"{adoption.count('already ours')} already ours, {adoption.count('refused')} refused; "
                      f"{len(adoption.marks)} Descriptions; {api.request_count - requests} Waldur requests")
            print(f"sacctmgr dump less Descriptions unchanged: {dump(cluster) == before}")
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
