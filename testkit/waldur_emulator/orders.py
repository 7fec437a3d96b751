r"""The provider side of the order state machine.

pending-provider --approve--> executing --done--> done
        |                          \--erred--> erred
        \--reject--> rejected
Resource effects: approve (Update → Updating, Terminate → Terminating, Create → the
SLURM allocation appears), done (Create/Update/Restore → OK with the order's
limits, Terminate → Terminated), erred (→ Erred). Profile flags give the 7.0 answers.
"""
from testkit.waldur_emulator import errors
from testkit.waldur_emulator.allocations import schedule_update


def _wrong_state(store, valid: str) -> errors.ApiError:
    return errors.ApiError(store.profile.wrong_state_status,
                           {"detail": f"Valid states for operation: {valid}."})


def _require(store, order, state):
    if order["state"] != state:
        raise _wrong_state(store, state)


def _finish(store, order, state, **changes):
    store.touch(order, state=state, **changes)
    if state in ("done", "erred", "rejected", "canceled"):
        order["completed_at"] = order["modified"]


def approve(store, order, body):
    _require(store, order, "pending-provider")
    resource = store.resources[order["resource_uuid"]]
    if isinstance(body, dict) and isinstance(body.get("attributes"), dict):
        order["attributes"].update(body["attributes"])
    if order["type"] == "Create":
        store.create_allocation(resource, "Creation Scheduled")
    if order["type"] == "Update" and store.profile.update_schedules_allocation:
        # Rows 8, 22: Waldur 7.0's processor schedules the allocation's update during the approval itself,
        # and errs the order there (the approve still answers 200) when the allocation is not OK or Erred.
        refused = schedule_update(store, resource)
        if refused:
            _finish(store, order, "erred", error_message=refused)
            return
    _finish(store, order, "executing")
    if order["type"] == "Update":
        store.touch(resource, state="Updating")
    elif order["type"] == "Terminate":
        store.touch(resource, state="Terminating")


def reject(store, order, body):
    _require(store, order, "pending-provider")
    comment = body.get("provider_rejection_comment", "") if isinstance(body, dict) else ""
    _finish(store, order, "rejected", provider_rejection_comment=comment or "")
    if order["type"] == "Create" and store.profile.reject_create_terminates_resource:
        store.touch(store.resources[order["resource_uuid"]], state="Terminated")


def set_done(store, order):
    _require(store, order, "executing")
    _finish(store, order, "done")
    resource = store.resources[order["resource_uuid"]]
    if order["type"] == "Terminate":
        store.touch(resource, state="Terminated")
    else:
        store.touch(resource, state="OK", limits=dict(order["limits"]))


def set_erred(store, order, body):
    body = body if isinstance(body, dict) else {}
    if store.profile.erred_requires_error_fields and not (
            "error_message" in body and "error_traceback" in body):
        raise errors.server_error()  # row 2: a KeyError deep in Waldur 7.0
    if order["state"] != "executing":
        if store.profile.erred_checks_state:
            raise _wrong_state(store, "executing")
        return  # row 2: 200 and nothing changes
    message, traceback = body.get("error_message", ""), body.get("error_traceback", "")
    _finish(store, order, "erred", error_message=message or "", error_traceback=traceback or "")
    store.touch(store.resources[order["resource_uuid"]], state="Erred",
                error_message=message or "", error_traceback=traceback or "")
