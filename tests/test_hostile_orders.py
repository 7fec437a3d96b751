"""Hostile input in orders: it becomes a safe name or errs the order; it never reaches sacctmgr raw.

Table-driven on the real bed (through the real sacctmgr, every command recorded), and
property-based (hypothesis) on the whole domain + adapter with a recording executor.
"""
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.desired import NamingPolicy, OrderRejected, allocation_spec
from slurm_sync.domain.components import parse_components
from slurm_sync.domain.plan import plan_batch
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.waldur.orders import order_input
from slurm_sync.slurm.runner import CommandResult, NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI

from tests.pull_scenario import COMPONENTS_YAML, Scenario, slurm_tree

ARG = re.compile(r"^[A-Za-z0-9_=,/.:%-]+$")  # every argv element slurm-sync sends
LOAD_LINE = re.compile(r"^(Cluster|Parent|Account|User) - '[a-z0-9_][a-z0-9_.-]*'"
                       r"(:Description='[A-Za-z0-9 _.-]*':Organization='[A-Za-z0-9 _.-]*'"
                       r"(:GrpTRESMins=[a-z/0-9=,-]+)?)?$")
HOSTILE = ["x; rm -rf /", "$(reboot)", "`id`", "a'b\"c", "x|y", "a=b,c", "line\nbreak", "tab\there",
           "Üñíçødé 名前 😀", "%s%n", "back\\slash", "A" * 10_000]
COMPONENTS = parse_components(yaml.safe_load(COMPONENTS_YAML))


class Recorder(NativeExecutor):
    """Wraps an executor (or none: answers success) and records every argv and stdin."""

    def __init__(self, inner=None):
        super().__init__()
        self.inner = inner
        self.calls = []

    def run(self, argv, *, timeout=None, input=None, check=True):
        self.calls.append((list(argv), input))
        if self.inner is not None:
            return self.inner.run(argv, timeout=timeout, input=input, check=check)
        return CommandResult(0, "", "")


def assert_all_safe(calls):
    for argv, stdin in calls:
        for arg in argv:
            assert ARG.match(arg), f"unsafe argument {arg!r} in {argv}"
        for line in (stdin or "").splitlines():
            assert LOAD_LINE.match(line), f"unsafe load line {line!r}"


# ---------------------------------------------------------------- real bed, table-driven

@pytest.fixture
def hostile_run(waldur, slurm_sandbox):
    scenario = Scenario(waldur)
    recorder = Recorder(NativeExecutor(timeout=60))
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(f"{slurm_sandbox}w", f"c{tag}_", f"p{tag}_", f"a{tag}_", 34, min_uid=1000)
    processor = OrderProcessor(WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"]),
                               SacctmgrClient(recorder), COMPONENTS, policy)

    def run():
        return processor.process(processor.waldur.active_orders())

    yield scenario, run, recorder, policy
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(policy.default_account)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_slugs_become_safe_accounts(hostile_run, waldur, text):
    scenario, run, recorder, policy = hostile_run
    customer = waldur.add_customer(text, slug=text)
    project = waldur.add_project(customer["uuid"], text, slug=text)
    order = waldur.create_order(scenario.offering["uuid"], project["uuid"], limits={"cpu": 1},
                                attributes={"name": text})
    assert run().by_result("done") == [order["uuid"]]
    accounts, _, _ = slurm_tree(policy.default_account)
    assert len(accounts) == 3 and all(re.match(r"^[a-z0-9][a-z0-9_-]{0,33}$", a) for a in accounts)
    assert_all_safe(recorder.calls)


@pytest.mark.parametrize("field,value,message", [
    ("limit", "1e999", "limit for 'cpu'"),
    ("limit", "NaN", "limit for 'cpu'"),
    ("limit", -5, "limit for 'cpu'"),
    ("limit", "10; rm", "limit for 'cpu'"),
    ("limit", 10 ** 20, "limit for 'cpu'"),
    ("limit", "$(id)", "limit for 'cpu'"),
    ("component", "cpu;x", "unknown component type"),
])
def test_bad_orders_are_erred_with_a_clear_message_and_write_nothing(hostile_run, waldur, field, value, message):
    scenario, run, recorder, policy = hostile_run
    limits = {"cpu": value} if field == "limit" else {"cpu": 1}
    if field == "component":
        limits = {value: 1}
    order = scenario.create("acme", "physics", "alloc", limits=limits, team=())
    assert run().by_result("erred") == [order["uuid"]]
    state = waldur.get_order(order["uuid"])
    assert state["state"] == "erred" and message in state["error_message"]
    assert slurm_tree(policy.default_account)[0] == {}  # nothing half-applied
    assert_all_safe(recorder.calls)


@pytest.mark.parametrize("username,why", [
    ("x; rm -rf /", "not a valid SLURM user name"), ("$(reboot)", "not a valid SLURM user name"),
    ("Root", "not a valid SLURM user name"), ("root", "reserved"), ("a" * 10_000, "not a valid SLURM user name"),
    ("名前", "not a valid SLURM user name"), ("alice\n", "not a valid SLURM user name"),
    ("root\n", "not a valid SLURM user name"), ("_x.", "not a valid SLURM user name"),
    ("daemon", "reserved"), ("_apt", "system account"), ("a" * 33, "not a valid SLURM user name"),
])
def test_a_bad_login_leaves_out_that_member_alone(hostile_run, waldur, caplog, username, why):
    """The order and the rest of the team go on; the member gets no association, with a log line naming why."""
    scenario, run, recorder, policy = hostile_run
    order = scenario.create("acme", "physics", "alloc", limits={"cpu": 1}, team=("alice",))
    user = waldur.add_user("evil-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], user["uuid"], username)
    waldur.add_team_member(order["marketplace_resource_uuid"], user["uuid"])
    assert run().by_result("done") == [order["uuid"]]
    _, _, users = slurm_tree(policy.default_account)
    assert {u for u, _ in users} == {"alice"}
    assert any("evil-waldur" in r.getMessage() and why in r.getMessage() for r in caplog.records)
    assert_all_safe(recorder.calls)


@pytest.mark.parametrize("username", ["john.doe", "a-b_c", "x" * 32, "_svc1"])
def test_valid_linux_logins_get_their_association(hostile_run, waldur, username):
    scenario, run, recorder, policy = hostile_run
    order = scenario.create("acme", "physics", "alloc", limits={"cpu": 1}, team=())
    user = waldur.add_user("member-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], user["uuid"], username)
    waldur.add_team_member(order["marketplace_resource_uuid"], user["uuid"])
    assert run().by_result("done") == [order["uuid"]]
    assert {u for u, _ in slurm_tree(policy.default_account)[2]} == {username}
    assert_all_safe(recorder.calls)


# ---------------------------------------------------------------- property-based, no SLURM

POLICY = NamingPolicy("waldur", "c_", "p_", "a_", 20)
uuids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
junk = st.text(max_size=200)
member = st.fixed_dictionaries({"username": junk, "offering_user_username": st.one_of(junk, st.just("alice"))})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customer=junk, project=junk, resource=junk, cu=uuids, pu=uuids, ru=uuids,
       team=st.lists(member, max_size=4), limit=st.one_of(junk, st.integers(), st.floats(allow_nan=True)))
def test_property_no_raw_text_reaches_sacctmgr(customer, project, resource, cu, pu, ru, team, limit):
    order = {"uuid": "o" * 32, "type": "Create", "marketplace_resource_uuid": ru, "resource_name": resource,
             "customer_uuid": cu, "customer_slug": customer, "project_uuid": pu, "project_slug": project,
             "limits": {"cpu": limit, "gpu": 1}}
    try:
        spec = allocation_spec(order_input(order, None, team), POLICY, COMPONENTS, {"cpu", "mem", "gres/gpu"})
    except OrderRejected as error:
        assert str(error)  # a message for the provider
        return
    plan = plan_batch([spec], ActualState([]), POLICY)
    recorder = Recorder()
    SacctmgrClient(recorder, cluster="test").apply(plan.operations)
    assert recorder.calls
    assert_all_safe(recorder.calls)


def test_a_limit_slurm_cannot_hold_errs_the_order():
    """M5: 10^15 units pass the amount check, but x unit_factor 10^6 they exceed a uint64 GrpTRESMins."""
    from slurm_sync.domain.desired import slurm_limits
    huge = parse_components({"cpu": {"accounting_type": "limit", "unit_factor": 1_000_000}})
    with pytest.raises(OrderRejected, match="more than SLURM can hold"):
        slurm_limits({"cpu": 10 ** 15}, huge, {"cpu"})
    assert slurm_limits({"cpu": 10 ** 12}, huge, {"cpu"}) == {"cpu": 10 ** 18}
