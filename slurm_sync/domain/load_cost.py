"""How long one ``sacctmgr load`` adding allocations takes on slurmdbd 22.05, estimated, to size a task's parts.

slurmdbd keeps the association tree as a nested set. New associations go in right after their parent's ``lft``,
and at each switch to another parent one ``UPDATE ... SET lft = lft+N WHERE lft > <parent>`` (and the same for
``rgt``) shifts every row to the right of it (``as_mysql_add_assocs``, 22.05). ``lft`` is indexed, so each shifted
row costs an index update: in MariaDB's slow log of a second load these updates were 69 of its 107 s. Hence:

- a load into an empty tree is cheap: it adds depth first, so little lies to the right of each insertion;
- a load into an existing tree shifts the existing rows at every new parent: its cost grows with the tree;
- two loads cost far more than one load of both (the second shifts what the first added).

So a part should be as large as finishes well inside the write timeout. The estimate:

    seconds = PER_ASSOCIATION x new associations + PER_SHIFT x parent switches x (tree rows + new accounts) / 2

was fitted to three loads measured here (site shape: n/10 customers, n/4 projects, teams of 3-10): 1,000 allocations
into an empty tree 18.7 s (estimate 25 s), 2,000 into an empty tree 52.5 s (80 s), 1,000 more into the tree of
1,000 106.9 s (107 s). It errs on the long side.
"""
from __future__ import annotations

from typing import Sequence

PER_ASSOCIATION = 0.0014  # seconds per association added
PER_SHIFT = 16e-6  # seconds per row shifted at a parent switch
ACCOUNTS_PER_ALLOCATION = 1.35  # the allocation and its share of new projects and customers (site shape)


def load_seconds(allocations: int, associations: int, tree_rows: int) -> float:
    """Estimated seconds of one load adding ``allocations`` accounts with ``associations`` associations in all
    (accounts and users) into a tree of ``tree_rows`` associations."""
    new_accounts = ACCOUNTS_PER_ALLOCATION * allocations
    return PER_ASSOCIATION * associations + PER_SHIFT * new_accounts * (tree_rows + new_accounts) / 2


def part_length(team_sizes: Sequence[int], tree_rows: int, budget: float) -> int:
    """How many of the next allocations (their team sizes, in order) one load takes within ``budget`` seconds:
    at least one."""
    associations = 0
    for count, team in enumerate(team_sizes, 1):
        associations += ACCOUNTS_PER_ALLOCATION + team
        if count > 1 and load_seconds(count, round(associations), tree_rows) > budget:
            return count - 1
    return max(1, len(team_sizes))

