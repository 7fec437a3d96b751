"""What one Waldur order asks of SLURM, validated: the desired fragment of the account tree.

Turns an order (plus its resource's team) into either an :class:`AllocationSpec` (the
customer -> project -> allocation accounts, limits and users that must exist, or must go),
or an :class:`OrderRejected` error whose message is written to the order in Waldur.
No I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from slurm_sync.domain.components import Components
from slurm_sync.domain.names import NamingError, account_name, allocation_name, check_account_name, check_user_name

ENSURE_TYPES = ("Create", "Update", "Restore")
REMOVE_TYPES = ("Terminate",)
MAX_LIMIT = Decimal(10) ** 15  # beyond any real allocation; larger is a typo or an attack
# GrpTRESMins is a uint64 in slurmdbd, whose top values mean NO_VAL / INFINITE: stay well below them
SLURM_MAX_MINUTES = 2 ** 63 - 1
DEPARTED_USER_STATES = {"Requested deletion", "Deleting", "Deleted", "Error deleting"}


class OrderRejected(ValueError):
    """The order cannot be applied as it stands; the message is for the provider in Waldur."""


@dataclass(frozen=True)
class NamingPolicy:
    default_account: str
    customer_prefix: str
    project_prefix: str
    allocation_prefix: str
    max_len: int
    min_uid: Optional[int] = None  # logins below this uid on the head node are system accounts
    uid_of: Optional[Callable[[str], Optional[int]]] = field(default=None, compare=False)  # where SLURM runs


@dataclass(frozen=True)
class OrderInput:
    """The fields of a Waldur order, its resource and team that decide the SLURM change.

    ``backend_id`` is the RESOURCE's (the SLURM account Waldur knows for it): an order's own
    backend_id is empty for every order but those an agent set it on.
    """

    order_uuid: str
    type: str
    resource_uuid: str
    resource_name: str = ""
    backend_id: str = ""
    customer_uuid: str = ""
    customer_slug: str = ""
    customer_name: str = ""
    project_uuid: str = ""
    project_slug: str = ""
    project_name: str = ""
    limits: Mapping[str, Any] = field(default_factory=dict)
    team: Optional[Sequence[Mapping[str, Any]]] = None  # None: users are left as they are


@dataclass(frozen=True)
class AccountRef:
    """A customer or project account: found by its ownership ``mark`` wherever it is, or created under the
    first of ``names`` that is free (a name held by anything else is never taken over)."""

    mark: str
    names: Tuple[str, ...]


@dataclass(frozen=True)
class AllocationSpec:
    order_uuid: str
    remove: bool
    customer: AccountRef
    project: AccountRef
    allocation: str  # the resource's backend_id; "" when Waldur knows none (a Create, or one never applied)
    allocation_source: str
    resource_uuid: str
    limits: Mapping[str, int]  # TRES -> minutes
    users: Optional[Tuple[str, ...]]  # None: leave users alone
    kind: str = "Create"
    skipped_users: Tuple[Tuple[str, str], ...] = ()  # (member, why): left out, the order goes on
    managed_tres: Tuple[str, ...] = ()  # the TRES the components file manages; () means every TRES

    @property
    def mark(self) -> str:
        return ownership_mark("allocation", self.resource_uuid)


def ownership_mark(kind: str, uuid: str) -> str:
    """The Description slurm-sync writes on accounts it makes: proves they are its own."""
    return f"waldur-{kind}-{uuid}"


def slurm_limits(order_limits: Mapping[str, Any], components: Components, cluster_tres: Iterable[str],
                 approved_above_max: bool = False) -> Dict[str, int]:
    """GrpTRESMins for an allocation: ``limit`` components from the order, ``usage`` ones from config."""
    if not isinstance(order_limits, Mapping):
        raise OrderRejected(f"limits must be a mapping of component type to amount, got {type(order_limits).__name__}")
    known = components.by_type()
    unknown = sorted(str(k)[:40] for k in order_limits if k not in known)
    if unknown:
        raise OrderRejected(f"unknown component type(s) in limits: {', '.join(map(repr, unknown))}; "
                            f"this offering has {', '.join(sorted(known))}")
    result: Dict[str, int] = {}
    cluster_tres = set(cluster_tres)
    for component in components:
        if component.accounting_type == "limit":
            raw = order_limits.get(component.type, component.limit)
        else:
            raw = component.limit
        if raw is None:
            continue
        amount = _amount(component.type, raw)
        if component.tres not in cluster_tres:
            raise OrderRejected(f"component {component.type!r} needs the SLURM TRES {component.tres!r}, which this "
                                f"cluster does not track (sacctmgr show tres lists {', '.join(sorted(cluster_tres))}); "
                                "add it to AccountingStorageTRES or remove the component from config-components.yaml")
        if component.accounting_type == "limit" and component.max_limit is not None and amount > component.max_limit \
                and not approved_above_max:
            raise OrderRejected(f"limit for {component.type!r} is {str(raw)[:40]} {component.measured_unit}, above "
                                f"this offering's max_limit {component.max_limit} (config-components.yaml)")
        minutes = component.to_slurm_minutes(amount)
        if minutes > SLURM_MAX_MINUTES:
            raise OrderRejected(f"limit for {component.type!r} is {str(raw)[:40]} {component.measured_unit}, "
                                f"{minutes} TRES-minutes: more than SLURM can hold ({SLURM_MAX_MINUTES})")
        result[component.tres] = minutes
    return result


def _amount(component_type: str, raw: Any) -> Decimal:
    try:
        if isinstance(raw, bool):
            raise InvalidOperation
        amount = Decimal(str(raw).strip()[:64])
    except (InvalidOperation, ValueError):
        raise OrderRejected(f"limit for {component_type!r} is not a number: {str(raw)[:40]!r}") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_LIMIT:
        raise OrderRejected(f"limit for {component_type!r} must be a number from 0 to {MAX_LIMIT:.0e}, got {str(raw)[:40]!r}")
    return amount


def team_usernames(team: Sequence[Mapping[str, Any]], min_uid: Optional[int] = None,
                   uid_of: Optional[Callable[[str], Optional[int]]] = None
                   ) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...]]:
    """(SLURM logins of the team, members left out with why). A member without an offering-user
    username gets no association yet (it gets one when it has one); an invalid or system login
    is left out for that member alone: it never holds up the rest of the team or the order."""
    names, skipped = set(), []
    for member in team:
        username = member.get("offering_user_username")
        if not username:
            continue
        if member.get("offering_user_state") in DEPARTED_USER_STATES:
            continue
        try:
            names.add(check_user_name(username, min_uid, uid_of))
        except NamingError as error:
            skipped.append((str(member.get("username") or "")[:40], str(error)))
    return tuple(sorted(names)), tuple(skipped)


def account_ref(kind: str, prefix: str, source: str, uuid: str, max_len: int) -> AccountRef:
    """The customer or project account of a Waldur object: its mark, its name, and the name with the
    stable suffix for when another owner's account already holds the plain one."""
    plain = account_name(prefix, source, uuid, max_len)
    suffixed = account_name(prefix, source, uuid, max_len, force_suffix=True)
    return AccountRef(ownership_mark(kind, uuid), tuple(dict.fromkeys((plain, suffixed))))


def allocation_spec(order: OrderInput, policy: NamingPolicy, components: Components,
                    cluster_tres: Iterable[str], approved_above_max: bool = False) -> AllocationSpec:
    """Validate an order and name its accounts. Raises OrderRejected. ``approved_above_max``: a person approves
    orders (SLURM_SYNC_APPROVE manual or below-max), so a limit above a component's max_limit was theirs to take."""
    if order.type not in ENSURE_TYPES + REMOVE_TYPES:
        raise OrderRejected(f"unsupported order type {str(order.type)[:20]!r}")
    if not order.resource_uuid:
        raise OrderRejected("the order names no marketplace resource")
    try:
        customer = account_ref("customer", policy.customer_prefix, order.customer_slug or order.customer_name,
                               order.customer_uuid, policy.max_len)
        project = account_ref("project", policy.project_prefix, order.project_slug or order.project_name,
                              order.project_uuid, policy.max_len)
        backend_id = check_account_name(order.backend_id) if order.backend_id else ""
    except NamingError as error:
        raise OrderRejected(str(error)) from None
    remove = order.type in REMOVE_TYPES
    limits = {} if remove else slurm_limits(order.limits, components, cluster_tres, approved_above_max)
    users, skipped = None, ()
    if not remove and order.team is not None:
        users, skipped = team_usernames(order.team, policy.min_uid, policy.uid_of)
    return AllocationSpec(order_uuid=order.order_uuid, remove=remove, customer=customer, project=project,
                          allocation=backend_id, allocation_source=order.resource_name or order.resource_uuid,
                          resource_uuid=order.resource_uuid, limits=limits, users=users, kind=order.type,
                          skipped_users=skipped, managed_tres=tuple(c.tres for c in components))


def name_allocation(spec: AllocationSpec, policy: NamingPolicy, existing: Iterable[str]) -> str:
    """A new, unique allocation account name for a Create."""
    try:
        return allocation_name(policy.allocation_prefix, spec.allocation_source, spec.resource_uuid,
                               policy.max_len, taken=set(existing))
    except NamingError as error:
        raise OrderRejected(str(error)) from None
