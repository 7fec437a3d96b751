"""Diff the desired fragments of a batch of orders against the actual tree: the sacctmgr plan.

The plan is a short list of operations, each one commit at most, in an order that is safe
to interrupt: additions first (one ``load``), then limits, then new users, then removals
(default accounts moved before the association they point to goes, jobs cancelled before
their account goes, children before parents). Re-planning after an interruption against the
re-read tree yields exactly the rest of the work; a plan for a tree already in shape is empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .actual import ActualState
from .allocations import AllocationSpec, NamingPolicy, OrderRejected, name_allocation, ownership_mark
from .slurm.model import (AccountSpec, AddAccounts, AddUsers, CancelJobs, DeleteUsers, Operation, RemoveAccounts,
                          RemoveUsers, SetDefaultAccounts, SetLimits)

ROOT = "root"
DEFAULT_MARK = "waldur-slurm-sync"  # Description of SLURM_DEFAULT_ACCOUNT when slurm-sync made it


@dataclass
class BatchPlan:
    operations: List[Operation] = field(default_factory=list)
    accounts: Dict[str, str] = field(default_factory=dict)  # order uuid -> allocation account
    errors: Dict[str, str] = field(default_factory=dict)  # order uuid -> message for Waldur

    @property
    def empty(self) -> bool:
        return not self.operations


@dataclass
class _Changes:
    new_accounts: Dict[str, AccountSpec] = field(default_factory=dict)  # insertion order: parents first
    new_users: List[Tuple[str, str]] = field(default_factory=list)
    limits: Dict[str, Mapping[str, int]] = field(default_factory=dict)
    parents: Dict[str, str] = field(default_factory=dict)  # of the accounts in ``limits``, set with them
    add_users: List[Tuple[str, str]] = field(default_factory=list)
    defaults: Dict[str, str] = field(default_factory=dict)
    cancel: List[str] = field(default_factory=list)
    remove_users: List[Tuple[str, str]] = field(default_factory=list)
    delete_users: List[str] = field(default_factory=list)
    remove_accounts: List[str] = field(default_factory=list)

    def merge(self, other: "_Changes") -> None:
        self.new_accounts.update(other.new_accounts)
        self.limits.update(other.limits)
        self.parents.update(other.parents)
        self.defaults.update(other.defaults)
        for mine, theirs in ((self.new_users, other.new_users), (self.add_users, other.add_users),
                             (self.cancel, other.cancel), (self.remove_users, other.remove_users),
                             (self.delete_users, other.delete_users), (self.remove_accounts, other.remove_accounts)):
            mine.extend(item for item in theirs if item not in mine)

    def operations(self) -> List[Operation]:
        ops: List[Operation] = []
        if self.new_accounts:
            ops.append(AddAccounts(tuple(self.new_accounts.values()), tuple(self.new_users)))
        if self.limits:
            ops.append(SetLimits(tuple(sorted(self.limits.items())), tuple(sorted(self.parents.items()))))
        if self.add_users:
            ops.append(AddUsers(tuple(self.add_users)))
        if self.defaults:
            ops.append(SetDefaultAccounts(tuple(sorted(self.defaults.items()))))
        if self.cancel:
            ops.append(CancelJobs(tuple(self.cancel)))
        if self.remove_users:
            ops.append(RemoveUsers(tuple(self.remove_users)))
        if self.delete_users:
            ops.append(DeleteUsers(tuple(self.delete_users)))
        if self.remove_accounts:
            ops.append(RemoveAccounts(tuple(self.remove_accounts)))
        return ops


def limit_changes(actual: Mapping[str, int], desired: Mapping[str, int]) -> Dict[str, int]:
    """The GrpTRESMins assignments that turn ``actual`` into ``desired`` (-1 clears a TRES)."""
    change = {tres: minutes for tres, minutes in desired.items() if actual.get(tres) != minutes}
    change.update({tres: -1 for tres in actual if tres not in desired})
    return change


class _Planner:
    def __init__(self, actual: ActualState, policy: NamingPolicy):
        self.actual = actual
        self.policy = policy
        self.done = _Changes()  # merged changes of the orders accepted so far

    # -- helpers over "actual + what this batch already adds/removes" --

    def exists(self, account: str) -> bool:
        return (self.actual.has(account) or account in self.done.new_accounts) and account not in self.done.remove_accounts

    def parent(self, account: str) -> Optional[str]:
        if account in self.done.new_accounts:
            return self.done.new_accounts[account].parent
        return self.actual.parent(account)

    def ensure_account(self, changes: _Changes, name: str, parent: str, mark: str) -> None:
        if self.exists(name) or name in changes.new_accounts:
            found = changes.new_accounts[name].parent if name in changes.new_accounts else self.parent(name)
            if name != self.policy.default_account and found != parent:
                raise OrderRejected(f"SLURM account {name!r} already exists under {found!r}, not under {parent!r}; "
                                    "rename or move it, or change the SLURM_*_PREFIX settings")
            return
        changes.new_accounts[name] = AccountSpec(name=name, parent=parent, description=mark)

    # -- one order --

    def ensure(self, spec: AllocationSpec) -> Tuple[str, _Changes]:
        changes = _Changes()
        policy = self.policy
        self.ensure_account(changes, policy.default_account, ROOT, DEFAULT_MARK)
        self.ensure_account(changes, spec.customer, policy.default_account, ownership_mark("customer", spec.customer))
        self.ensure_account(changes, spec.project, spec.customer, ownership_mark("project", spec.project))
        name = spec.allocation
        if not name:
            owners = {n: row.description for n, row in self.actual.accounts.items()}
            name = name_allocation(spec, policy, set(self.actual.accounts) | set(self.done.new_accounts), owners)
        mark = ownership_mark("allocation", spec.resource_uuid)
        if self.exists(name) and name not in self.done.new_accounts:
            if self.actual.parent(name) != spec.project:
                raise OrderRejected(f"SLURM account {name!r} exists under {self.actual.parent(name)!r}, "
                                    f"not under the project account {spec.project!r}")
            change = limit_changes(self.actual.limits(name), spec.limits)
            if change:
                changes.limits[name] = change
                changes.parents[name] = spec.project
            if spec.users is not None:
                self.reconcile_users(changes, name, spec.users)
        elif name in self.done.new_accounts:
            raise OrderRejected(f"SLURM account {name!r} is being created for another order in this batch")
        else:
            changes.new_accounts[name] = AccountSpec(name=name, parent=spec.project, description=mark,
                                                     grp_tres_mins=dict(spec.limits))
            changes.new_users.extend((user, name) for user in (spec.users or ()))
        return name, changes

    def reconcile_users(self, changes: _Changes, account: str, wanted: Sequence[str]) -> None:
        have = self.actual.users.get(account, set())
        changes.add_users.extend((user, account) for user in sorted(set(wanted) - have))
        for user in sorted(have - set(wanted)):
            keep = self._kept_accounts(user, leaving={account})
            if not keep:
                changes.delete_users.append(user)  # its last association: the user goes whole
                continue
            if self.actual.default_of.get(user) == account:
                changes.defaults[user] = keep[0]
            changes.remove_users.append((user, account))

    def _kept_accounts(self, user: str, leaving: Set[str]) -> List[str]:
        return sorted(self.actual.accounts_of.get(user, set()) - leaving - set(self.done.remove_accounts))

    def remove(self, spec: AllocationSpec) -> Tuple[str, _Changes]:
        changes = _Changes()
        name = spec.allocation
        if not self.actual.has(name):
            return name, changes  # already gone: Terminate is idempotent
        doomed = self.actual.subtree(name)
        project = self.actual.parent(name)
        customer = self.actual.parent(project) if project else None
        if customer and self.actual.parent(customer) == self.policy.default_account:
            # Up the tree while each parent is empty AND was made by slurm-sync (its mark): a
            # site's own account of the same name is never removed.
            default = self.policy.default_account
            for candidate, mark in ((project, ownership_mark("project", project)),
                                    (customer, ownership_mark("customer", customer)), (default, DEFAULT_MARK)):
                if self.actual.description(candidate) == mark and self._empty_after(candidate, set(doomed)):
                    doomed.append(candidate)
                else:
                    break
        changes.cancel.extend(doomed)
        # The adapter's RemoveAccounts removes the accounts' users (whole where nothing else is
        # left to them); a user that keeps other accounts must first have its default moved there.
        for account in doomed:
            for user in sorted(self.actual.users.get(account, ())):
                keep = self._kept_accounts(user, leaving=set(doomed))
                if keep and self.actual.default_of.get(user) == account:
                    changes.defaults[user] = keep[0]
        changes.remove_accounts.extend(doomed)
        return name, changes

    def _empty_after(self, account: str, leaving: Set[str]) -> bool:
        children = self.actual.children.get(account, set()) - leaving - set(self.done.remove_accounts)
        adding = {n for n, spec in self.done.new_accounts.items() if spec.parent == account}
        return not children and not adding and not self.actual.users.get(account)


def plan_batch(specs: Sequence[AllocationSpec], actual: ActualState, policy: NamingPolicy) -> BatchPlan:
    """The plan for a batch of validated orders; an order that conflicts lands in ``errors`` alone."""
    planner = _Planner(actual, policy)
    plan = BatchPlan()
    for spec in sorted(specs, key=lambda s: s.remove):  # ensure before remove: a removal sees the batch's new children
        try:
            name, changes = planner.remove(spec) if spec.remove else planner.ensure(spec)
        except OrderRejected as error:
            plan.errors[spec.order_uuid] = str(error)
            continue
        planner.done.merge(changes)
        plan.accounts[spec.order_uuid] = name
    plan.operations = planner.done.operations()
    return plan
