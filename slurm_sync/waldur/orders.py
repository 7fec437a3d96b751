"""Waldur's order, resource and team dicts turned into the domain's input (:class:`OrderInput`)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from slurm_sync.domain.desired import OrderInput


def order_input(order: Mapping[str, Any], resource: Optional[Mapping[str, Any]],
                team: Optional[Sequence[Mapping[str, Any]]]) -> OrderInput:
    """The domain's view of an order; ``resource`` is its marketplace resource as the provider reads it."""
    attributes = order.get("attributes") or {}
    return OrderInput(
        order_uuid=order["uuid"], type=order.get("type", ""),
        resource_uuid=order.get("marketplace_resource_uuid") or "",
        resource_name=str(order.get("resource_name") or attributes.get("name") or ""),
        backend_id=str((resource or {}).get("backend_id") or ""),
        customer_uuid=order.get("customer_uuid") or "", customer_slug=order.get("customer_slug") or "",
        customer_name=order.get("customer_name") or "",
        project_uuid=order.get("project_uuid") or "", project_slug=order.get("project_slug") or "",
        project_name=order.get("project_name") or "",
        limits=order.get("limits") or {}, team=team)


def team_of(resource: Mapping[str, Any], members: Mapping[str, Set[str]], logins: Mapping[str, str]
            ) -> List[Dict[str, Any]]:
    """The resource's team shaped as Waldur's team/ answer, from the two listings."""
    return [{"uuid": user, "username": user, "offering_user_username": logins.get(user)}
            for user in sorted(members.get(resource.get("project_uuid") or "", ()))]
