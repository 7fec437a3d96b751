"""Which orders slurm-sync approves itself, and which it leaves pending for a person (SLURM_SYNC_APPROVE).

``auto`` (the default) approves every order; one whose limit is above its component's ``max_limit``
(config-components.yaml) then errs with the reason. ``manual`` approves none: a person approves in Waldur and
slurm-sync carries out what is approved. ``below-max`` approves the orders within every ``max_limit`` and leaves
the others pending for a person, who approves (slurm-sync then carries them out, above the maximum) or rejects.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, List, Mapping, Optional

from slurm_sync.domain.components import Components

APPROVE_MODES = ("auto", "manual", "below-max")


def above_max(limits: Any, components: Components) -> List[str]:
    """One line per ``limit`` component whose ordered amount is above its ``max_limit``."""
    over = []
    for component in components:
        if component.max_limit is None or component.accounting_type != "limit" or not isinstance(limits, Mapping):
            continue
        try:
            amount = Decimal(str(limits.get(component.type, component.limit or 0)))
        except (InvalidOperation, ValueError):
            continue  # not a number: the order errs on it later, with its own reason
        if amount.is_finite() and amount > component.max_limit:
            over.append(f"{component.type} {amount} {component.measured_unit} is above the offering's max_limit "
                        f"{component.max_limit}")
    return over


def left_for_a_person(order: Mapping[str, Any], components: Components, mode: str) -> Optional[str]:
    """Why a pending order is left for a person to approve in Waldur; None when slurm-sync approves it."""
    if order.get("state") != "pending-provider" or mode == "auto":
        return None
    if mode == "manual":
        return "SLURM_SYNC_APPROVE=manual: a person approves orders in Waldur"
    over = above_max(order.get("limits") or {}, components)
    return f"{'; '.join(over)}: left for a person to approve (SLURM_SYNC_APPROVE=below-max)" if over else None
