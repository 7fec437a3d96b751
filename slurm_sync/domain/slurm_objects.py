"""Plain data the SLURM adapter reads and writes.

The domain (desired state, plan, usage) speaks only these types; the adapter turns
them into sacctmgr/sacct argument lists and back. Every name in here has already been
reduced to the safe alphabet by :mod:`slurm_sync.domain.names` before it is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Optional, Tuple, Union


@dataclass(frozen=True)
class Association:
    """One row of ``sacctmgr show assoc``: an account association (user == "") or a user one."""

    account: str
    user: str = ""
    parent: str = ""  # parent account of an account association; "" for user rows and root
    grp_tres_mins: Mapping[str, int] = field(default_factory=dict)  # TRES -> minutes; mem in MB
    is_default: bool = False  # for user rows: this account is the user's DefaultAccount
    description: str = ""  # account rows: the account's Description (slurm-sync writes its ownership mark here)
    partition: str = ""  # a partition-specific user association (slurm-sync makes none; a site may)


@dataclass(frozen=True)
class AccountSpec:
    """An account slurm-sync wants to exist, with its parent and (optional) limits."""

    name: str
    parent: str
    description: str = ""
    organization: str = ""
    grp_tres_mins: Mapping[str, int] = field(default_factory=dict)


# ---- plan operations: each one is at most one sacctmgr commit ----------------------

@dataclass(frozen=True)
class AddAccounts:
    """Create accounts (any parents) with their limits and user associations: one ``load`` file."""

    accounts: Tuple[AccountSpec, ...]
    users: Tuple[Tuple[str, str], ...] = ()  # (user, account) associations to add


@dataclass(frozen=True)
class SetLimits:
    """Set GrpTRESMins on existing accounts; a value of -1 clears that TRES limit.

    ``parents`` names each account's parent where the planner knows it: only those accounts
    may be changed through a ``load`` file, which re-parents an account listed under another.
    """

    limits: Tuple[Tuple[str, Mapping[str, int]], ...]  # (account, {tres: minutes})
    parents: Tuple[Tuple[str, str], ...] = ()  # (account, parent)


@dataclass(frozen=True)
class AddUsers:
    """Add user associations to existing accounts."""

    users: Tuple[Tuple[str, str], ...]  # (user, account)


@dataclass(frozen=True)
class SetDefaultAccounts:
    """Move users' DefaultAccount (before removing the association it points to).

    ``parents`` names each new default account's parent where the planner knows it: those moves can go
    together in one ``load`` (listed under the parent the account has, so nothing moves).
    """

    defaults: Tuple[Tuple[str, str], ...]  # (user, new default account)
    parents: Tuple[Tuple[str, str], ...] = ()  # (account, parent)


@dataclass(frozen=True)
class RemoveUsers:
    """Remove user associations."""

    users: Tuple[Tuple[str, str], ...]  # (user, account)


@dataclass(frozen=True)
class DeleteUsers:
    """Remove users from the cluster whole: for a user losing its last association.

    ``remove user where name=U account=A`` of a user's last association leaves a live user
    with no association, and slurmdbd 22.05 then segfaults in every user listing (measured).
    """

    users: Tuple[str, ...]
    # (user, the accounts the plan saw it in): the write removes a user whole only while that is still all it has
    known: Tuple[Tuple[str, Tuple[str, ...]], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class CancelJobs:
    """Cancel every job charged to these accounts (``scancel -A``); not a sacctmgr commit."""

    accounts: Tuple[str, ...]


@dataclass(frozen=True)
class CancelUserJobs:
    """Cancel the jobs of these users charged to these accounts: a member leaving an allocation."""

    users: Tuple[Tuple[str, str], ...]  # (user, account)


@dataclass(frozen=True)
class RemoveAccounts:
    """Remove accounts (children before parents; the adapter keeps the given order)."""

    accounts: Tuple[str, ...]


@dataclass(frozen=True)
class MarkAccounts:
    """Set the Description (slurm-sync's ownership mark) of existing accounts and nothing else: ``adopt --apply``."""

    marks: Tuple[Tuple[str, str, str], ...]  # (account, its current parent, Description)


Operation = Union[AddAccounts, SetLimits, AddUsers, SetDefaultAccounts, RemoveUsers, DeleteUsers, CancelJobs,
                  CancelUserJobs, RemoveAccounts, MarkAccounts]


# ---- accounting ------------------------------------------------------------------

@dataclass(frozen=True)
class JobRecord:
    """One allocation row of ``sacct --allocations``, clipped to the queried window.

    ``tres`` holds the TRES the job held (or requested, by setting), normalised:
    mem in MB, counts as numbers. ``end`` is None for a job still running.
    """

    job_id: str
    account: str
    user: str
    start: datetime
    end: Optional[datetime]
    tres: Mapping[str, Decimal]
    state: str = ""
    suspended: int = 0  # seconds the job was suspended (sacct's Suspended): not billed
