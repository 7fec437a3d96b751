"""`slurm-sync load-components`: the offering's components from config-components.yaml.

Existing types are updated (only when a field differs), missing ones created; a type is never
created twice (a 7.0-line server answers 500 to that). A second run changes nothing.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

from slurm_sync.domain.components import Component, Components

log = logging.getLogger(__name__)
COMPARED = ("name", "measured_unit", "billing_type")


def component_payload(component: Component) -> Dict[str, Any]:
    """What the offering shows of a component. The config's ``limit`` is the per-allocation default (an order's
    limits when it names none; the GrpTRESMins of a usage component) and is never sent: Waldur's
    ``limit_amount`` of a ``limit`` component caps the SUM of every resource's limits (per limit_period,
    terminated resources included) and refuses consumers' orders above it."""
    return {"type": component.type, "name": component.label, "measured_unit": component.measured_unit,
            "billing_type": component.accounting_type}


def _differs(wanted: Dict[str, Any], existing: Dict[str, Any]) -> bool:
    return any(key in wanted and str(wanted[key]) != str(existing.get(key)) for key in COMPARED)


def _our_old_cap(component: Component, found: Dict[str, Any]) -> bool:
    """An offering-wide cap equal to this component's per-allocation default: what slurm-sync once wrote."""
    cap = found.get("limit_amount")
    return (component.accounting_type == "limit" and component.limit is not None and cap is not None
            and str(cap) == str(int(component.limit)))


def sync_components(waldur: Any, components: Components) -> List[Tuple[str, str]]:
    """Create or update the offering's components; returns [(type, created|updated|unchanged)]."""
    existing = {c["type"]: c for c in waldur.offering().get("components") or []}
    done = []
    for component in components:
        wanted = component_payload(component)
        found = existing.get(component.type)
        if found is None:
            waldur.create_offering_component(wanted)
            done.append((component.type, "created"))
        elif _differs(wanted, found) or _our_old_cap(component, found):
            if _our_old_cap(component, found):
                log.warning("component %s: clearing limit_amount %s, the per-allocation default an earlier "
                            "slurm-sync wrote there (Waldur takes it as a cap on the sum of all resources' "
                            "limits)", component.type, found.get("limit_amount"))
                wanted = {**wanted, "limit_amount": None}
            waldur.update_offering_component({**wanted, "uuid": found["uuid"]})
            done.append((component.type, "updated"))
        else:
            done.append((component.type, "unchanged"))
    for type_, action in done:
        log.info("component %s: %s", type_, action)
    return done
