"""The batch plan against an actual tree: pure, no SLURM."""
from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.desired import AccountRef, AllocationSpec, NamingPolicy, ownership_mark
from slurm_sync.domain.plan import membership_plan, plan_batch
from slurm_sync.domain.slurm_objects import (AddAccounts, AddUsers, Association, CancelJobs, CancelUserJobs, DeleteUsers,
                                    RemoveAccounts, RemoveUsers, SetDefaultAccounts, SetLimits)

POLICY = NamingPolicy("waldur", "c_", "p_", "a_", 34)
R1, R2 = "1" * 32, "2" * 32
CX, PX, CY, PY = "c" * 32, "d" * 32, "e" * 32, "f" * 32
CUSTOMER_X = AccountRef(ownership_mark("customer", CX), ("c_x", "c_x-111111"))
PROJECT_X = AccountRef(ownership_mark("project", PX), ("p_x", "p_x-222222"))


def spec(order="o1", remove=False, customer=CUSTOMER_X, project=PROJECT_X, allocation="", source="alloc",
         resource=R1, limits=None, users=("alice", "bob"), kind=None):
    return AllocationSpec(order_uuid=order, remove=remove, customer=customer, project=project, allocation=allocation,
                          allocation_source=source, resource_uuid=resource,
                          limits={"cpu": 600} if limits is None else limits, users=users,
                          kind=kind or ("Terminate" if remove else "Update" if allocation else "Create"))


def tree(*rows):
    return ActualState([Association(account="root")] + list(rows))


def acct(name, parent, limits=None, description=""):
    return Association(account=name, parent=parent, grp_tres_mins=limits or {}, description=description)


def user(name, account, default=False):
    return Association(account=account, user=name, is_default=default)


BUILT = [acct("waldur", "root", description="waldur-slurm-sync"),
         acct("c_x", "waldur", description=ownership_mark("customer", CX)),
         acct("p_x", "c_x", description=ownership_mark("project", PX)),
         acct("a_alloc", "p_x", {"cpu": 600}, ownership_mark("allocation", R1)),
         user("alice", "a_alloc", default=True), user("bob", "a_alloc", default=True)]


def kinds(plan):
    return [type(op) for op in plan.operations]


def test_create_on_empty_cluster_is_one_load_with_parents_first_and_uuid_marks():
    plan = plan_batch([spec()], tree(), POLICY)
    assert kinds(plan) == [AddAccounts]
    add = plan.operations[0]
    assert [(a.name, a.parent, a.description) for a in add.accounts] == [
        ("waldur", "root", "waldur-slurm-sync"), ("c_x", "waldur", f"waldur-customer-{CX}"),
        ("p_x", "c_x", f"waldur-project-{PX}"), ("a_alloc", "p_x", f"waldur-allocation-{R1}")]
    assert add.accounts[-1].grp_tres_mins == {"cpu": 600}
    assert set(add.users) == {("alice", "a_alloc"), ("bob", "a_alloc")}
    assert plan.accounts == {"o1": "a_alloc"}


def test_tree_already_in_shape_plans_nothing():
    plan = plan_batch([spec(allocation="a_alloc")], tree(*BUILT), POLICY)
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


def test_team_change_adds_and_removes_moving_default_first_and_cancelling_the_leavers_jobs():
    rows = BUILT + [acct("other", "root"), user("bob", "other")]
    plan = plan_batch([spec(allocation="a_alloc", users=("alice", "carol"))], tree(*rows), POLICY)
    assert plan.operations == [AddUsers((("carol", "a_alloc"),)), SetDefaultAccounts((("bob", "other"),), (("other", "root"),)),
                               CancelUserJobs((("bob", "a_alloc"),)), RemoveUsers((("bob", "a_alloc"),))]


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
    assert plan.operations[0] == SetDefaultAccounts((("bob", "site"),), (("site", "root"),))


def test_user_losing_its_last_association_is_deleted_whole():
    plan = plan_batch([spec(allocation="a_alloc", users=("alice",))], tree(*BUILT), POLICY)
    assert plan.operations == [CancelUserJobs((("bob", "a_alloc"),)), DeleteUsers(("bob",))]


def test_terminate_keeps_a_project_that_still_has_allocations():
    rows = BUILT + [acct("a_other", "p_x", description=ownership_mark("allocation", R2))]
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*rows), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc",))


def test_terminate_of_missing_account_is_a_no_op():
    plan = plan_batch([spec(remove=True, allocation="a_gone", resource=R2)], tree(*BUILT), POLICY)
    assert plan.empty and plan.accounts == {"o1": "a_gone"}


def test_a_stale_backend_id_yields_to_the_account_marked_for_the_resource():
    plan = plan_batch([spec(remove=True, allocation="a_gone")], tree(*BUILT), POLICY)
    assert plan.accounts == {"o1": "a_alloc"} and plan.operations[-1].accounts[0] == "a_alloc"


def test_terminate_of_a_resource_that_never_reached_slurm_is_a_no_op():
    plan = plan_batch([spec(remove=True, allocation="", resource=R2)], tree(*BUILT), POLICY)
    assert plan.empty and plan.accounts == {"o1": ""} and not plan.errors


def test_terminate_without_backend_id_finds_the_marked_account():
    plan = plan_batch([spec(remove=True, allocation="")], tree(*BUILT), POLICY)
    assert plan.accounts == {"o1": "a_alloc"} and plan.operations[-1].accounts[0] == "a_alloc"


def test_create_and_terminate_in_one_batch_keep_the_shared_project():
    specs = [spec(order="t", remove=True, allocation="a_alloc"),
             spec(order="c", source="fresh", resource=R2)]
    plan = plan_batch(specs, tree(*BUILT), POLICY)
    assert plan.operations[-1] == RemoveAccounts(("a_alloc",))
    assert [a.name for a in plan.operations[0].accounts] == ["a_fresh"]


def test_a_customer_name_held_by_a_site_account_gets_the_suffixed_name():
    rows = BUILT + [acct("c_y", "root", description="site account")]
    other = AccountRef(ownership_mark("customer", CY), ("c_y", "c_y-333333"))
    plan = plan_batch([spec(customer=other, project=AccountRef(ownership_mark("project", PY), ("p_y", "p_y-4")),
                            resource=R2, source="z")], tree(*rows), POLICY)
    assert not plan.errors
    assert [(a.name, a.parent) for a in plan.operations[0].accounts] == [
        ("c_y-333333", "waldur"), ("p_y", "c_y-333333"), ("a_z", "p_y")]


def test_copied_slugs_never_put_an_allocation_under_another_customers_project():
    """Customer Y copies X's slugs: its accounts get suffixed names, X's tree is not touched (M3)."""
    squatter = [AccountRef(ownership_mark("customer", CY), ("c_x", "c_x-999999")),
                AccountRef(ownership_mark("project", PY), ("p_x", "p_x-888888"))]
    plan = plan_batch([spec(customer=squatter[0], project=squatter[1], resource=R2, source="z")], tree(*BUILT),
                      POLICY)
    assert [(a.name, a.parent) for a in plan.operations[0].accounts] == [
        ("c_x-999999", "waldur"), ("p_x-888888", "c_x-999999"), ("a_z", "p_x-888888")]


def test_a_name_that_is_taken_twice_errs_the_order_alone():
    rows = BUILT + [acct("c_y", "root"), acct("c_y-333333", "root")]
    other = AccountRef(ownership_mark("customer", CY), ("c_y", "c_y-333333"))
    specs = [spec(order="bad", customer=other, resource=R2, source="z"), spec(order="good", allocation="a_alloc")]
    plan = plan_batch(specs, tree(*rows), POLICY)
    assert "are not slurm-sync's" in plan.errors["bad"]
    assert plan.accounts == {"good": "a_alloc"} and plan.empty


def test_rerun_after_lost_backend_id_reuses_the_marked_account():
    rows = BUILT[:3] + [acct("a_alloc", "p_x", {"cpu": 600}, ownership_mark("allocation", R1))]
    plan = plan_batch([spec(users=None)], tree(*rows), POLICY)
    assert plan.accounts == {"o1": "a_alloc"} and plan.empty


def test_name_taken_by_another_resource_gets_a_suffix():
    rows = BUILT[:3] + [acct("a_alloc", "p_x", {}, ownership_mark("allocation", R2))]
    plan = plan_batch([spec(users=())], tree(*rows), POLICY)
    assert plan.accounts["o1"].startswith("a_alloc-") and plan.operations[0].accounts[-1].name == plan.accounts["o1"]


# -- ownership: a destructive write lands only on an account marked for this resource (H2) --

FOREIGN = BUILT + [acct("physics", "root", description="physics dept"), user("carol", "physics", default=True)]


def test_terminate_of_a_foreign_backend_id_is_refused_and_touches_nothing():
    for backend_id in ("physics", "waldur", "c_x", "p_x"):
        plan = plan_batch([spec(remove=True, allocation=backend_id, resource=R2)], tree(*FOREIGN), POLICY)
        assert plan.empty and "is not slurm-sync's account for resource" in plan.errors["o1"], backend_id


def test_terminate_of_another_resources_allocation_is_refused():
    plan = plan_batch([spec(remove=True, allocation="a_alloc", resource=R2)], tree(*BUILT), POLICY)
    assert plan.empty and f"not 'waldur-allocation-{R2}'" in plan.errors["o1"]


def test_update_of_a_foreign_backend_id_is_refused():
    plan = plan_batch([spec(allocation="physics", users=("alice",), resource=R2)], tree(*FOREIGN), POLICY)
    assert plan.empty and "physics" in plan.errors["o1"] and "slurm-sync changes only accounts it made" in \
        plan.errors["o1"]


def test_update_without_backend_id_or_marked_account_errs_clearly():
    plan = plan_batch([spec(allocation="", resource=R2, kind="Update")], tree(*BUILT), POLICY)
    assert plan.empty and "no SLURM account is known for resource" in plan.errors["o1"]


def test_restore_recreates_the_account_its_backend_id_names():
    plan = plan_batch([spec(allocation="a_back", resource=R2, kind="Restore")], tree(*BUILT), POLICY)
    assert [(a.name, a.parent, a.description) for a in plan.operations[0].accounts] == [
        ("a_back", "p_x", ownership_mark("allocation", R2))]


def test_terminate_refuses_an_allocation_with_child_accounts_it_did_not_make():
    rows = BUILT + [acct("a_alloc_sub", "a_alloc", description="site sub-account")]
    plan = plan_batch([spec(remove=True, allocation="a_alloc")], tree(*rows), POLICY)
    assert plan.empty and "a_alloc_sub" in plan.errors["o1"]


# -- membership sync --

def test_membership_plan_is_empty_when_slurm_agrees():
    assert membership_plan({"a_alloc": ("alice", "bob")}, tree(*BUILT), POLICY).operations == []


def test_membership_plan_adds_and_removes_in_one_plan():
    rows = BUILT + [acct("a_two", "p_x", description=ownership_mark("allocation", R2)), user("bob", "a_two")]
    plan = membership_plan({"a_alloc": ("alice", "carol"), "a_two": ()}, tree(*rows), POLICY)
    assert plan.operations == [AddUsers((("carol", "a_alloc"),)), CancelUserJobs((("bob", "a_alloc"), ("bob", "a_two"))),
                               DeleteUsers(("bob",))]


def test_update_keeps_limits_on_tres_the_components_file_does_not_manage():
    rows = list(BUILT)
    rows[3] = acct("a_alloc", "p_x", {"cpu": 600, "billing": 5000, "mem": 10}, ownership_mark("allocation", R1))
    managed = AllocationSpec(**{**spec(allocation="a_alloc", limits={"cpu": 1200}).__dict__,
                                "managed_tres": ("cpu", "mem", "gres/gpu")})
    plan = plan_batch([managed], tree(*rows), POLICY)
    assert plan.operations == [SetLimits((("a_alloc", {"cpu": 1200, "mem": -1}),), (("a_alloc", "p_x"),))]


def test_plan_command_never_runs_a_write_whatever_the_names():
    from slurm_sync.cli.plan import is_read
    assert is_read(["sacctmgr", "-P", "-n", "show", "assoc"]) and is_read(["sacct", "-X"])
    for write in (["sacctmgr", "-i", "add", "user", "list", "account=a"],
                  ["sacctmgr", "-i", "remove", "user", "where", "name=show"],
                  ["sacctmgr", "add", "user", "show"], ["scancel", "1"]):
        assert not is_read(write), write


def test_a_user_with_partition_associations_elsewhere_is_not_deleted_whole():
    """M4: bob's only other association is partition-specific (a site's): leaving the team removes ours alone."""
    rows = BUILT + [acct("site", "root"), Association(account="site", user="bob", partition="gpu")]
    plan = plan_batch([spec(allocation="a_alloc", users=("alice",))], tree(*rows), POLICY)
    assert DeleteUsers(("bob",)) not in plan.operations
    assert plan.operations[-1] == RemoveUsers((("bob", "a_alloc"),))


def test_parents_an_earlier_slurm_sync_marked_by_name_are_never_taken_by_name_and_never_doubled():
    """Upgrade: customer and project accounts made before uuid marks carry waldur-<kind>-<their own name>. They are
    not taken by their name (a customer copying another's slug would land in the other's account), and no second
    parent is made beside them: the order errs naming `slurm-sync adopt --apply`, which gives them uuid marks."""
    rows = [acct("waldur", "root", description="waldur-slurm-sync"), acct("c_x", "waldur", description="waldur-customer-c_x"),
            acct("p_x", "c_x", description="waldur-project-p_x"),
            acct("a_alloc", "p_x", {"cpu": 600}, ownership_mark("allocation", R1)),
            user("alice", "a_alloc", default=True), user("bob", "a_alloc", default=True)]
    plan = plan_batch([spec(allocation="a_alloc", limits={"cpu": 1200})], tree(*rows), POLICY)
    assert plan.empty and "slurm-sync adopt --apply" in plan.errors["o1"] and "'c_x'" in plan.errors["o1"]
    create = plan_batch([spec(order="c", source="new", resource=R2)], tree(*rows), POLICY)
    assert create.empty and "slurm-sync adopt --apply" in create.errors["c"]
    upgraded = [acct("c_x", "waldur", description=ownership_mark("customer", CX)),
                acct("p_x", "c_x", description=ownership_mark("project", PX))] + rows[3:]
    create = plan_batch([spec(order="c", source="new", resource=R2)], tree(rows[0], *upgraded), POLICY)
    assert [(a.name, a.parent) for a in create.operations[0].accounts] == [("a_new", "p_x")]


def test_terminating_many_never_moves_a_default_to_an_account_the_batch_removes():
    """Alice's default is a_alloc; her other association a_two goes in the same batch: no move at all
    (she is removed whole by the adapter); bob keeps 'site', so his default goes there, once."""
    rows = BUILT + [acct("a_two", "p_x", description=ownership_mark("allocation", R2)), user("alice", "a_two"),
                    acct("site", "root"), user("bob", "site")]
    plan = plan_batch([spec(order="t1", remove=True, allocation="a_alloc"),
                       spec(order="t2", remove=True, allocation="a_two", resource=R2)], tree(*rows), POLICY)
    assert [op for op in plan.operations if isinstance(op, SetDefaultAccounts)] == [
        SetDefaultAccounts((("bob", "site"),), (("site", "root"),))]
    assert plan.operations[-1] == RemoveAccounts(("a_alloc", "a_two", "p_x", "c_x", "waldur"))
