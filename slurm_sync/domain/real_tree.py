"""The SLURM association tree as read in one ``sacctmgr show assoc``, indexed for diffing."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional, Set

from slurm_sync.domain.slurm_objects import Association


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
