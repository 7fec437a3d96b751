"""The order processor in-process against the real bed and the emulator (the worker tests add Celery on top)."""
import pytest

from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.domain.components import parse_components
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI

import yaml

from tests.pull_scenario import COMPONENTS_YAML, sacctmgr_rows, slurm_tree, user_associations


@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    """Every pull test runs against both server generations."""
    return request.param


@pytest.fixture
def processor(waldur, scenario, slurm_sandbox):
    executor = NativeExecutor(timeout=60)
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    tag = slurm_sandbox[1:5]  # account names are cluster-wide: each test gets its own prefixes
    policy = NamingPolicy(default_account=f"{slurm_sandbox}w", customer_prefix=f"c{tag}_", project_prefix=f"p{tag}_",
                          allocation_prefix=f"a{tag}_", max_len=34)
    proc = OrderProcessor(api, SacctmgrClient(executor), parse_components(yaml.safe_load(COMPONENTS_YAML)), policy)
    proc.sandbox = slurm_sandbox
    yield proc
    # the default account is made by the product under root: fold it into the sandbox for teardown
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(policy.default_account)


def names(processor):
    """c("acme") -> the customer account name in this test, likewise p() and a()."""
    p = processor.policy
    return (lambda n: p.customer_prefix + n), (lambda n: p.project_prefix + n), (lambda n: p.allocation_prefix + n)


def ours(processor):
    """Name prefixes of the accounts this test's product makes (other tests' accounts may share the users)."""
    p = processor.policy
    return (p.default_account, p.customer_prefix, p.project_prefix, p.allocation_prefix)


def run(processor, waldur):
    orders = processor.waldur.active_orders()
    return processor.process(orders)


def test_create_update_terminate_restore(processor, waldur, scenario):
    root = processor.policy.default_account
    c, p, a = names(processor)
    o1 = scenario.create("acme", "physics", "alloc-one", limits={"cpu": 10, "gpu": 2}, team=("alice", "bob"))
    o2 = scenario.create("acme", "chem", "alloc-two", team=("carol",))
    o3 = scenario.create("globex", "bio", "alloc-three", team=())
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted(o["uuid"] for o in (o1, o2, o3))
    accounts, limits, users = slurm_tree(root)
    assert accounts == {c("acme"): root, p("physics"): c("acme"), p("chem"): c("acme"), a("alloc-one"): p("physics"),
                        a("alloc-two"): p("chem"), c("globex"): root, p("bio"): c("globex"), a("alloc-three"): p("bio")}
    # cpu: 10 h x 60; mem: the configured 10 GB-h x 61440; gpu: 2 h x 60
    assert limits[a("alloc-one")] == "cpu=600,mem=614400,gres/gpu=120" or set(limits[a("alloc-one")].split(",")) == {
        "cpu=600", "mem=600G", "gres/gpu=120"}
    assert users == {("alice", a("alloc-one")), ("bob", a("alloc-one")), ("carol", a("alloc-two"))}
    r1 = o1["marketplace_resource_uuid"]
    assert waldur.get_resource(r1)["backend_id"] == a("alloc-one")
    assert waldur.get_resource(r1)["state"] == "OK"
    assert all(waldur.get_order(o["uuid"])["state"] == "done" for o in (o1, o2, o3))
    assert waldur.resource_limits(r1) == {"cpu": 10, "gpu": 2}
    if waldur.profile == "7.0":  # the allocation as the seed's agent reported it (rows 6, 8, 9)
        assert waldur.allocation_state(r1) == "OK"
        assert waldur.slurm_associations(r1) == ["alice", "bob"]

    # idle cycle: nothing to do, nothing written
    assert run(processor, waldur).commits == 0

    scenario.emu.remove_team_member(r1, scenario.users["bob"]["uuid"])
    update = scenario.order(r1, "Update", limits={"cpu": 20, "gpu": 1})
    assert run(processor, waldur).by_result("done") == [update["uuid"]]
    _, limits, users = slurm_tree(root)
    assert "cpu=1200" in limits[a("alloc-one")] and "gres/gpu=60" in limits[a("alloc-one")]
    assert ("bob", a("alloc-one")) not in users and ("alice", a("alloc-one")) in users
    assert waldur.resource_limits(r1) == {"cpu": 20, "gpu": 1}
    if waldur.profile == "7.0":
        assert waldur.allocation_state(r1) == "OK"
        assert waldur.slurm_associations(r1) == ["alice"]

    terminate = scenario.order(r1, "Terminate")
    assert run(processor, waldur).by_result("done") == [terminate["uuid"]]
    accounts, _, users = slurm_tree(root)
    assert a("alloc-one") not in accounts and p("physics") not in accounts and c("acme") in accounts
    assert not {u for u in users if u[1] == a("alloc-one")}
    assert user_associations("bob", ours(processor)) == set()  # no association of ours is left to run jobs with
    assert waldur.get_resource(r1)["state"] == "Terminated"
    if waldur.profile == "7.0":
        assert waldur.slurm_associations(r1) == []
        return  # no Restore order type on the 7.0 line (row 3)

    restore = scenario.order(r1, "Restore", limits={"cpu": 20, "gpu": 1})
    assert run(processor, waldur).by_result("done") == [restore["uuid"]]
    accounts, _, users = slurm_tree(root)
    assert accounts[a("alloc-one")] == p("physics") and ("alice", a("alloc-one")) in users


def test_terminating_everything_leaves_nothing(processor, waldur, scenario):
    root = processor.policy.default_account
    orders = [scenario.create("acme", "physics", f"alloc{i}", team=("alice", "bob")) for i in range(3)]
    run(processor, waldur)
    for order in orders:
        scenario.order(order["marketplace_resource_uuid"], "Terminate")
    result = run(processor, waldur)
    assert len(result.by_result("done")) == 3
    accounts, _, users = slurm_tree(root)
    assert accounts == {} and users == set()
    # the default account slurm-sync made for the tree goes with its last customer
    assert root not in {row[0] for row in sacctmgr_rows("show", "account", "format=Account")}
    assert user_associations("alice", ours(processor)) == set() and user_associations("bob", ours(processor)) == set()


def test_unknown_tres_errs_the_order_and_writes_nothing(processor, waldur, scenario):
    from slurm_sync.domain.components import parse_components as parse
    processor.components = parse({"gres/fpga": {"accounting_type": "limit", "unit_factor": 1}})
    scenario.emu.add_offering_component(scenario.offering["uuid"], {"type": "fpga", "name": "FPGA",
                                                                   "measured_unit": "h", "billing_type": "limit"})
    order = scenario.create("acme", "physics", "fpga-alloc", limits={"fpga": 1})
    result = run(processor, waldur)
    assert result.by_result("erred") == [order["uuid"]]
    message = waldur.get_order(order["uuid"])["error_message"]
    assert "gres/fpga" in message and "AccountingStorageTRES" in message
    assert slurm_tree(processor.policy.default_account)[0] == {}


def test_a_batch_of_updates_with_distinct_limits_is_one_commit(processor, waldur, scenario):
    root = processor.policy.default_account
    _, _, a = names(processor)
    creates = [scenario.create("acme", f"proj{i}", f"alloc{i}", limits={"cpu": 1, "gpu": 1}) for i in range(4)]
    run(processor, waldur)
    updates = [scenario.order(o["marketplace_resource_uuid"], "Update", limits={"cpu": 10 + i, "gpu": 1})
               for i, o in enumerate(creates)]
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted(u["uuid"] for u in updates)
    assert result.commits == 1  # four distinct limit sets: one load, not four modify commits
    accounts, limits, _ = slurm_tree(root)
    for i in range(4):
        assert f"cpu={(10 + i) * 60}" in limits[a(f"alloc{i}")]
        assert accounts[a(f"alloc{i}")] == processor.policy.project_prefix + f"proj{i}"  # not moved by the load


def test_orders_carry_no_backend_id_the_resource_does(processor, waldur, scenario):
    """Real servers: an order's own backend_id is "" for Update and Terminate; the account is the resource's."""
    root = processor.policy.default_account
    _, _, a = names(processor)
    create = scenario.create("acme", "physics", "own", team=("alice",))
    run(processor, waldur)
    resource = create["marketplace_resource_uuid"]
    update = scenario.order(resource, "Update", limits={"cpu": 7, "gpu": 1})
    assert waldur.get_order(update["uuid"])["backend_id"] == "" and waldur.get_resource(resource)["backend_id"]
    assert run(processor, waldur).by_result("done") == [update["uuid"]]
    assert "cpu=420" in slurm_tree(root)[1][a("own")]
    terminate = scenario.order(resource, "Terminate")
    assert waldur.get_order(terminate["uuid"])["backend_id"] == ""
    assert run(processor, waldur).by_result("done") == [terminate["uuid"]]
    assert a("own") not in slurm_tree(root)[0]


def test_update_of_a_resource_that_never_reached_slurm_errs_and_terminate_is_done(processor, waldur, scenario):
    project = scenario.project("acme", "physics")
    ghost = waldur.add_resource(scenario.offering["uuid"], project["uuid"], "ghost", backend_id="")
    update = scenario.order(ghost["uuid"], "Update", limits={"cpu": 3, "gpu": 1})
    assert run(processor, waldur).by_result("erred") == [update["uuid"]]
    assert "no SLURM account is known for resource" in waldur.get_order(update["uuid"])["error_message"]
    other = waldur.add_resource(scenario.offering["uuid"], project["uuid"], "ghost2", backend_id="")
    terminate = scenario.order(other["uuid"], "Terminate")
    assert run(processor, waldur).by_result("done") == [terminate["uuid"]]
    assert slurm_tree(processor.policy.default_account)[0] == {}


def test_terminate_of_a_foreign_account_errs_and_leaves_it_whole(processor, waldur, scenario, slurm_sandbox):
    """H2 on the bed: a resource whose backend_id names a site account (with users, with a job running)."""
    from tests.plugins.slurm_bed import add_slurm_user, sacctmgr
    site = f"{slurm_sandbox}_site"
    sacctmgr("-i", "add", "account", site, f"parent={slurm_sandbox}", "description=site account")
    add_slurm_user("carol", site)
    resource = waldur.add_resource(scenario.offering["uuid"], scenario.project("acme", "physics")["uuid"], "site",
                                   backend_id=site)
    terminate = scenario.order(resource["uuid"], "Terminate")
    assert run(processor, waldur).by_result("erred") == [terminate["uuid"]]
    message = waldur.get_order(terminate["uuid"])["error_message"]
    assert site in message and "not slurm-sync's account" in message
    assert [r for r in sacctmgr_rows("show", "assoc", f"account={site}", "format=Account,User") if r[1]] == [
        [site, "carol"]]
    update = scenario.order(resource["uuid"], "Update", limits={"cpu": 1, "gpu": 1})
    assert run(processor, waldur).by_result("erred") == [update["uuid"]]
    assert [limits for user, limits in sacctmgr_rows("show", "assoc", f"account={site}", "format=User,GrpTRESMins")
            if not user] == [""]  # no limit written


def test_terminate_posts_the_final_usage_before_the_account_goes(waldur, slurm_sandbox):
    """Item 4: the last hours of a terminated allocation are billed (usage up to now, posted while Terminating)."""
    import subprocess
    from decimal import Decimal
    from slurm_sync.sync.push import UsageReporter
    from testkit.memory_stores import MemoryStore
    from tests.plugins.slurm_bed import ensure_unix_user
    from tests.test_sacct import _wait_done
    yaml_text = "cpu: {accounting_type: usage, measured_unit: cpu-minutes, label: CPU, unit_factor: 1}\n"
    components = parse_components(yaml.safe_load(yaml_text))
    offering = waldur.add_offering("SLURM", components=[{"type": "cpu", "name": "CPU", "measured_unit": "cpu-minutes",
                                                         "billing_type": "usage"}])
    login = ensure_unix_user("fuuser1")
    member = waldur.add_user("fuuser1-waldur")
    waldur.add_offering_user(offering["uuid"], member["uuid"], login)
    customer = waldur.add_customer("Acme", slug="acme")
    project = waldur.add_project(customer["uuid"], "Physics", slug="physics")
    create = waldur.create_order(offering["uuid"], project["uuid"], limits={}, attributes={"name": "final"})
    resource = create["marketplace_resource_uuid"]
    waldur.add_team_member(resource, member["uuid"])
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(f"{slurm_sandbox}w", f"c{tag}_", f"p{tag}_", f"a{tag}_", 34)
    api = WaldurAPI(waldur.url, waldur.token, offering["uuid"])
    sacctmgr = SacctmgrClient(NativeExecutor(timeout=60))
    reporter = UsageReporter(api, sacctmgr, components, MemoryStore())
    posted_while = []

    def bill(leaving):
        posted_while.append(sorted(sacctmgr_rows("show", "account", "format=Account")))  # accounts still there
        reporter.report_final(leaving)

    processor = OrderProcessor(api, sacctmgr, components, policy, before_remove=bill)
    try:
        processor.process(api.active_orders())
        account = f"a{tag}_final"
        job = subprocess.run(["runuser", "-u", login, "--", "sbatch", "--parsable", f"--account={account}",
                              "--mem=64", "--chdir=/tmp", "--output=/dev/null", "--wrap", "sleep 3"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        _wait_done([job])
        elapsed, cpus = subprocess.run(["sacct", "-j", job, "-X", "-P", "-n", "-o", "ElapsedRaw,AllocCPUS"],
                                       capture_output=True, text=True, timeout=60, check=True).stdout.split("|")
        truth = (Decimal(elapsed) * Decimal(cpus) / 60).quantize(Decimal("0.01"))
        terminate = waldur.create_order(offering["uuid"], project["uuid"], type="Terminate", resource_uuid=resource)
        assert processor.process(api.active_orders()).by_result("done") == [terminate["uuid"]]
        assert [account] in posted_while[0]  # billed before the removal
        usages = waldur.component_usages(resource)
        assert [(u["type"], Decimal(u["usage"])) for u in usages] == [("cpu", truth)] and truth > 0
        assert account not in {r[0] for r in sacctmgr_rows("show", "account", "format=Account")}
    finally:
        from tests.plugins.slurm_bed import remove_sandbox
        remove_sandbox(policy.default_account)


def test_a_terminate_whose_final_usage_waldur_did_not_take_keeps_the_account(waldur, scenario, slurm_sandbox):
    """A 5xx on the final usage post (past the retries close to the call): the account stays and the order waits;
    once Waldur takes the usage, the Terminate goes through. A 400 errs the order with the server's answer and
    the account stays: what was not billed before the removal could never be read again."""
    from slurm_sync.sync.push import UsageReporter
    from testkit.memory_stores import MemoryStore
    components = parse_components(yaml.safe_load(COMPONENTS_YAML))
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(f"{slurm_sandbox}w", f"c{tag}_", f"p{tag}_", f"a{tag}_", 34)
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    sacctmgr = SacctmgrClient(NativeExecutor(timeout=60))
    reporter = UsageReporter(api, sacctmgr, components, MemoryStore())
    processor = OrderProcessor(api, sacctmgr, components, policy, before_remove=reporter.bill_final)
    accounts = lambda: {r[0] for r in sacctmgr_rows("show", "account", "format=Account")}  # noqa: E731
    try:
        kept = scenario.create("acme", "physics", "kept", limits={"cpu": 1, "gpu": 1}, team=("alice",))
        refused = scenario.create("acme", "physics", "refused", limits={"cpu": 1, "gpu": 1}, team=("alice",))
        assert sorted(processor.process(api.active_orders()).by_result("done")) == sorted(
            [kept["uuid"], refused["uuid"]])
        account = f"a{tag}_kept"
        terminate = scenario.order(kept["marketplace_resource_uuid"], "Terminate")
        waldur.faults.fail_next(12, status=503, path_contains="set_usage")  # more than the retries close to the call
        result = processor.process(api.active_orders())
        assert result.by_result("deferred") == [terminate["uuid"]] and result.by_result("done") == []
        assert account in accounts() and waldur.get_order(terminate["uuid"])["state"] == "executing"
        waldur.faults.clear()
        assert processor.process(api.active_orders()).by_result("done") == [terminate["uuid"]]
        assert account not in accounts() and waldur.component_usages(kept["marketplace_resource_uuid"])

        terminate = scenario.order(refused["marketplace_resource_uuid"], "Terminate")
        waldur.faults.fail_next(1, status=400, path_contains="set_usage")
        assert processor.process(api.active_orders()).by_result("erred") == [terminate["uuid"]]
        message = waldur.get_order(terminate["uuid"])["error_message"]
        assert "final usage" in message and "refused by Waldur" in message and "400" in message
        assert f"a{tag}_refused" in accounts()
    finally:
        from tests.plugins.slurm_bed import remove_sandbox
        remove_sandbox(policy.default_account)


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_create_is_completed_by_the_allocation_state_and_updates_follow_each_other(processor, waldur, scenario):
    """On the 7.0 profile: no wasted set_state_done after a Create; two Updates in a row both
    work (the allocation is set ok after each); an Update Waldur errs at its approval writes nothing."""
    root = processor.policy.default_account
    _, _, a = names(processor)
    create = scenario.create("acme", "physics", "seq", limits={"cpu": 1, "gpu": 1}, team=("alice",))
    assert run(processor, waldur).by_result("done") == [create["uuid"]]
    assert waldur.count("POST", "set_state_done") == 0  # row 21: set_state ok completed it
    assert waldur.get_order(create["uuid"])["state"] == "done"
    resource = create["marketplace_resource_uuid"]
    for cpu in (2, 3):
        update = scenario.order(resource, "Update", limits={"cpu": cpu, "gpu": 1})
        assert run(processor, waldur).by_result("done") == [update["uuid"]]
        assert waldur.get_order(update["uuid"])["state"] == "done"
        assert f"cpu={cpu * 60}" in slurm_tree(root)[1][a("seq")]
        assert waldur.allocation_state(resource) == "OK" and waldur.resource_limits(resource)["cpu"] == cpu
    # row 5: an approval Waldur errs inside the call (the allocation is not OK) writes nothing to SLURM
    waldur.store.resources[resource]["allocation"]["state"] = "Creating"
    update = scenario.order(resource, "Update", limits={"cpu": 9, "gpu": 1})
    result = run(processor, waldur)
    assert result.by_result("skipped") == [update["uuid"]] and result.commits == 0
    assert waldur.get_order(update["uuid"])["state"] == "erred"
    assert "cpu=180" in slurm_tree(root)[1][a("seq")]


def test_a_transient_error_on_one_order_defers_it_alone(processor, waldur, scenario):
    """Waldur failing one order's own steps (more than the retries close to the call) defers that
    order; the rest of the batch reaches its SLURM commit and is done. The next run finishes it, repeating no
    step Waldur already took."""
    c, p, a = names(processor)
    orders = [scenario.create("acme", "physics", f"defer-{i}", team=("alice",)) for i in range(3)]
    unlucky = orders[1]["uuid"]
    waldur.faults.fail_next(4, status=503, path_contains=f"{unlucky}/approve")
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted(o["uuid"] for o in orders if o["uuid"] != unlucky)
    assert result.by_result("deferred") == [unlucky] and result.by_result("erred") == []
    assert waldur.get_order(unlucky)["state"] == "pending-provider"  # not erred: Waldur only did not answer
    accounts = slurm_tree(processor.policy.default_account)[0]
    assert a("defer-0") in accounts and a("defer-2") in accounts and a("defer-1") not in accounts
    again = run(processor, waldur)
    assert again.by_result("done") == [unlucky]
    assert a("defer-1") in slurm_tree(processor.policy.default_account)[0]
    approvals = [r for r in waldur.log.snapshot() if r.method == "POST" and "approve" in r.path and r.status < 300]
    assert len(approvals) == 3  # one successful approve per order


def test_an_order_whose_done_report_fails_is_finished_without_a_second_write(processor, waldur, scenario):
    """SLURM is written, then Waldur fails the order's report: the order is deferred, and the next run
    finds the account in place (no write) and reports it done."""
    c, p, a = names(processor)
    order = scenario.create("acme", "physics", "late-done", team=("alice",))
    waldur.faults.fail_next(4, status=502, path_contains="set_backend_id")
    waldur.faults.fail_next(8, status=502, path_contains="set_state_done")
    first = run(processor, waldur)
    assert first.by_result("deferred") == [order["uuid"]] and first.commits >= 1
    assert a("late-done") in slurm_tree(processor.policy.default_account)[0]
    waldur.faults.clear()
    second = run(processor, waldur)
    assert second.by_result("done") == [order["uuid"]] and second.commits == 0
    assert waldur.get_order(order["uuid"])["state"] == "done"


@pytest.mark.parametrize("waldur_profile", ["current"])  # no Restore order type on the 7.0 line (row 3)
def test_a_restore_in_a_batch_reads_its_own_team(processor, waldur, scenario):
    """A batch reads Create/Update teams from the provider's project permissions, which leave out a project whose
    only resource is Terminated: a Restore's team is read from its resource, so the restored account gets it."""
    c, p, a = names(processor)
    root = processor.policy.default_account
    old = scenario.create("acme", "physics", "comeback", team=("bob",))
    run(processor, waldur)
    scenario.order(old["marketplace_resource_uuid"], "Terminate")
    run(processor, waldur)
    creates = [scenario.create("globex", f"proj{i}", f"fresh{i}", team=("alice",)) for i in range(3)]
    restore = scenario.order(old["marketplace_resource_uuid"], "Restore", limits={"cpu": 10, "gpu": 2})
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted([restore["uuid"]] + [o["uuid"] for o in creates])
    users = slurm_tree(root)[2]
    assert ("bob", a("comeback")) in users and all(("alice", a(f"fresh{i}")) in users for i in range(3))


def test_an_order_rejected_while_queued_is_said_as_such_not_as_a_forged_message(waldur, scenario, caplog):
    """Staff rejects an order while its message waits: the batch says it became rejected (one GET for it); a uuid
    naming nothing of the offering is still warned of as a stale or forged message."""
    import logging
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    processor = OrderProcessor(api, None, parse_components(yaml.safe_load(COMPONENTS_YAML)), None)
    order = scenario.create("acme", "physics", "rejected", team=("alice",))
    waldur.store.orders[order["uuid"]]["state"] = "rejected"  # as a staff user's reject leaves it
    forged = "f" * 32
    with caplog.at_level(logging.INFO, logger="slurm_sync.sync.order_steps"):
        assert processor.load([order["uuid"], forged, "../../etc/passwd"]) == []
    said = [r.getMessage() for r in caplog.records]
    assert any(f"order {order['uuid']} (Create) became rejected in Waldur while it was queued" in m for m in said)
    warned = [m for m in said if "stale or forged" in m]
    assert len(warned) == 1 and forged in warned[0] and order["uuid"] not in warned[0]
    assert not any("etc/passwd" in r.path for r in waldur.requests if r.method == "GET")  # never used in a URL


def test_max_limit_errs_a_big_order_or_leaves_it_for_a_person(waldur, scenario, slurm_sandbox):
    """auto: an order above a component's max_limit errs with the reason, nothing written; below-max: it stays
    pending, the small one is done; once a person approves it in Waldur it is carried out as ordered."""
    components = parse_components(yaml.safe_load(COMPONENTS_YAML.replace("label: 'CPU'\n", "label: 'CPU'\n  max_limit: 50\n")))
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(f"{slurm_sandbox}w", f"c{tag}_", f"p{tag}_", f"a{tag}_", 34)
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    sacctmgr = SacctmgrClient(NativeExecutor(timeout=60))
    auto = OrderProcessor(api, sacctmgr, components, policy)
    careful = OrderProcessor(api, sacctmgr, components, policy, approve="below-max")
    try:
        huge = scenario.create("acme", "physics", "huge", limits={"cpu": 60, "gpu": 1})
        assert auto.process(api.active_orders()).by_result("erred") == [huge["uuid"]]
        assert "above this offering's max_limit 50" in waldur.get_order(huge["uuid"])["error_message"]
        big = scenario.create("acme", "physics", "big", limits={"cpu": 80, "gpu": 1})
        small = scenario.create("acme", "physics", "small", limits={"cpu": 5, "gpu": 1})
        result = careful.process(api.active_orders())
        assert result.by_result("done") == [small["uuid"]] and result.by_result("skipped") == [big["uuid"]]
        assert waldur.get_order(big["uuid"])["state"] == "pending-provider"
        accounts = {r[0] for r in sacctmgr_rows("show", "account", "format=Account")}
        assert f"a{tag}_small" in accounts and f"a{tag}_big" not in accounts and f"a{tag}_huge" not in accounts
        api.approve_order(big["uuid"])  # a person approves it in Waldur
        assert careful.process(api.active_orders()).by_result("done") == [big["uuid"]]
        limits = {row[0]: row[1] for row in sacctmgr_rows("show", "assoc", f"account=a{tag}_big", "format=User,GrpTRESMins")}
        assert "cpu=4800" in limits[""]
    finally:
        from tests.plugins.slurm_bed import remove_sandbox
        remove_sandbox(policy.default_account)
