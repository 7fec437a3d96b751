"""The SLURM allocation behind a resource, as ``marketplace-slurm-remote`` drives it.

Waldur creates the allocation in "Creation Scheduled" when the Create order is
approved. The provider reports ``creating`` and then ``ok``; on 7.0 an Update order
can only be approved once the allocation is OK (row 8). Only the allocation state
changes here, never the marketplace resource's.
"""
from testkit.waldur_emulator import errors

# Waldur's core state numbers, as 7.0's TransitionNotAllowed message prints them (row 20)
STATE_NUMBERS = {"Update Scheduled": 1, "Updating": 2, "OK": 3, "Erred": 4, "Creation Scheduled": 5,
                 "Creating": 6, "Deletion Scheduled": 7, "Deleting": 8}
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
    profile = store.profile
    if requested not in TRANSITIONS:
        raise errors.bad_request({"state": [f'"{requested}" is not a valid choice.']})
    sources, target = TRANSITIONS[requested]
    if requested == "ok" and profile.allocation_ok_from_anywhere:
        sources = None
    if sources is not None and allocation["state"] not in sources:
        if profile.allocation_transition_status == 409:
            raise errors.ApiError(409, {"detail": "Allocation state can not be changed from "
                                                  f"{STATE_NUMBERS.get(allocation['state'], 0)} to {requested}."})
        raise errors.bad_request({"detail": (
            f"Can't switch from state '{allocation['state']}' to '{target}'.")})
    before = allocation["state"]
    allocation["state"] = target
    store.touch(resource)
    if requested == "ok" and before == "Creating" and profile.allocation_ok_completes_create:
        _complete_create(store, resource)


def _complete_create(store, resource):
    """Row 21: the marketplace callback of Creating -> OK: the resource's executing Create order is done and
    the resource OK, within the set_state call (a later set_state_done answers 409)."""
    for order in store.orders.values():
        if order["resource_uuid"] == resource["uuid"] and order["type"] == "Create" and order["state"] == "executing":
            store.touch(order, state="done")
            order["completed_at"] = order["modified"]
            store.touch(resource, state="OK", limits=dict(order["limits"]))


def schedule_update(store, resource) -> str:
    """Row 22: approving an Update moves the allocation to Update Scheduled, from OK or Erred; otherwise the
    reason the server errs the order with (inside an approve that answers 200)."""
    allocation = resource["allocation"]
    current = allocation["state"] if allocation else "Creation Scheduled"
    if current not in ("OK", "Erred"):
        return f"Can't switch from state '{STATE_NUMBERS.get(current, 0)}' using method 'schedule_updating'"
    allocation["state"] = "Update Scheduled"
    return ""
