"""What differs between the server generations the emulator can play.

``current`` is the provider API described in the contract (python-waldur-client
0.6.4, waldur-api-client 8.x). ``7.0`` reproduces the measurements on a real
Waldur Mastermind 7.0.7 ("row N" in the comments is fact N of SERVER_FACTS.md in this
folder). Handlers never test the profile name, only these
flags, so every difference is listed here.
"""
from dataclasses import dataclass

ORDER_STATES = (
    "pending-consumer", "pending-provider", "pending-project", "pending-start-date",
    "executing", "done", "erred", "canceled", "rejected",
)
ORDER_TYPES = ("Create", "Update", "Terminate", "Restore")
RESOURCE_STATES = ("Creating", "OK", "Erred", "Updating", "Terminating", "Terminated")
BILLING_TYPES = ("fixed", "usage", "limit", "one", "few")
LIMIT_PERIODS = ("month", "quarterly", "annual", "total")


@dataclass(frozen=True)
class Profile:
    name: str
    order_states: tuple = ORDER_STATES
    order_types: tuple = ORDER_TYPES
    limit_periods: tuple = LIMIT_PERIODS
    # row 1: answer to approve/reject/done in a wrong state
    wrong_state_status: int = 400
    # row 2: set_state_erred checks the state / needs both error fields
    erred_checks_state: bool = True
    erred_requires_error_fields: bool = False
    # row 4: modified_before honoured; ``modified`` is always "at or after"
    modified_before_filter: bool = True
    # row 5
    provider_offering_orders: bool = True
    # row 6: limits on the provider-resource path or the SLURM-remote one only
    provider_set_limits: bool = True
    # row 7
    provider_set_as_ok: bool = True
    provider_refresh_last_sync: bool = True
    provider_set_as_erred_forbidden: bool = False
    # row 10
    user_usages_plural: bool = True
    # row 11
    usage_date_ignored: bool = False
    usage_billing_types: tuple = ("usage",)
    # row 12
    resource_slugs: bool = True
    team_offering_user_state: bool = True
    offering_user_state_and_email: bool = True
    component_factor_field: str = "unit_factor"
    # row 13
    duplicate_component_status: int = 400
    # row 14
    reject_create_terminates_resource: bool = False
    # row 15: offering users hidden unless the offering lets the provider manage them
    offering_users_need_provider_management: bool = False
    # row 18: SLURM-remote per-user set_usage as 7.0 has it: integer fields, ``user`` required (500
    # without), and 500 for an offering with a component type other than cpu, ram, gpu
    remote_usage_strict: bool = False
    # row 20: a refused allocation transition answers 409 (TransitionNotAllowed) and ``ok`` is allowed
    # from any state
    allocation_transition_status: int = 400
    allocation_ok_from_anywhere: bool = False
    # row 21: ``set_state ok`` from Creating completes the Create order (order done, resource OK)
    allocation_ok_completes_create: bool = False
    # row 22: approving an Update schedules the allocation's update (allowed from OK or Erred)
    update_schedules_allocation: bool = False
    # row 24: a ``limit`` component's limit_amount caps the sum of every resource's limits at order time
    limit_amount_is_offering_cap: bool = False
    # Answers as the current OpenAPI schema has them (waldur-api-client 8.x; tests/test_waldur_contract.py):
    # approve_by_provider answers {"detail": …} (OrderInfoResponse), not an empty body
    approve_answers_detail: bool = True
    # no ``modified`` on offerings and component usages, slurm-associations {uuid, username, allocation}
    # only, and a resource's ``last_sync`` is a datetime (its creation until first synced), never null.
    # The 7.0 profile keeps the emulator's earlier answers here: the 7.0 table measured none of these.
    schema_fields: bool = True


CURRENT = Profile(name="current")

V7_0 = Profile(
    name="7.0",
    order_states=tuple(s for s in ORDER_STATES if s != "pending-start-date"),
    order_types=tuple(t for t in ORDER_TYPES if t != "Restore"),
    limit_periods=tuple(p for p in LIMIT_PERIODS if p != "quarterly"),
    wrong_state_status=409,
    erred_checks_state=False,
    erred_requires_error_fields=True,
    modified_before_filter=False,
    provider_offering_orders=False,
    provider_set_limits=False,
    provider_set_as_ok=False,
    provider_refresh_last_sync=False,
    provider_set_as_erred_forbidden=True,
    user_usages_plural=False,
    usage_date_ignored=True,
    usage_billing_types=("usage", "limit"),
    resource_slugs=False,
    team_offering_user_state=False,
    offering_user_state_and_email=False,
    component_factor_field="factor",
    duplicate_component_status=500,
    reject_create_terminates_resource=True,
    offering_users_need_provider_management=True,
    approve_answers_detail=False,
    schema_fields=False,
    remote_usage_strict=True,
    allocation_transition_status=409,
    allocation_ok_from_anywhere=True,
    allocation_ok_completes_create=True,
    update_schedules_allocation=True,
    limit_amount_is_offering_cap=True,
)

PROFILES = {"current": CURRENT, "7.0": V7_0}
ALIASES = {"7": "7.0", "7.0.7": "7.0", "v7": "7.0", "latest": "current"}


def get_profile(name) -> Profile:
    if isinstance(name, Profile):
        return name
    key = ALIASES.get(str(name), str(name))
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown Waldur profile {name!r}; choose one of {sorted(PROFILES)}") from None
