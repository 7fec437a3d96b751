"""After SLURM holds an order's change, tell a 7.0-line Waldur about the allocation.

A 7.0-line server learns about a SLURM allocation only through ``marketplace-slurm-remote``,
as the seed's agent told it: the allocation's state (creating, then ok — without it the
server errs every later Update order at its approval), its limits, and one association per
user. A current-line server takes the order's limits when the order is done and needs
nothing more from pull; the push cycle reconciles limits and associations on both lines.
"""
from __future__ import annotations

import logging
from typing import AbstractSet, Any, Mapping, Optional, Tuple

from slurm_sync.domain.components import Components, whole_limits
from slurm_sync.waldur.api import WaldurAPI, WaldurHTTPError

log = logging.getLogger(__name__)


def report_allocation(waldur: WaldurAPI, components: Components, order: Mapping[str, Any],
                      slurm_limits: Mapping[str, int], users_before: AbstractSet[str],
                      users_after: Optional[Tuple[str, ...]]) -> bool:
    """Report one done order's allocation on a 7.0-line server; returns True when the server completed the
    order itself in doing so (a Create whose allocation went Creating -> OK is done by that transition).

    ``users_after`` None means the order left the users alone; a Terminate passes ().
    A refusal (the allocation is unknown, say) is logged, not raised: SLURM is already right
    and the push cycle sends what is missing. Transient errors are raised so the task retries.
    """
    if not waldur.takes_allocation_reports:
        return False
    resource = order.get("marketplace_resource_uuid") or ""
    kind = order.get("type")
    completed = False
    try:
        if kind in ("Create", "Restore", "Update"):
            completed = waldur.report_allocation_ok(resource) and kind == "Create"
            limits = {**whole_limits(order.get("limits") or {}), **components.waldur_limits(slurm_limits)}
            if limits:
                waldur.set_resource_limits(resource, limits)
        after = set(users_after) if users_after is not None else set(users_before)
        # a Create re-run after a crash finds its users in SLURM already: tell Waldur about all of them
        new = set() if kind == "Terminate" else after if kind in ("Create", "Restore") else after - set(users_before)
        for user in sorted(new):
            waldur.create_association(resource, user)
        gone = set(users_before) if kind == "Terminate" else set(users_before) - after
        for user in sorted(gone):
            waldur.delete_association(resource, user)
    except WaldurHTTPError as error:
        if error.transient:
            raise
        log.warning("order %s: reporting allocation %s to Waldur refused: %s", order.get("uuid"), resource, error)
    return completed

