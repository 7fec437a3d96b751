"""The SLURM allocation behind a resource, as ``marketplace-slurm-remote`` drives it.

Waldur creates the allocation in "Creation Scheduled" when the Create order is
approved. The provider reports ``creating`` and then ``ok``; on 7.0 an Update order
can only be approved once the allocation is OK (row 8). Only the allocation state
changes here, never the marketplace resource's.
"""
from . import errors

TRANSITIONS = {
    # requested state: (allocation states it may come from, resulting state)
    "creating": ({"Creation Scheduled", "Creating"}, "Creating"),
    "ok": ({"Creating", "Update Scheduled", "Updating", "OK", "Erred"}, "OK"),
    "erred": (None, "Erred"),  # from anywhere
}


def allocation_of(store, resource_uuid) -> tuple:
    """(resource, allocation); 404 until the Create order was approved (row 6)."""
    resource = store.get("resources", resource_uuid)
    if resource["allocation"] is None:
        raise errors.not_found("Allocation")
    return resource, resource["allocation"]


def set_state(store, resource_uuid, requested):
    resource, allocation = allocation_of(store, resource_uuid)
    if requested not in TRANSITIONS:
        raise errors.bad_request({"state": [f'"{requested}" is not a valid choice.']})
    sources, target = TRANSITIONS[requested]
    if sources is not None and allocation["state"] not in sources:
        raise errors.bad_request({"detail": (
            f"Can't switch from state '{allocation['state']}' to '{target}'.")})
    allocation["state"] = target
    store.touch(resource)
