"""The batch plan against an actual tree: pure, no SLURM."""
from slurm_sync.actual import ActualState
from slurm_sync.allocations import AllocationSpec, NamingPolicy, ownership_mark
from slurm_sync.plan import plan_batch
from slurm_sync.slurm.model import (AddAccounts, AddUsers, Association, CancelJobs, DeleteUsers, RemoveAccounts, RemoveUsers,
                                    SetDefaultAccounts, SetLimits)

POLICY = NamingPolicy("waldur", "c_", "p_", "a_", 34)
R1, R2 = "1" * 32, "2" * 32


def spec(order="o1", remove=False, customer="c_x", project="p_x", allocation="", source="alloc", resource=R1,
         limits=None, users=("alice", "bob")):
    return AllocationSpec(order_uuid=order, remove=remove, customer=customer, project=project, allocation=allocation,
                          allocation_source=source, resource_uuid=resource,
                          limits={"cpu": 600} if limits is None else limits, users=users)


def tree(*rows):
    return ActualState([Association(account="root")] + list(rows))


def acct(name, parent, limits=None, description=""):
    return Association(account=name, parent=parent, grp_tres_mins=limits or {}, description=description)


def user(name, account, default=False):
    return Association(account=account, user=name, is_default=default)


BUILT = [acct("waldur", "root", description="waldur-slurm-sync"), acct("c_x", "waldur", description="waldur-customer-c_x"),
         acct("p_x", "c_x", description="waldur-project-p_x"),
         acct("a_alloc", "p_x", {"cpu": 600}, ownership_mark("allocation", R1)),
         user("alice", "a_alloc", default=True), user("bob", "a_alloc", default=True)]


def kinds(plan):
    return [type(op) for op in plan.operations]


def test_create_on_empty_cluster_is_one_load_with_parents_first():
    plan = plan_batch([spec()], tree(), POLICY)
    assert kinds(plan) == [AddAccounts]
    add = plan.operations[0]
    assert [(a.name, a.parent) for a in add.accounts] == [
        ("waldur", "root"), ("c_x", "waldur"), ("p_x", "c_x"), ("a_alloc", "p_x")]
    assert add.accounts[-1].grp_tres_mins == {"cpu": 600}
    assert set(add.users) == {("alice", "a_alloc"), ("bob", "a_alloc")}
    assert plan.accounts == {"o1": "a_alloc"}


def test_tree_already_in_shape_plans_nothing():
    plan = plan_batch([spec()], tree(*BUILT), POLICY)
    assert plan.empty and plan.accounts == {"o1": "a_alloc"}


def test_many_orders_share_customer_and_project_accounts():
    specs = [spec(order=f"o{i}", source=f"alloc{i}", resource=f"{i:032x}") for i in range(5)]
    plan = plan_batch(specs, tree(), POLICY)
    assert kinds(plan) == [AddAccounts]
    names = [a.name for a in plan.operations[0].accounts]
    assert len(names) == len(set(names)) == 3 + 5


def test_update_changes_limits_and_clears_dropped_tres():
    rows = list(BUILT)
    rows[3] = acct("a_alloc", "p_x", {"cpu": 600, "mem": 100}, ownership_mark("allocation", R1))
    plan = plan_batch([spec(allocation="a_alloc", limits={"cpu": 1200})], tree(*rows), POLICY)
    assert plan.operations == [SetLimits((("a_alloc", {"cpu": 1200, "mem": -1}),), (("a_alloc", "p_x"),))]


def test_team_change_adds_and_removes_moving_default_first():
    rows = BUILT + [acct("other", "root"), user("bob", "other")]
    plan = plan_batch([spec(allocation="a_alloc", users=("alice", "carol"))], tree(*rows), POLICY)
    assert plan.operations == [AddUsers((("carol", "a_alloc"),)), SetDefaultAccounts((("bob", "other"),)),
                               RemoveUsers((("bob", "a_alloc"),))]


def test_terminate_removes_allocation_and_empty_parents_children_first():
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*BUILT), POLICY)
    # the adapter's RemoveAccounts removes the accounts' user associations (users whole when nothing is left)
    assert kinds(plan) == [CancelJobs, RemoveAccounts]
    assert plan.operations[-1] == RemoveAccounts(("a_alloc", "p_x", "c_x", "waldur"))


def test_terminate_keeps_parents_slurm_sync_did_not_make():
    site = [acct("waldur", "root", description="site parent"), *BUILT[1:]]  # the site made the default account
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*site), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc", "p_x", "c_x"))
    site[1] = acct("c_x", "waldur", description="customer x")  # and a customer account with the prefix's name
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*site), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc", "p_x"))


def test_terminate_moves_the_default_of_a_user_who_keeps_other_accounts():
    rows = BUILT + [acct("site", "root"), user("bob", "site")]
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*rows), POLICY)
    assert kinds(plan) == [SetDefaultAccounts, CancelJobs, RemoveAccounts]
    assert plan.operations[0] == SetDefaultAccounts((("bob", "site"),))


def test_user_losing_its_last_association_is_deleted_whole():
    plan = plan_batch([spec(allocation="a_alloc", users=("alice",))], tree(*BUILT), POLICY)
    assert plan.operations == [DeleteUsers(("bob",))]


def test_terminate_keeps_a_project_that_still_has_allocations():
    rows = BUILT + [acct("a_other", "p_x")]
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*rows), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc",))


def test_terminate_of_missing_account_is_a_no_op():
    plan = plan_batch([spec(remove=True, allocation="a_gone")], tree(*BUILT), POLICY)
    assert plan.empty and plan.accounts == {"o1": "a_gone"}


def test_create_and_terminate_in_one_batch_keep_the_shared_project():
    specs = [spec(order="t", remove=True, allocation="a_alloc"),
             spec(order="c", source="fresh", resource=R2)]
    plan = plan_batch(specs, tree(*BUILT), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc",))
    assert [a.name for a in plan.operations[0].accounts] == ["a_fresh"]


def test_conflicting_order_is_erred_alone():
    rows = BUILT + [acct("c_y", "root")]  # a site account with the customer's name, elsewhere
    specs = [spec(order="bad", customer="c_y", project="p_y", source="z", resource=R2), spec(order="good")]
    plan = plan_batch(specs, tree(*rows), POLICY)
    assert "bad" in plan.errors and "already exists under 'root'" in plan.errors["bad"]
    assert plan.accounts == {"good": "a_alloc"} and plan.empty


def test_rerun_after_lost_backend_id_reuses_the_marked_account():
    rows = BUILT[:3] + [acct("a_alloc", "p_x", {"cpu": 600}, ownership_mark("allocation", R1))]
    plan = plan_batch([spec(users=None)], tree(*rows), POLICY)
    assert plan.accounts == {"o1": "a_alloc"} and plan.empty


def test_name_taken_by_another_resource_gets_a_suffix():
    rows = BUILT[:3] + [acct("a_alloc", "p_x", {}, ownership_mark("allocation", R2))]
    plan = plan_batch([spec(users=())], tree(*rows), POLICY)
    assert plan.accounts["o1"].startswith("a_alloc-") and plan.operations[0].accounts[-1].name == plan.accounts["o1"]
