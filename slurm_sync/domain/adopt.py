"""Taking over the accounts another tool made: which accounts slurm-sync can prove are which resource's.

``slurm-sync adopt`` reads the offering's resources from Waldur and the SLURM tree once; this module decides,
for each resource, whether its ``backend_id`` names an allocation account under a project account under a
customer account that can only be that resource's, that project's and that customer's, and which ownership
marks (Descriptions) that takes. No I/O here, and nothing but Descriptions is ever proposed.

The proof. The allocation is the account the resource's ``backend_id`` names: a leaf, named by no other
resource, carrying no mark of anything else, two levels under a customer account that hangs under
``SLURM_DEFAULT_ACCOUNT``. Its parents are proven by the tree: every account under the project account that
some resource names belongs to this project, every one under the customer account to this customer (a
parent holding another customer's allocations is refused). Where a parent also holds accounts no resource
names (a terminated allocation the incumbent left, a site's own), the tree alone proves nothing about it;
then the names must: the waldur-site-agent (1.0.7, default hierarchy) names a customer account
``customer_prefix + customer slug`` and a project account ``project_prefix + project slug`` (its allocation
is ``allocation_prefix + resource slug`` or, with ``account_name_generation_policy: project_slug``,
``allocation_prefix + project slug`` with ``-0``, ``-1``... on a clash, both lower-cased). Our prefixes are
the incumbent's once ``import-config`` has been followed. Parents an older slurm-sync marked by name
(``waldur-project-<own name>``) are proven the same way and get their uuid marks.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from slurm_sync.domain.desired import NamingPolicy, account_ref, ownership_mark
from slurm_sync.domain.names import NamingError, check_account_name
from slurm_sync.domain.real_tree import ActualState

ROOT = "root"
ADOPTED, OURS, REFUSED = "adopted", "already ours", "refused"


@dataclass(frozen=True)
class Resource:
    """What adoption needs of a Waldur resource (a 7.0-line server sends no slugs: then only the tree proves)."""

    uuid: str
    backend_id: str = ""
    name: str = ""
    slug: str = ""
    project_uuid: str = ""
    project_slug: str = ""
    project_name: str = ""
    customer_uuid: str = ""
    customer_slug: str = ""
    customer_name: str = ""

    @classmethod
    def from_waldur(cls, row: Mapping[str, object]) -> "Resource":
        return cls(**{key: str(row.get(key) or "") for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Verdict:
    resource_uuid: str
    account: str
    status: str  # ADOPTED, OURS or REFUSED
    why: str = ""
    commands: Tuple[Tuple[str, ...], ...] = ()  # sacctmgr commands that would fix it, printed and never run


@dataclass
class Adoption:
    verdicts: List[Verdict] = field(default_factory=list)
    marks: Dict[str, Tuple[str, str]] = field(default_factory=dict)  # account -> (its parent, the mark to write)

    def count(self, status: str) -> int:
        return sum(1 for verdict in self.verdicts if verdict.status == status)


class Refused(Exception):
    def __init__(self, why: str, commands: Sequence[Tuple[str, ...]] = ()):
        super().__init__(why)
        self.commands = tuple(commands)


def _mark_kind(description: str) -> Optional[str]:
    """'allocation', 'project', 'customer' for a Description shaped like one of slurm-sync's marks."""
    match = re.fullmatch(r"waldur-(allocation|project|customer)-.+", description)
    return match.group(1) if match else None


class _Prover:
    def __init__(self, resources: Sequence[Resource], actual: ActualState, policy: NamingPolicy):
        self.actual = actual
        self.policy = policy
        self.named: Dict[str, List[Resource]] = defaultdict(list)  # backend_id -> resources naming it
        for resource in resources:
            if resource.backend_id:
                self.named[resource.backend_id].append(resource)
        self.holders: Dict[str, Set[str]] = defaultdict(set)  # Description -> accounts carrying it
        for account, row in actual.accounts.items():
            self.holders[row.description].add(account)

    def prove(self, resource: Resource) -> Tuple[str, str, str]:
        """(allocation, project account, customer account) of ``resource``; raises Refused."""
        if not resource.backend_id:
            raise Refused("no backend_id: Waldur knows no SLURM account for it")
        try:
            account = check_account_name(resource.backend_id)
        except NamingError as error:
            raise Refused(f"backend_id outside the account name policy: {error}") from None
        if not self.actual.has(account):
            raise Refused(f"backend_id {account!r} names no SLURM account")
        others = sorted(r.uuid for r in self.named[account] if r.uuid != resource.uuid)
        if others:
            raise Refused(f"{account!r} is named by {len(others) + 1} resources (also {', '.join(others)})")
        children = sorted(self.actual.children.get(account, ()))
        if children or account in (ROOT, self.policy.default_account):
            raise Refused(f"{account!r} is not an allocation: it is a site or parent account"
                          + (f" (child accounts {', '.join(children[:5])})" if children else ""))
        self._own_mark(account, ownership_mark("allocation", resource.uuid))
        project = self.actual.parent(account) or ""
        if project in (ROOT, self.policy.default_account):
            raise Refused(f"{account!r} hangs directly under {project!r}, as an old agent made allocations: "
                          "move it under its project account with the commands below, then run adopt again",
                          self._reparent(resource, account))
        customer = self.actual.parent(project) or ""
        top = self.actual.parent(customer) or ""
        if top != self.policy.default_account:
            raise Refused(f"{account!r} is under {project!r} under {customer!r} under {top!r}: slurm-sync keeps "
                          f"customer accounts under SLURM_DEFAULT_ACCOUNT ({self.policy.default_account!r}); set it "
                          "to the incumbent's root_account if that is where its customers are")
        self._parent(resource, project, "project", resource.project_uuid,
                     self.policy.project_prefix + resource.project_slug if resource.project_slug else "")
        self._parent(resource, customer, "customer", resource.customer_uuid,
                     self.policy.customer_prefix + resource.customer_slug if resource.customer_slug else "")
        return account, project, customer

    def _own_mark(self, account: str, mark: str) -> None:
        """The account may carry no other mark, and no other account this one's (a hostile or copied Description)."""
        description = self.actual.description(account)
        kind = _mark_kind(description)
        legacy = kind in ("project", "customer") and mark.startswith(ownership_mark(kind, "")) \
            and description == ownership_mark(kind, account)  # an older slurm-sync's plain-name mark
        if kind and description != mark and not legacy:
            raise Refused(f"{account!r} carries {description!r}, not {mark!r}")
        elsewhere = sorted(self.holders.get(mark, set()) - {account})
        if elsewhere:
            raise Refused(f"{mark!r} is already the Description of {', '.join(map(repr, elsewhere))}: two accounts "
                          "would claim it; find out which is right and remove or re-describe the other")

    def _parent(self, resource: Resource, parent: str, kind: str, uuid: str, incumbent_name: str) -> None:
        """Every account some resource names under ``parent`` is this project's (this customer's) own; accounts
        no resource names are allowed only where ``parent`` carries the incumbent's name for it."""
        if not uuid:
            raise Refused(f"Waldur sends no {kind} uuid for it")
        try:
            check_account_name(parent)
        except NamingError as error:
            raise Refused(f"{kind} account outside the account name policy: {error}") from None
        foreign, unknown = set(), set()
        for account in self.actual.subtree(parent)[:-1]:
            owners = self.named.get(account)
            if owners:
                foreign.update(r.uuid for r in owners if getattr(r, f"{kind}_uuid") != uuid)
            elif not self.actual.children.get(account) or kind == "project":
                unknown.add(account)
        if foreign:
            raise Refused(f"{kind} account {parent!r} holds allocations of another {kind}'s resources "
                          f"({', '.join(sorted(foreign)[:5])})")
        if unknown and parent != incumbent_name.lower() and self.actual.description(parent) != ownership_mark(kind, uuid):
            raise Refused(f"{kind} account {parent!r} also holds accounts no resource names "
                          f"({', '.join(sorted(unknown)[:5])}) and its name does not prove it is {kind} {uuid}'s")
        self._own_mark(parent, ownership_mark(kind, uuid))

    def _reparent(self, resource: Resource, account: str) -> List[Tuple[str, ...]]:
        """The sacctmgr commands that would put an allocation under slurm-sync's customer and project accounts."""
        try:
            customer = account_ref("customer", self.policy.customer_prefix, resource.customer_slug
                                   or resource.customer_name, resource.customer_uuid, self.policy.max_len)
            project = account_ref("project", self.policy.project_prefix, resource.project_slug
                                  or resource.project_name, resource.project_uuid, self.policy.max_len)
        except NamingError:
            return []
        commands: List[Tuple[str, ...]] = []
        parent = self.policy.default_account
        if not self.actual.has(parent):
            commands.append(("sacctmgr", "-i", "add", "account", parent, f"parent={ROOT}"))
        for ref in (customer, project):
            found = sorted(self.holders.get(ref.mark, ()))
            name = found[0] if found else next((n for n in ref.names if not self.actual.has(n)), ref.names[-1])
            if not found:
                commands.append(("sacctmgr", "-i", "add", "account", name, f"parent={parent}",
                                 f"Description={ref.mark}", f"Organization={name}"))
            parent = name
        commands.append(("sacctmgr", "-i", "modify", "account", "where", f"name={account}", "set", f"parent={parent}"))
        return commands


def plan_adoption(resources: Iterable[Resource], actual: ActualState, policy: NamingPolicy) -> Adoption:
    """One verdict per resource and the marks to write; a project or customer whose allocations hang under
    two different accounts is refused whole (both would carry one mark)."""
    resources = sorted(resources, key=lambda r: r.uuid)
    prover = _Prover(resources, actual, policy)
    proven: Dict[str, Tuple[str, str, str]] = {}
    adoption = Adoption()
    refused: Dict[str, Refused] = {}
    for resource in resources:
        try:
            proven[resource.uuid] = prover.prove(resource)
        except Refused as refusal:
            refused[resource.uuid] = refusal
    accounts_of: Dict[Tuple[str, str], Set[str]] = defaultdict(set)
    for resource in resources:
        if resource.uuid in proven:
            _, project, customer = proven[resource.uuid]
            accounts_of[("project", resource.project_uuid)].add(project)
            accounts_of[("customer", resource.customer_uuid)].add(customer)
    for resource in resources:
        if resource.uuid in proven:
            for kind in ("project", "customer"):
                found = accounts_of[(kind, getattr(resource, f"{kind}_uuid"))]
                if len(found) > 1:
                    refused[resource.uuid] = Refused(f"{kind} {getattr(resource, f'{kind}_uuid')}'s allocations "
                                                     f"hang under {len(found)} accounts ({', '.join(sorted(found))})")
                    break
        if resource.uuid in refused:
            refusal = refused[resource.uuid]
            adoption.verdicts.append(Verdict(resource.uuid, resource.backend_id, REFUSED, str(refusal),
                                             refusal.commands))
            continue
        allocation, project, customer = proven[resource.uuid]
        wanted = ((allocation, project, ownership_mark("allocation", resource.uuid)),
                  (project, customer, ownership_mark("project", resource.project_uuid)),
                  (customer, policy.default_account, ownership_mark("customer", resource.customer_uuid)))
        writes = [(name, parent, mark) for name, parent, mark in wanted if actual.description(name) != mark]
        for name, parent, mark in writes:
            adoption.marks[name] = (parent, mark)
        adoption.verdicts.append(Verdict(resource.uuid, allocation, ADOPTED if writes else OURS,
                                         ", ".join(f"{name} -> {mark}" for name, _, mark in writes)))
    return adoption
