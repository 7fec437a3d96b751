"""Push of limits and associations: what Waldur shows vs what SLURM has, as the list of calls to send.

Pure functions over one read of each side (the offering's resources, one ``show assoc``, one
paged read of Waldur's associations): nothing is sent when both agree, so an idle cycle costs
the reads only. Limits are converted back through the unit table and rounded down
(``Components.waldur_limits``): a read-back can never show more than SLURM enforces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.components import Components, whole_limits

# resources in these states are mid-order: pull reports them when the order is done
SETTLED_STATES = ("OK",)


@dataclass
class Differences:
    limits: Dict[str, Dict[str, int]] = field(default_factory=dict)  # resource uuid -> the whole new limits
    add: List[Tuple[str, str]] = field(default_factory=list)           # (resource uuid, username)
    remove: List[Tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.limits or self.add or self.remove)


def limit_differences(present: Mapping[str, Mapping[str, Any]], actual: ActualState,
                      components: Components) -> Dict[str, Dict[str, int]]:
    """{resource uuid: limits to set} where SLURM's GrpTRESMins differ from the resource's limits."""
    changes: Dict[str, Dict[str, int]] = {}
    for account, resource in sorted(present.items()):
        if resource.get("state") not in SETTLED_STATES:
            continue
        enforced = components.waldur_limits(actual.limits(account))
        shown = whole_limits(resource.get("limits") or {})
        if any(shown.get(t) != v for t, v in enforced.items()):
            changes[resource["uuid"]] = {**shown, **enforced}
    return changes


def association_differences(present: Mapping[str, Mapping[str, Any]], actual: ActualState,
                            shown: Optional[Mapping[str, Set[str]]]) -> Tuple[List[Tuple[str, str]],
                                                                                List[Tuple[str, str]]]:
    """(to create, to delete) as (resource uuid, username); nothing when Waldur keeps no associations."""
    if shown is None:
        return [], []
    add, remove = [], []
    for account, resource in sorted(present.items()):
        allocation = resource.get("resource_uuid")
        if not allocation or resource.get("state") not in SETTLED_STATES:
            continue
        in_slurm = set(actual.users.get(account, ()))
        in_waldur = set(shown.get(allocation, ()))
        add += [(resource["uuid"], user) for user in sorted(in_slurm - in_waldur)]
        remove += [(resource["uuid"], user) for user in sorted(in_waldur - in_slurm)]
    return add, remove


def differences(present: Mapping[str, Mapping[str, Any]], actual: ActualState, components: Components,
                shown_associations: Optional[Mapping[str, Set[str]]]) -> Differences:
    add, remove = association_differences(present, actual, shown_associations)
    return Differences(limit_differences(present, actual, components), add, remove)

