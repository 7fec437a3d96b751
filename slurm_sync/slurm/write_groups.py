"""How removals are grouped into sacctmgr writes: bounded runs of names, and (user, account) pairs as the fewest
``name=... account=...`` cross products."""
from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Iterator, List, Mapping, Sequence, Set, Tuple

from slurm_sync.domain import alphabet as safety


def chunks(names: Sequence[str], weight: Mapping[str, int], limit: int) -> Iterator[List[str]]:
    """``names`` in order, in runs whose summed ``weight`` (1 when not given) is at most ``limit``; a name
    heavier than ``limit`` goes alone."""
    part: List[str] = []
    total = 0
    for name in names:
        cost = weight.get(name, 1)
        if part and total + cost > limit:
            yield part
            part, total = [], 0
        part.append(name)
        total += cost
    if part:
        yield part


def cross_groups(pairs: Iterable[Tuple[str, str]]) -> List[Tuple[List[str], List[str]]]:
    """(user, account) pairs -> [(users, accounts)] whose cross products are exactly the pairs.

    Accounts with the same set of users share one command (``name=u1,u2 account=a,b`` acts on
    every combination), which for an allocation's typical membership is one command in all.
    """
    users_by_account: Dict[str, Set[str]] = {}
    for user, account in pairs:
        users_by_account.setdefault(safety.owned_account(account), set()).add(safety.user(user))
    accounts_by_users: Dict[FrozenSet[str], List[str]] = {}
    for account, users in users_by_account.items():
        accounts_by_users.setdefault(frozenset(users), []).append(account)
    return [(sorted(users), accounts) for users, accounts in accounts_by_users.items()]
