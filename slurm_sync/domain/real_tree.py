"""The SLURM association tree as read in one ``sacctmgr show assoc``, indexed for diffing."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set

from slurm_sync.domain.slurm_objects import AddAccounts, AddUsers, Association, Operation, SetLimits


class ActualState:
    """Accounts with their parents and limits, users per account, each user's DefaultAccount."""

    def __init__(self, associations: Iterable[Association]):
        self.accounts: Dict[str, Association] = {}
        self.children: Dict[str, Set[str]] = defaultdict(set)
        self.users: Dict[str, Set[str]] = defaultdict(set)  # account -> users
        self.accounts_of: Dict[str, Set[str]] = defaultdict(set)  # user -> accounts
        self.default_of: Dict[str, str] = {}
        self.by_mark: Dict[str, str] = {}  # Description -> account, for slurm-sync's ownership marks
        for row in associations:
            if row.partition:  # another association the user keeps (never one slurm-sync made or manages)
                self.accounts_of[row.user].add(row.account)
                continue
            if row.user:
                self.users[row.account].add(row.user)
                self.accounts_of[row.user].add(row.account)
                if row.is_default:
                    self.default_of[row.user] = row.account
            else:
                self.accounts[row.account] = row
                if row.description.startswith("waldur-"):
                    self.by_mark.setdefault(row.description, row.account)
                if row.parent:
                    self.children[row.parent].add(row.account)

    def has(self, account: str) -> bool:
        return account in self.accounts

    def parent(self, account: str) -> Optional[str]:
        row = self.accounts.get(account)
        return row.parent if row else None

    def limits(self, account: str) -> Mapping[str, int]:
        row = self.accounts.get(account)
        return dict(row.grp_tres_mins) if row else {}

    def description(self, account: str) -> str:
        row = self.accounts.get(account)
        return row.description if row else ""

    def subtree(self, account: str) -> List[str]:
        """The account and all accounts beneath it, children before parents."""
        ordered: List[str] = []

        def walk(name: str) -> None:
            for child in sorted(self.children.get(name, ())):
                walk(child)
            ordered.append(name)

        walk(account)
        return ordered


ADDITIVE = (AddAccounts, SetLimits, AddUsers)


def after_additions(rows: Sequence[Association], operations: Sequence[Operation]) -> Optional[List[Association]]:
    """The tree as SLURM has it once ``operations`` are applied, when they only add accounts and users and set
    limits; None when any of them removes or moves something (the caller then reads SLURM again).

    This spares a big batch of Creates one full tree read per write (the read grows with the tree: 1.8 s at
    1,000 allocations). A user new to SLURM is given its first association here as DefaultAccount, which is
    what ``load`` and ``add user`` do when it is listed first; a guess that misses only costs a refused
    removal later, which the processor retries against a fresh read.
    """
    if not all(isinstance(op, ADDITIVE) for op in operations):
        return None
    out = list(rows)
    where = {(row.account, row.user): i for i, row in enumerate(out) if not row.partition}
    known_users = {row.user for row in out if row.user}

    def add_user(user: str, account: str) -> None:
        if (account, user) not in where:
            where[(account, user)] = len(out)
            out.append(Association(account=account, user=user, is_default=user not in known_users))
            known_users.add(user)

    for op in operations:
        if isinstance(op, AddAccounts):
            for spec in op.accounts:
                if (spec.name, "") not in where:
                    where[(spec.name, "")] = len(out)
                    out.append(Association(account=spec.name, parent=spec.parent, grp_tres_mins=dict(spec.grp_tres_mins),
                                           description=spec.description or spec.name))
            for user, account in op.users:
                add_user(user, account)
        elif isinstance(op, SetLimits):
            for account, change in op.limits:
                i = where[(account, "")]
                limits = {**out[i].grp_tres_mins, **change}
                out[i] = replace(out[i], grp_tres_mins={t: m for t, m in limits.items() if m != -1})
        else:
            for user, account in op.users:
                add_user(user, account)
    return out
