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

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.desired import AccountRef, AllocationSpec, NamingPolicy, OrderRejected, name_allocation, ownership_mark
from slurm_sync.domain.slurm_objects import (AccountSpec, AddAccounts, AddUsers, CancelJobs, CancelUserJobs, DeleteUsers, Operation,
                          RemoveAccounts, RemoveUsers, SetDefaultAccounts, SetLimits)

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
    default_parents: Dict[str, str] = field(default_factory=dict)  # of the accounts in ``defaults``
    cancel: List[str] = field(default_factory=list)
    cancel_users: List[Tuple[str, str]] = field(default_factory=list)  # (user, account): a leaving member's jobs
    remove_users: List[Tuple[str, str]] = field(default_factory=list)
    delete_users: List[str] = field(default_factory=list)
    known: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # of delete_users: the accounts the tree showed
    remove_accounts: List[str] = field(default_factory=list)

    def merge(self, other: "_Changes") -> None:
        self.new_accounts.update(other.new_accounts)
        self.limits.update(other.limits)
        self.parents.update(other.parents)
        self.defaults.update(other.defaults)
        self.default_parents.update(other.default_parents)
        self.known.update(other.known)
        for mine, theirs in ((self.new_users, other.new_users), (self.add_users, other.add_users),
                             (self.cancel, other.cancel), (self.cancel_users, other.cancel_users),
                             (self.remove_users, other.remove_users),
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
            targets = set(self.defaults.values())
            ops.append(SetDefaultAccounts(tuple(sorted(self.defaults.items())), tuple(sorted(
                (account, parent) for account, parent in self.default_parents.items() if account in targets))))
        if self.cancel:
            ops.append(CancelJobs(tuple(self.cancel)))
        if self.cancel_users:
            ops.append(CancelUserJobs(tuple(self.cancel_users)))
        if self.remove_users:
            ops.append(RemoveUsers(tuple(self.remove_users)))
        if self.delete_users:
            ops.append(DeleteUsers(tuple(self.delete_users),
                                   tuple((user, self.known.get(user, ())) for user in self.delete_users)))
        if self.remove_accounts:
            ops.append(RemoveAccounts(tuple(self.remove_accounts)))
        return ops


def limit_changes(actual: Mapping[str, int], desired: Mapping[str, int], managed: Sequence[str] = ()) -> Dict[str, int]:
    """The GrpTRESMins assignments that turn ``actual`` into ``desired`` (-1 clears a TRES). Only ``managed`` TRES
    (the components file's; all when empty) are cleared: a site's own limit on another TRES (``billing``) stays."""
    change = {tres: minutes for tres, minutes in desired.items() if actual.get(tres) != minutes}
    change.update({tres: -1 for tres in actual if tres not in desired and (not managed or tres in managed)})
    return change


class _Planner:
    def __init__(self, actual: ActualState, policy: NamingPolicy):
        self.actual = actual
        self.policy = policy
        self.done = _Changes()  # merged changes of the orders accepted so far

    # -- helpers over "actual + what this batch already adds/removes" --

    def exists(self, account: str, changes: Optional[_Changes] = None) -> bool:
        adding = account in self.done.new_accounts or (changes is not None and account in changes.new_accounts)
        return (self.actual.has(account) or adding) and account not in self.done.remove_accounts

    def parent(self, account: str, changes: Optional[_Changes] = None) -> Optional[str]:
        for pending in (changes, self.done):
            if pending is not None and account in pending.new_accounts:
                return pending.new_accounts[account].parent
        return self.actual.parent(account)

    def marked(self, mark: str, changes: _Changes) -> Optional[str]:
        """The account carrying ``mark``: in SLURM, or being created by this batch."""
        for pending in (changes, self.done):
            for name, spec in pending.new_accounts.items():
                if spec.description == mark:
                    return name
        found = self.actual.by_mark.get(mark)
        return found if found and found not in self.done.remove_accounts else None

    def ensure_default(self, changes: _Changes) -> None:
        name = self.policy.default_account
        if not self.exists(name, changes):
            changes.new_accounts[name] = AccountSpec(name=name, parent=ROOT, description=DEFAULT_MARK)

    def resolve(self, changes: _Changes, ref: AccountRef, parent: str) -> str:
        """The account ``ref`` marks (it must hang under ``parent``), else a new one under a free name."""
        found = self.marked(ref.mark, changes)
        if not found:
            self._refuse_legacy(ref)
        if found:
            if self.parent(found, changes) != parent:
                raise OrderRejected(f"SLURM account {found!r} ({ref.mark}) is under {self.parent(found, changes)!r}, "
                                    f"not under {parent!r}; move it back or remove it")
            return found
        for name in ref.names:
            if not self.exists(name, changes):
                changes.new_accounts[name] = AccountSpec(name=name, parent=parent, description=ref.mark)
                return name
        raise OrderRejected(f"SLURM accounts {', '.join(map(repr, ref.names))} exist and are not slurm-sync's for "
                            f"{ref.mark}; rename them or change the SLURM_*_PREFIX settings")

    def _refuse_legacy(self, ref: AccountRef) -> None:
        """A parent an older slurm-sync made carries a plain-name mark (``waldur-project-<its own name>``). It is
        never taken by that name (a customer that copied another's slug would land in the other's account), and
        no second parent is made beside it either: ``slurm-sync adopt --apply`` proves it and gives it its uuid."""
        name = ref.names[0]
        kind = ref.mark.split("-")[1]
        if self.actual.description(name) == ownership_mark(kind, name):
            raise OrderRejected(f"SLURM account {name!r} was made by an older slurm-sync (Description "
                                f"{self.actual.description(name)!r}): run `slurm-sync adopt --apply` to prove it is "
                                f"{ref.mark} and mark it, then order again")

    def owned_allocation(self, spec: AllocationSpec, changes: _Changes) -> Optional[str]:
        """The existing account of ``spec``'s resource: its backend_id cross-checked with the ownership mark.

        An account named by the backend_id that carries another Description is not slurm-sync's to
        change (a site account, another resource's): the order is rejected, naming it. When the
        backend_id names nothing in SLURM, the account marked for the resource is used.
        """
        marked = self.marked(spec.mark, changes)
        name = spec.allocation
        if name and self.exists(name, changes):
            description = self.actual.description(name)
            if description != spec.mark:
                raise OrderRejected(f"SLURM account {name!r} is not slurm-sync's account for resource "
                                    f"{spec.resource_uuid}: its Description is {description!r}, not {spec.mark!r}; "
                                    "slurm-sync changes only accounts it made")
            return name
        return marked

    # -- one order --

    def ensure(self, spec: AllocationSpec) -> Tuple[str, _Changes]:
        changes = _Changes()
        policy = self.policy
        self.ensure_default(changes)
        customer = self.resolve(changes, spec.customer, policy.default_account)
        project = self.resolve(changes, spec.project, customer)
        name = self.owned_allocation(spec, changes)
        if name and name in self.done.new_accounts:
            raise OrderRejected(f"SLURM account {name!r} is being created for another order in this batch")
        if name:
            if self.actual.parent(name) != project:
                raise OrderRejected(f"SLURM account {name!r} exists under {self.actual.parent(name)!r}, "
                                    f"not under the project account {project!r}")
            change = limit_changes(self.actual.limits(name), spec.limits, spec.managed_tres)
            if change:
                changes.limits[name] = change
                changes.parents[name] = project
            if spec.users is not None:
                self.reconcile_users(changes, name, spec.users)
            return name, changes
        if spec.kind in ("Update", "Restore") and not spec.allocation:
            raise OrderRejected(f"no SLURM account is known for resource {spec.resource_uuid}: its backend_id is "
                                f"empty and no account carries {spec.mark!r}; a Create must have failed for it")
        name = spec.allocation or name_allocation(spec, policy, set(self.actual.accounts) | set(self.done.new_accounts)
                                                  | set(changes.new_accounts))
        if self.exists(name, changes):
            raise OrderRejected(f"SLURM account {name!r} is being created for another order in this batch")
        changes.new_accounts[name] = AccountSpec(name=name, parent=project, description=spec.mark,
                                                 grp_tres_mins=dict(spec.limits))
        changes.new_users.extend((user, name) for user in (spec.users or ()))
        return name, changes

    def reconcile_users(self, changes: _Changes, account: str, wanted: Sequence[str]) -> None:
        """Associations of ``account`` become ``wanted``; a leaving user's jobs there are cancelled first."""
        have = self.actual.users.get(account, set())
        changes.add_users.extend((user, account) for user in sorted(set(wanted) - have))
        for user in sorted(have - set(wanted)):
            changes.cancel_users.append((user, account))
            leaving = {account} | {a for pending in (self.done, changes) for u, a in pending.remove_users if u == user}
            keep = self._kept_accounts(user, leaving=leaving)
            if not keep:  # its last association: the user goes whole (and its earlier removals with it)
                for pending in (self.done, changes):
                    pending.remove_users[:] = [pair for pair in pending.remove_users if pair[0] != user]
                    pending.defaults.pop(user, None)
                changes.delete_users.append(user)
                changes.known[user] = tuple(sorted(self.actual.accounts_of.get(user, set())))
                continue
            if self.actual.default_of.get(user) in leaving:
                self.set_default(changes, user, keep[0])
            changes.remove_users.append((user, account))

    def _kept_accounts(self, user: str, leaving: Set[str]) -> List[str]:
        return sorted(self.actual.accounts_of.get(user, set()) - leaving - set(self.done.remove_accounts))

    def remove(self, spec: AllocationSpec) -> Tuple[str, _Changes]:
        changes = _Changes()
        name = self.owned_allocation(spec, changes)
        if not name or not self.actual.has(name):
            return spec.allocation, changes  # never reached SLURM, or already gone: Terminate is idempotent
        doomed = self.actual.subtree(name)
        foreign = [a for a in doomed if a != name]
        if foreign:
            raise OrderRejected(f"SLURM account {name!r} has child accounts {', '.join(map(repr, foreign))} that "
                                "slurm-sync did not make; remove or move them first")
        project = self.actual.parent(name)
        customer = self.actual.parent(project) if project else None
        default = self.policy.default_account
        # Up the tree while each parent is empty AND carries slurm-sync's mark of its kind: a site's
        # own account (of any name) is never removed.
        for candidate, owned in ((project, _mark_of_kind("project")), (customer, _mark_of_kind("customer")),
                                 (default, lambda d: d == DEFAULT_MARK)):
            if (candidate and candidate != ROOT and owned(self.actual.description(candidate))
                    and self._empty_after(candidate, set(doomed))):
                doomed.append(candidate)
            else:
                break
        changes.cancel.extend(doomed)
        changes.remove_accounts.extend(doomed)
        return name, changes  # defaults are moved once the whole batch's removals are known: move_defaults

    def move_defaults(self) -> None:
        """The adapter's RemoveAccounts removes the accounts' users (whole where nothing else is left to them);
        a user that keeps another association must first have its DefaultAccount moved there — never to an
        account this batch removes too (that cost a modify per Terminate, and the move was undone at once)."""
        removed = set(self.done.remove_accounts)
        for account in self.done.remove_accounts:
            for user in sorted(self.actual.users.get(account, ())):
                if self.actual.default_of.get(user) not in removed or user in self.done.defaults:
                    continue
                leaving = removed | {a for u, a in self.done.remove_users if u == user}
                gained = {a for u, a in self.done.new_users + self.done.add_users if u == user}
                keep = sorted((self.actual.accounts_of.get(user, set()) | gained) - leaving)
                if keep:
                    self.set_default(self.done, user, keep[0])

    def set_default(self, changes: _Changes, user: str, account: str) -> None:
        changes.defaults[user] = account
        parent = self.parent(account, changes)
        if parent:
            changes.default_parents[account] = parent

    def _empty_after(self, account: str, leaving: Set[str]) -> bool:
        children = self.actual.children.get(account, set()) - leaving - set(self.done.remove_accounts)
        adding = {n for n, spec in self.done.new_accounts.items() if spec.parent == account}
        return not children and not adding and not self.actual.users.get(account)


def _mark_of_kind(kind: str):
    prefix = ownership_mark(kind, "")
    return lambda description: description.startswith(prefix) and len(description) > len(prefix)


def membership_plan(wanted: Mapping[str, Sequence[str]], actual: ActualState, policy: NamingPolicy) -> BatchPlan:
    """Operations making each allocation account's users exactly ``wanted[account]`` (accounts already
    checked as slurm-sync's); an empty plan when SLURM already agrees."""
    planner = _Planner(actual, policy)
    for account, users in sorted(wanted.items()):
        changes = _Changes()
        planner.reconcile_users(changes, account, users)
        planner.done.merge(changes)
    return BatchPlan(operations=planner.done.operations())


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
    planner.move_defaults()
    plan.operations = planner.done.operations()
    return plan
