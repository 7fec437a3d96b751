"""What one Waldur order asks of SLURM, validated: the desired fragment of the account tree.

Turns an order (plus its resource's team) into either an :class:`AllocationSpec` (the
customer -> project -> allocation accounts, limits and users that must exist, or must go),
or an :class:`OrderRejected` error whose message is written to the order in Waldur.
No I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from .components import Components
from .naming import NamingError, account_name, allocation_name, check_account_name, check_user_name

ENSURE_TYPES = ("Create", "Update", "Restore")
REMOVE_TYPES = ("Terminate",)
MAX_LIMIT = Decimal(10) ** 15  # beyond any real allocation; larger is a typo or an attack
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


@dataclass(frozen=True)
class OrderInput:
    """The fields of a Waldur order (and its resource's team) that decide the SLURM change."""

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
class AllocationSpec:
    order_uuid: str
    remove: bool
    customer: str
    project: str
    allocation: str  # "" until named (a Create whose name depends on what SLURM already has)
    allocation_source: str
    resource_uuid: str
    limits: Mapping[str, int]  # TRES -> minutes
    users: Optional[Tuple[str, ...]]  # None: leave users alone


def ownership_mark(kind: str, uuid: str) -> str:
    """The Description slurm-sync writes on accounts it makes: proves they are its own."""
    return f"waldur-{kind}-{uuid}"


def slurm_limits(order_limits: Mapping[str, Any], components: Components, cluster_tres: Iterable[str]) -> Dict[str, int]:
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
        result[component.tres] = component.to_slurm_minutes(amount)
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


def team_usernames(team: Sequence[Mapping[str, Any]]) -> Tuple[str, ...]:
    """SLURM logins of the team: members with an offering-user username; a bad one rejects the order."""
    names = set()
    for member in team:
        username = member.get("offering_user_username")
        if not username:
            continue  # no SLURM login yet: it gets an association when it has one
        if member.get("offering_user_state") in DEPARTED_USER_STATES:
            continue
        try:
            names.add(check_user_name(username))
        except NamingError as error:
            raise OrderRejected(f"team member {member.get('username', '')[:40]!r}: {error}") from None
    return tuple(sorted(names))


def allocation_spec(order: OrderInput, policy: NamingPolicy, components: Components,
                    cluster_tres: Iterable[str]) -> AllocationSpec:
    """Validate an order and name its accounts. Raises OrderRejected."""
    if order.type not in ENSURE_TYPES + REMOVE_TYPES:
        raise OrderRejected(f"unsupported order type {str(order.type)[:20]!r}")
    try:
        customer = account_name(policy.customer_prefix, order.customer_slug or order.customer_name,
                                order.customer_uuid, policy.max_len)
        project = account_name(policy.project_prefix, order.project_slug or order.project_name,
                               order.project_uuid, policy.max_len)
        backend_id = check_account_name(order.backend_id) if order.backend_id else ""
    except NamingError as error:
        raise OrderRejected(str(error)) from None
    remove = order.type in REMOVE_TYPES
    if order.type in ("Update", "Restore", "Terminate") and not backend_id:
        raise OrderRejected(f"{order.type} order for a resource without a backend_id: no SLURM account is known for it")
    limits = {} if remove else slurm_limits(order.limits, components, cluster_tres)
    users = None
    if not remove and order.team is not None:
        users = team_usernames(order.team)
    return AllocationSpec(order_uuid=order.order_uuid, remove=remove, customer=customer, project=project,
                          allocation=backend_id, allocation_source=order.resource_name or order.resource_uuid,
                          resource_uuid=order.resource_uuid, limits=limits, users=users)


def name_allocation(spec: AllocationSpec, policy: NamingPolicy, existing: Iterable[str],
                    owner_of: Mapping[str, str]) -> str:
    """The allocation account for a Create: the account already marked as this resource's, or a new unique name."""
    mark = ownership_mark("allocation", spec.resource_uuid)
    for name, description in owner_of.items():
        if description == mark:
            return name
    try:
        return allocation_name(policy.allocation_prefix, spec.allocation_source, spec.resource_uuid,
                               policy.max_len, taken=set(existing))
    except NamingError as error:
        raise OrderRejected(str(error)) from None
