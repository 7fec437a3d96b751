"""Render ``sacctmgr load`` flat files (fed on stdin as ``file=/dev/stdin``).

One load is one sacctmgr process: creating many accounts, their limits and user
associations this way costs about one commit instead of one per command. Every value is
checked by :mod:`safety` first; free text is quoted with single quotes, which the safe
alphabet can never contain.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from slurm_sync.domain import alphabet as safety
from slurm_sync.domain.slurm_objects import AccountSpec


def tres_minutes(limits: Mapping[str, int]) -> str:
    """{tres: minutes} -> ``cpu=600,gres/gpu=5`` (checked, sorted for stable output)."""
    checked = safety.limits(limits)
    return ",".join(f"{key}={checked[key]}" for key in sorted(checked))


def _account_line(spec: AccountSpec) -> str:
    safety.owned_account(spec.name)
    parts = [f"Account - '{spec.name}'"]
    # sacctmgr fills an empty description/organization with the account name; say it explicitly.
    parts.append(f"Description='{safety.text(spec.description or spec.name, 'description')}'")
    parts.append(f"Organization='{safety.text(spec.organization or spec.name, 'organization')}'")
    if spec.grp_tres_mins:
        parts.append(f"GrpTRESMins={tres_minutes(spec.grp_tres_mins)}")
    return ":".join(parts)


def render(cluster: str, accounts: Sequence[AccountSpec], users: Iterable[Tuple[str, str]] = ()) -> str:
    """A load file creating ``accounts`` (parents before children) and ``users`` associations.

    No ``DefaultAccount`` is written, on purpose (measured, 22.05): a user new to SLURM then
    gets the account it is first listed under as DefaultAccount, and an existing user keeps
    its default; writing one would move an existing user's default. Beware that ``load``
    also re-parents an existing account listed under another parent and merges its limits.
    """
    safety.name(cluster, "cluster")
    by_parent: Dict[str, List[AccountSpec]] = {}
    for spec in accounts:
        by_parent.setdefault(safety.name(spec.parent, "parent account"), []).append(spec)
    users_by_account: Dict[str, List[str]] = {}
    for user, account in users:
        users_by_account.setdefault(safety.owned_account(account), []).append(safety.user(user))

    lines = [f"Cluster - '{cluster}'"]
    created = {spec.name for spec in accounts}
    emitted: set = set()

    def emit(parent: str) -> None:
        # A "Parent - P" block may only follow the line that created P: walk the tree downwards.
        children = by_parent.get(parent, [])
        members = users_by_account.pop(parent, [])
        if children or members:
            lines.append(f"Parent - '{parent}'")
            lines.extend(_account_line(spec) for spec in children)
            lines.extend(f"User - '{user}'" for user in members)
        for spec in children:
            if spec.name not in emitted:
                emitted.add(spec.name)
                emit(spec.name)

    for parent in [p for p in by_parent if p not in created]:
        emit(parent)
    if emitted != created:
        raise ValueError(f"accounts not reachable from an existing parent: {sorted(created - emitted)}")
    for account in list(users_by_account):  # associations to accounts that exist already
        emit(account)
    return "\n".join(lines) + "\n"



def render_limits(cluster: str, limits: Iterable[Tuple[str, str, Mapping[str, int]]]) -> str:
    """A load file changing only the GrpTRESMins of existing accounts: (account, parent, limits).

    Each account is listed under the parent it already has (``load`` would move it otherwise)
    and with no Description/Organization, which ``load`` then leaves as they are (measured).
    ``load`` merges: a TRES not named keeps its value; -1 clears one.
    """
    return _under_parents(cluster, ((parent, f"Account - '{safety.owned_account(account)}':"
                                             f"GrpTRESMins={tres_minutes(minutes)}") for account, parent, minutes in limits))


def _under_parents(cluster: str, entries: Iterable[Tuple[str, str]]) -> str:
    """A load file of existing accounts' lines, each under the parent it has: (parent, account line)."""
    safety.name(cluster, "cluster")
    by_parent: Dict[str, List[str]] = {}
    for parent, line in entries:
        by_parent.setdefault(safety.name(parent, "parent account"), []).append(line)
    lines = [f"Cluster - '{cluster}'"]
    for parent, accounts in by_parent.items():
        lines.append(f"Parent - '{parent}'")
        lines.extend(accounts)
    return "\n".join(lines) + "\n"


def render_defaults(cluster: str, moves: Iterable[Tuple[str, str, Sequence[str]]]) -> str:
    """A load file moving users' DefaultAccount to accounts they are associated with: (account, parent, users).

    Each account is listed under the parent it has, with no Description (kept as it is), then its users with
    ``DefaultAccount``: ``load`` moves an existing user's default that way (measured on 22.05: "Changed Default
    Account for User u a -> b"), in one commit for every user and account.
    """
    safety.name(cluster, "cluster")
    lines = [f"Cluster - '{cluster}'"]
    for account, parent, users in moves:
        account = safety.owned_account(account)
        lines += [f"Parent - '{safety.name(parent, 'parent account')}'", f"Account - '{account}'",
                  f"Parent - '{account}'"]
        lines += [f"User - '{safety.user(user)}':DefaultAccount='{account}'" for user in users]
    return "\n".join(lines) + "\n"


def render_marks(cluster: str, marks: Iterable[Tuple[str, str, str]]) -> str:
    """A load file changing only the Description of existing accounts: (account, parent, Description).

    Each account is listed under the parent it has (``load`` would move it otherwise), with no Organization,
    limit, QoS or user: ``load`` leaves those as they are and changes the Description alone (measured on 22.05,
    ``sacctmgr dump`` before and after differs in Descriptions only; tests/test_adopt_bed.py checks it).
    """
    return _under_parents(cluster, ((parent, f"Account - '{safety.owned_account(account)}':"
                                             f"Description='{safety.text(description, 'description')}'")
                                    for account, parent, description in marks))
