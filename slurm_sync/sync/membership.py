"""Membership sync: each allocation's user associations follow its project's team, with no order.

Waldur makes no order when a member joins or leaves a project, or when an offering user gets
(or loses) its username. One cycle reads three listings — the offering's settled resources, its
offering users' logins, the provider's project permissions — and SLURM once, then writes only
the difference (one plan: associations added, leaving members' jobs cancelled, associations
removed, a user whose last association goes removed whole). An idle cycle is those reads and
no write.

Only allocation accounts slurm-sync can prove it owns are touched: the account the resource's
backend_id names, carrying the resource's ownership mark, under the project account marked
for the resource's project. Resources in the middle of an order are left to that order.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.desired import NamingPolicy, ownership_mark, team_usernames
from slurm_sync.domain.names import NamingError, check_account_name
from slurm_sync.observability import metrics
from slurm_sync.domain.plan import membership_plan
from slurm_sync.domain.slurm_objects import AddUsers, CancelUserJobs
from slurm_sync.waldur.api import WaldurAPI
from slurm_sync.waldur.orders import team_of

log = logging.getLogger(__name__)
SYNCED_STATES = ("OK", "Erred")  # Creating, Updating, Terminating: an order is at work on the resource


@dataclass
class MembershipResult:
    resources: int = 0
    added: List[Tuple[str, str]] = field(default_factory=list)  # (user, account)
    removed: List[Tuple[str, str]] = field(default_factory=list)
    skipped_users: List[str] = field(default_factory=list)  # "member: why"
    not_owned: List[str] = field(default_factory=list)  # resource uuids whose account is not provably ours
    commits: int = 0
    waldur_requests: int = 0


def owned_account(resource: Mapping[str, Any], actual: ActualState) -> Optional[str]:
    """The resource's allocation account when SLURM shows it is slurm-sync's for this resource, else None."""
    try:
        account = check_account_name(resource.get("backend_id") or "")
    except NamingError:
        return None
    if actual.description(account) != ownership_mark("allocation", resource["uuid"]):
        return None
    project = actual.parent(account)
    if not project or actual.description(project) != ownership_mark("project", resource.get("project_uuid") or ""):
        return None
    return account


class MembershipSync:
    def __init__(self, waldur: WaldurAPI, slurm: Any, policy: NamingPolicy,
                 on_new_users: Optional[Callable[[List[str]], None]] = None):
        self.waldur = waldur
        self.slurm = slurm
        self.policy = policy
        self.on_new_users = on_new_users

    def run(self) -> MembershipResult:
        requests_before = self.waldur.request_count
        result = MembershipResult()
        resources = [r for r in self.waldur.resources(SYNCED_STATES) if r.get("backend_id")]
        result.resources = len(resources)
        if not resources:
            result.waldur_requests = self.waldur.request_count - requests_before
            return result
        members = self.waldur.project_members()
        logins = self.waldur.offering_logins() if members is not None else {}
        actual = ActualState(self.slurm.read_associations())
        wanted: Dict[str, Tuple[str, ...]] = {}
        for resource in resources:
            account = owned_account(resource, actual)
            if account is None:
                result.not_owned.append(resource["uuid"])
                continue
            team = (team_of(resource, members, logins) if members is not None
                    else self.waldur.resource_team(resource["uuid"]))
            users, skipped = team_usernames(team, self.policy.min_uid, self.policy.uid_of)
            for member, why in skipped:
                result.skipped_users.append(f"{member}: {why}")
                metrics.observe_skipped_user()
            wanted[account] = users
        if result.not_owned:
            log.info("membership sync: %d resource(s) have no account slurm-sync can prove it owns; left alone "
                     "(`slurm-sync adopt` says why for each)", len(result.not_owned))
        plan = membership_plan(wanted, actual, self.policy)
        if plan.operations:
            report = self.slurm.apply(plan.operations)
            result.commits = getattr(report, "commits", 0)
            for op in plan.operations:
                if isinstance(op, AddUsers):
                    result.added.extend(op.users)
                elif isinstance(op, CancelUserJobs):  # every leaving (user, account), whether removed or deleted
                    result.removed.extend(op.users)
            if result.added and self.on_new_users:
                self.on_new_users(sorted({user for user, _ in result.added}))
            log.info("membership sync: %d association(s) added, %d removed, %d commit(s)", len(result.added),
                     len(result.removed), result.commits)
            metrics.observe_membership_changes(len(result.added), len(result.removed))
        result.waldur_requests = self.waldur.request_count - requests_before
        return result
