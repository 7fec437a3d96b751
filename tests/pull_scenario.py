"""Seeding and reading helpers shared by the pull tests (emulator side and SLURM side)."""
from __future__ import annotations

import subprocess
from typing import Dict, List, Set, Tuple

COMPONENTS_YAML = """
cpu:
  limit: 100
  measured_unit: 'hours'
  accounting_type: 'limit'
  label: 'CPU'
  unit_factor: 60
mem:
  limit: 10
  measured_unit: 'gb-Hours'
  accounting_type: 'usage'
  label: 'RAM'
  unit_factor: 61440
gres/gpu:
  measured_unit: 'hours'
  accounting_type: 'limit'
  label: 'GPU'
  unit_factor: 60
"""
OFFERING_COMPONENTS = [
    {"type": "cpu", "name": "CPU", "measured_unit": "hours", "billing_type": "limit"},
    {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
    {"type": "gpu", "name": "GPU", "measured_unit": "hours", "billing_type": "limit"},
]


class Scenario:
    """An offering with customers, projects and users, and helpers to order allocations."""

    def __init__(self, emu, users=("alice", "bob", "carol")):
        self.emu = emu
        self.offering = emu.add_offering("SLURM", components=OFFERING_COMPONENTS)
        self.users = {}
        for name in users:
            user = emu.add_user(f"{name}-waldur", name.title(), f"{name}@example.org")
            emu.add_offering_user(self.offering["uuid"], user["uuid"], name)
            self.users[name] = user
        self.customers: Dict[str, dict] = {}
        self.projects: Dict[str, dict] = {}

    def project(self, customer: str, project: str) -> dict:
        if customer not in self.customers:
            self.customers[customer] = self.emu.add_customer(customer.title(), slug=customer)
        key = f"{customer}/{project}"
        if key not in self.projects:
            self.projects[key] = self.emu.add_project(self.customers[customer]["uuid"], project.title(), slug=project)
        return self.projects[key]

    def create(self, customer: str, project: str, name: str, limits=None, team=("alice",)) -> dict:
        order = self.emu.create_order(self.offering["uuid"], self.project(customer, project)["uuid"], type="Create",
                                      limits=limits or {"cpu": 10, "gpu": 2}, attributes={"name": name})
        for member in team:
            self.emu.add_team_member(order["marketplace_resource_uuid"], self.users[member]["uuid"])
        return order

    def order(self, resource_uuid: str, type: str, limits=None) -> dict:
        resource = self.emu.get_resource(resource_uuid)
        return self.emu.create_order(self.offering["uuid"], resource["project_uuid"], type=type,
                                     limits=limits, resource_uuid=resource_uuid)


def sacctmgr_rows(*args: str) -> List[List[str]]:
    out = subprocess.run(["sacctmgr", "-P", "-n", *args], capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in out.stdout.splitlines() if line]


def slurm_tree(root: str) -> Tuple[Dict[str, str], Dict[str, str], Set[Tuple[str, str]]]:
    """Under ``root``: account -> parent, account -> GrpTRESMins, and (user, account) associations."""
    rows = sacctmgr_rows("show", "assoc", "format=Account,User,ParentName,GrpTRESMins")
    parents = {a: p for a, u, p, _ in rows if not u}
    inside = {root}
    changed = True
    while changed:
        changed = False
        for account, parent in parents.items():
            if parent in inside and account not in inside:
                inside.add(account)
                changed = True
    accounts = {a: p for a, p in parents.items() if a in inside and a != root}
    limits = {a: l for a, u, _, l in rows if not u and a in accounts}
    users = {(u, a) for a, u, _, _ in rows if u and a in inside}
    return accounts, limits, users


def user_associations(user: str, prefixes: Tuple[str, ...] = ()) -> Set[str]:
    """The user's associations, cluster-wide or (``prefixes``) on accounts named like this test's."""
    return {a for a, u in sacctmgr_rows("show", "assoc", f"user={user}", "format=Account,User")
            if u == user and a.startswith(prefixes)}
