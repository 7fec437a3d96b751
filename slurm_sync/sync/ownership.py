"""Which of the offering's resources push may report: those whose account carries slurm-sync's mark for them.

A resource's ``backend_id`` alone proves nothing: staff may type a site account into it, or another tool made
the account. Pull and membership sync already change only accounts with the mark (:mod:`slurm_sync.domain.plan`);
push reads usage and users only of those too, so no site account's jobs are billed to a resource and no site user
is reported as its member. An account another tool made is proved by ``slurm-sync adopt`` (it writes the mark).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from slurm_sync.domain.desired import ownership_mark


def owned_resources(resources: Mapping[str, Dict[str, Any]],
                    descriptions: Mapping[str, str]) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """({account: resource} push may report, [one note per resource it must leave alone]). ``descriptions`` is
    every account's Description; an account missing from it is kept (it vanished: the state report errs the
    resource, as before)."""
    kept: Dict[str, Dict[str, Any]] = {}
    skipped: List[str] = []
    for account, resource in resources.items():
        description = descriptions.get(account)
        uuid = str(resource["uuid"])
        if description is None or description in (ownership_mark("allocation", uuid),
                                                   ownership_mark("allocation", uuid.replace("-", ""))):
            kept[account] = resource
            continue
        skipped.append(f"resource {uuid}: SLURM account {account!r} (its backend_id) is not slurm-sync's account "
                       f"for it: its Description is {description!r}; no usage, users, limits or state of it are "
                       "reported (an account another tool made: slurm-sync adopt)")
    return kept, skipped
