"""The order processor in-process against the real bed and the emulator (the worker tests add Celery on top)."""
import pytest

from slurm_sync.allocations import NamingPolicy
from slurm_sync.components import parse_components
from slurm_sync.pull import OrderProcessor
from slurm_sync.slurm.executor import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur_api import WaldurAPI

import yaml

from .pull_scenario import COMPONENTS_YAML, Scenario, slurm_tree, user_associations


@pytest.fixture
def scenario(waldur):
    return Scenario(waldur)


@pytest.fixture
def processor(waldur, scenario, slurm_sandbox):
    executor = NativeExecutor(timeout=60)
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    policy = NamingPolicy(default_account=f"{slurm_sandbox}w", customer_prefix="c_", project_prefix="p_",
                          allocation_prefix="a_", max_len=34)
    proc = OrderProcessor(api, SacctmgrClient(executor), parse_components(yaml.safe_load(COMPONENTS_YAML)), policy)
    proc.sandbox = slurm_sandbox
    yield proc
    # the default account is made by the product under root: fold it into the sandbox for teardown
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(policy.default_account)


def run(processor, waldur):
    orders = processor.waldur.active_orders()
    return processor.process(orders)


def test_create_update_terminate_restore(processor, waldur, scenario):
    root = processor.policy.default_account
    o1 = scenario.create("acme", "physics", "alloc-one", limits={"cpu": 10, "gpu": 2}, team=("alice", "bob"))
    o2 = scenario.create("acme", "chem", "alloc-two", team=("carol",))
    o3 = scenario.create("globex", "bio", "alloc-three", team=())
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted(o["uuid"] for o in (o1, o2, o3))
    accounts, limits, users = slurm_tree(root)
    assert accounts == {"c_acme": root, "p_physics": "c_acme", "p_chem": "c_acme", "a_alloc-one": "p_physics",
                        "a_alloc-two": "p_chem", "c_globex": root, "p_bio": "c_globex", "a_alloc-three": "p_bio"}
    # cpu: 10 h x 60; mem: the configured 10 GB-h x 61440; gpu: 2 h x 60
    assert limits["a_alloc-one"] == "cpu=600,mem=614400,gres/gpu=120" or set(limits["a_alloc-one"].split(",")) == {
        "cpu=600", "mem=600G", "gres/gpu=120"}
    assert users == {("alice", "a_alloc-one"), ("bob", "a_alloc-one"), ("carol", "a_alloc-two")}
    r1 = o1["marketplace_resource_uuid"]
    assert waldur.get_resource(r1)["backend_id"] == "a_alloc-one"
    assert waldur.get_resource(r1)["state"] == "OK"
    assert all(waldur.get_order(o["uuid"])["state"] == "done" for o in (o1, o2, o3))

    # idle cycle: nothing to do, nothing written
    assert run(processor, waldur).commits == 0

    update = scenario.order(r1, "Update", limits={"cpu": 20, "gpu": 1})
    assert run(processor, waldur).by_result("done") == [update["uuid"]]
    _, limits, _ = slurm_tree(root)
    assert "cpu=1200" in limits["a_alloc-one"] and "gres/gpu=60" in limits["a_alloc-one"]

    terminate = scenario.order(r1, "Terminate")
    assert run(processor, waldur).by_result("done") == [terminate["uuid"]]
    accounts, _, users = slurm_tree(root)
    assert "a_alloc-one" not in accounts and "p_physics" not in accounts and "c_acme" in accounts
    assert not {u for u in users if u[1] == "a_alloc-one"}
    assert user_associations("bob") == set()  # no association of ours is left to run jobs with
    assert waldur.get_resource(r1)["state"] == "Terminated"

    restore = scenario.order(r1, "Restore", limits={"cpu": 20, "gpu": 1})
    assert run(processor, waldur).by_result("done") == [restore["uuid"]]
    accounts, _, users = slurm_tree(root)
    assert accounts["a_alloc-one"] == "p_physics" and ("bob", "a_alloc-one") in users


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
    assert user_associations("alice") == set() and user_associations("bob") == set()


def test_unknown_tres_errs_the_order_and_writes_nothing(processor, waldur, scenario):
    from slurm_sync.components import parse_components as parse
    processor.components = parse({"gres/fpga": {"accounting_type": "limit", "unit_factor": 1}})
    scenario.emu.add_offering_component(scenario.offering["uuid"], {"type": "fpga", "name": "FPGA",
                                                                   "measured_unit": "h", "billing_type": "limit"})
    order = scenario.create("acme", "physics", "fpga-alloc", limits={"fpga": 1})
    result = run(processor, waldur)
    assert result.by_result("erred") == [order["uuid"]]
    message = waldur.get_order(order["uuid"])["error_message"]
    assert "gres/fpga" in message and "AccountingStorageTRES" in message
    assert slurm_tree(processor.policy.default_account)[0] == {}
