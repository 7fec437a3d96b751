"""Contract: slurm-sync's Waldur calls and the emulator's ``current`` profile against the real current API.

The reference is waldur-api-client 8.x, generated from the current Waldur OpenAPI schema (tests/waldur_contract.py
reads it). Every public method of ``slurm_sync.waldur.api.WaldurAPI`` is driven against the emulator (profile
``current``) with seeded data; the requests it made are read from the emulator's request log and the answers from
the wire. Then:

- every (verb, path template) slurm-sync called exists in the client (or is listed in NOT_IN_CURRENT_API, with why);
- every answer parses with the client's models with no required field missing, no status the schema does not
  document, and no field the schema lacks (``additional_properties`` empty, recursively): where they differ the
  emulator is wrong (testkit/waldur_emulator/serializers.py).

A new WaldurAPI method needs a row in CALLS (or, if it makes no request, an entry in NOT_HTTP).
"""
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Set, Tuple

import pytest

from slurm_sync.waldur.api import WaldurAPI
from tests import waldur_contract

# Public members of WaldurAPI that make no request.
NOT_HTTP = {
    "request_count",  # a counter of the requests made
    "each",  # runs other methods over many items at once (tests/test_waldur_concurrency.py)
}

# Calls slurm-sync makes that waldur-api-client 8.x does not have. The test fails when this list is not exactly the
# calls missing from the client: a new gap must be looked at, and a gap that closed must be removed from here.
NOT_IN_CURRENT_API = {
    # marketplace-slurm-remote is absent from the current schema (8.0.0 to 8.1.3). slurm-sync makes these calls
    # on the 7.0 line only: allocation_report returns at once on a current-line server, and
    # WaldurAPI.associations() answers None there, so push sends no association either.
    ("POST", "marketplace-slurm-remote/{uuid}/set_state/"): "7.0 line only",
    ("POST", "marketplace-slurm-remote/{uuid}/create_association/"): "7.0 line only",
    ("POST", "marketplace-slurm-remote/{uuid}/delete_association/"): "7.0 line only",
}

COMPONENTS = [
    {"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
    {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage",
     "limit_period": "month", "limit_amount": 1000},
    {"type": "nodes", "name": "Nodes", "measured_unit": "nodes", "billing_type": "limit"},
]
MONTH = "2026-11-01"


def seed(waldur) -> types.SimpleNamespace:
    """An offering with a running resource (team, offering users), and orders in each state the calls need."""
    customer = waldur.add_customer("Big Lab")
    project = waldur.add_project(customer["uuid"], "Genomics")
    offering = waldur.add_offering("SLURM", components=COMPONENTS)
    resource = waldur.add_resource(offering["uuid"], project["uuid"], "alloc", backend_id="big_lab_alloc",
                                   limits={"cpu": 10, "mem": 20, "nodes": 1})
    for name, role in (("alice", "admin"), ("bob", "member")):
        user = waldur.add_user(f"{name}-waldur", name.title(), f"{name}@example.org")
        waldur.add_offering_user(offering["uuid"], user["uuid"], name)
        waldur.add_team_member(resource["uuid"], user["uuid"], role=role)

    def order(state, type="Update"):
        return waldur.create_order(offering["uuid"], project["uuid"], type=type, state=state,
                                   resource_uuid=resource["uuid"], limits={"cpu": 20, "mem": 20, "nodes": 2})["uuid"]

    approved = waldur.create_order(offering["uuid"], project["uuid"], attributes={"name": "new"}, state="executing")
    return types.SimpleNamespace(
        offering=offering["uuid"], resource=resource["uuid"], approved=approved["uuid"],
        approved_resource=approved["marketplace_resource_uuid"],  # its allocation is "Creation Scheduled"
        pending=order("pending-provider"), executing=order("executing"))


def _usage(api: WaldurAPI, w) -> str:
    """The uuid of a component usage (posted first, as push does)."""
    api.set_usage(w.resource, f"{MONTH}T00:00:00Z", {"cpu": "12.34", "mem": "1.00"})
    return api.component_usage_ids(MONTH)[w.resource.replace("-", "")]["cpu"]


def _associated(api: WaldurAPI, w) -> None:
    api.create_association(w.resource, "alice")


# One row per public WaldurAPI method: how to call it on the seeded world. Rows may make other calls first to
# set the stage (all are slurm-sync's calls, all are checked).
CALLS: Dict[str, Callable[[WaldurAPI, Any], Any]] = {
    "generation": lambda api, w: api.generation,
    "files_usage_by_date": lambda api, w: api.files_usage_by_date,  # the capabilities probe the generation
    "hides_allocation_state": lambda api, w: api.hides_allocation_state,
    "takes_allocation_reports": lambda api, w: api.takes_allocation_reports,
    "offering": lambda api, w: api.offering(),
    "active_orders": lambda api, w: api.active_orders(),
    "get_order": lambda api, w: api.get_order(w.approved),
    "approve_order": lambda api, w: api.approve_order(w.pending),
    "set_order_done": lambda api, w: api.set_order_done(w.executing),
    "set_order_erred": lambda api, w: api.set_order_erred(w.executing, "sacctmgr failed"),
    "resources": lambda api, w: api.resources(),
    "live_resources": lambda api, w: api.live_resources(),
    "resource": lambda api, w: api.resource(w.resource),
    "offering_logins": lambda api, w: api.offering_logins(),
    "project_members": lambda api, w: api.project_members(),
    "resource_team": lambda api, w: api.resource_team(w.resource),
    "set_backend_id": lambda api, w: api.set_backend_id(w.resource, "big_lab_alloc2"),
    "set_resource_erred": lambda api, w: api.set_resource_erred(w.resource, "account is missing"),
    "set_resource_ok": lambda api, w: api.set_resource_ok(w.resource),
    "set_resource_limits": lambda api, w: api.set_resource_limits(w.resource, {"cpu": 30, "mem": 20, "nodes": 2}),
    "set_allocation_state": lambda api, w: api.set_allocation_state(w.resource, "ok"),
    "report_allocation_ok": lambda api, w: api.report_allocation_ok(w.approved_resource),
    "create_association": _associated,
    "delete_association": lambda api, w: (_associated(api, w), api.delete_association(w.resource, "alice")),
    "associations": lambda api, w: (_associated(api, w), api.associations()),
    "set_usage": lambda api, w: api.set_usage(w.resource, f"{MONTH}T00:00:00Z", {"cpu": "1.50"}),
    "component_usage_ids": lambda api, w: (_usage(api, w), api.component_usage_ids(MONTH)),
    "set_user_usages": lambda api, w: api.set_user_usages(_usage(api, w), {"alice": "10.00", "bob": "2.34"}),
    "create_offering_component": lambda api, w: api.create_offering_component(
        {"type": "gpu", "name": "GPU", "measured_unit": "gpu-Hours", "billing_type": "usage"}),
    "update_offering_component": lambda api, w: api.update_offering_component(
        {**api.offering()["components"][0], "name": "CPU time"}),
}


def public_members() -> List[str]:
    return sorted(name for name, member in inspect.getmembers(WaldurAPI)
                  if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)))


Exchange = Tuple[str, str, int, Any]  # verb, template, status, answer body


@dataclass
class Driven:
    exchanges: List[Exchange]
    called: Set[str]  # the public members the row called
    error: str = ""  # what the call raised


def spying(called: Set[str]) -> type:
    """WaldurAPI noting in ``called`` each public member used (methods and properties alike)."""
    def spy(name, member):
        if isinstance(member, property):
            return property(lambda self: (called.add(name), member.fget(self))[1])
        return lambda self, *args, **kwargs: (called.add(name), member(self, *args, **kwargs))[1]
    return type("SpiedWaldurAPI", (WaldurAPI,), {
        name: spy(name, inspect.getattr_static(WaldurAPI, name)) for name in public_members()})


@pytest.fixture(scope="module")
def driven(waldur_server) -> Dict[str, Driven]:
    """Per CALLS row, on a freshly seeded current-profile emulator: the exchanges the row made.

    (verb, template) come from the emulator's request log; answers from the wire (a hook on the session)."""
    made = {}
    waldur_server.set_profile("current")
    try:
        for name, call in CALLS.items():
            waldur_server.reset()
            world = seed(waldur_server)
            called: Set[str] = set()
            api = spying(called)(waldur_server.url, waldur_server.token, world.offering)
            answers = []
            api.client.session.hooks["response"].append(
                lambda response, *args, **kwargs: answers.append(response.json() if response.content else None))
            error = ""
            try:
                call(api, world)
            except Exception as raised:  # reported by test_every_driven_method_talks_to_waldur_successfully
                error = f"{type(raised).__name__}: {raised}"
            log = waldur_server.requests
            assert len(log) == len(answers), f"{name}: the log and the wire disagree"
            made[name] = Driven([(r.method, waldur_contract.template(r.path), r.status, body)
                                 for r, body in zip(log, answers)], called, error)
    finally:
        waldur_server.reset()
    return made


def test_every_public_waldur_api_method_is_driven(driven):
    uncovered = sorted(set(public_members()) - set(CALLS) - NOT_HTTP)
    assert not uncovered, (
        f"WaldurAPI methods without a row in tests/test_waldur_contract.py CALLS: {', '.join(uncovered)}; add a row "
        "calling each against the seeded emulator (or, for a member that makes no request, an entry in NOT_HTTP)")
    stale = sorted((set(CALLS) | NOT_HTTP) - set(public_members()))
    assert not stale, f"rows for members WaldurAPI no longer has: {', '.join(stale)}"
    astray = sorted(name for name, row in driven.items() if name not in row.called)
    assert not astray, f"CALLS rows that never call the member they are named after: {', '.join(astray)}"


def test_every_driven_method_talks_to_waldur_successfully(driven):
    raised = [f"{name}: {row.error}" for name, row in driven.items() if row.error]
    assert not raised, "rows whose call raised on the seeded emulator:\n" + "\n".join(raised)
    silent = sorted(name for name, row in driven.items() if not row.exchanges)
    assert not silent, f"rows that made no request (put the member in NOT_HTTP, or call it right): {silent}"
    failed = [f"{name}: {verb} {path} -> {status} {body}" for name, row in driven.items()
              for verb, path, status, body in row.exchanges if status >= 300]
    assert not failed, "calls the emulator refused on the seeded world:\n" + "\n".join(failed)


def test_every_call_exists_in_the_current_api(driven):
    called = {(verb, path) for row in driven.values() for verb, path, _, _ in row.exchanges}
    missing = called - set(waldur_contract.operations())
    assert missing == set(NOT_IN_CURRENT_API), (
        "calls waldur-api-client lacks, other than NOT_IN_CURRENT_API: "
        f"{sorted(missing - set(NOT_IN_CURRENT_API)) or 'none'}; "
        f"listed there but now present or not made: {sorted(set(NOT_IN_CURRENT_API) - missing) or 'none'}")


def test_every_answer_parses_with_the_current_models(driven):
    problems = {}  # each problem once, with the first row that met it
    for name, row in driven.items():
        for verb, path, status, body in row.exchanges:
            if (verb, path) in NOT_IN_CURRENT_API or status >= 400:  # refusals: the test above
                continue
            if verb == "GET" and body == []:
                problems.setdefault(f"{verb} {path} answered an empty list: seed something to check", name)
            problem = waldur_contract.check_answer((verb, path), status, body)
            if problem:
                problems.setdefault(f"{verb} {path} ({status}) {problem}", name)
    assert not problems, "emulator answers that differ from waldur-api-client's models:\n" + "\n".join(
        f"{problem} [row {name}]" for problem, name in problems.items())
