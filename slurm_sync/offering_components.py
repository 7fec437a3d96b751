"""`slurm-sync load-components`: the offering's components from config-components.yaml.

Existing types are updated (only when a field differs), missing ones created; a type is never
created twice (a 7.0-line server answers 500 to that). A second run changes nothing.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

from .components import Component, Components

log = logging.getLogger(__name__)
COMPARED = ("name", "measured_unit", "billing_type", "limit_amount")


def component_payload(component: Component) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"type": component.type, "name": component.label,
                               "measured_unit": component.measured_unit, "billing_type": component.accounting_type}
    if component.limit is not None and component.accounting_type == "limit":
        payload["limit_amount"] = int(component.limit)
    return payload


def _differs(wanted: Dict[str, Any], existing: Dict[str, Any]) -> bool:
    return any(key in wanted and str(wanted[key]) != str(existing.get(key)) for key in COMPARED)


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
        elif _differs(wanted, found):
            waldur.update_offering_component({**wanted, "uuid": found["uuid"]})
            done.append((component.type, "updated"))
        else:
            done.append((component.type, "unchanged"))
    for type_, action in done:
        log.info("component %s: %s", type_, action)
    return done
