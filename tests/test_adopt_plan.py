"""Which accounts `slurm-sync adopt` proves are which resource's, and the marks it writes: pure, no SLURM.

The bed test (tests/test_adopt_bed.py) has the incumbent's own code build the tree; these cover every rule."""
from slurm_sync.domain.adopt import ADOPTED, OURS, REFUSED, Resource, plan_adoption
from slurm_sync.domain.desired import NamingPolicy, ownership_mark
from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.slurm_objects import Association

POLICY = NamingPolicy("root", "hpc_", "hpc_", "hpc_", 34)
C1, C2, P1, P2, P3 = "c1" * 16, "c2" * 16, "d1" * 16, "d2" * 16, "d3" * 16
R = ["%032x" % i for i in range(1, 9)]


def acct(name, parent, description=None):
    return Association(account=name, parent=parent, description=name if description is None else description)


def incumbent(*extra):
    """What waldur-site-agent makes (Descriptions: customer, project and resource names)."""
    return ActualState([Association(account="root"), acct("hpc_genomics", "root", "genomics lab"),
                        acct("hpc_run", "hpc_genomics", "run"), acct("hpc_run-1", "hpc_run", "genomics run 1"),
                        acct("hpc_run-2", "hpc_run", "genomics run 2"),
                        Association(account="hpc_run-1", user="alice", is_default=True), *extra])


def res(uuid, backend_id, project=P1, customer=C1, project_slug="run", customer_slug="genomics", **kw):
    return Resource(uuid=uuid, backend_id=backend_id, project_uuid=project, customer_uuid=customer,
                    project_slug=project_slug, customer_slug=customer_slug, **kw)


def verdicts(adoption):
    return {v.resource_uuid: (v.status, v.why) for v in adoption.verdicts}


def marked(tree, adoption):
    """The tree once the marks are written (what --apply does), to run adopt again on."""
    rows = [Association(account=a, parent=row.parent, description=adoption.marks.get(a, (None, row.description))[1])
            for a, row in tree.accounts.items()]
    return ActualState(rows)


def test_the_incumbents_tree_is_adopted_with_three_marks_and_a_second_run_writes_nothing():
    tree = incumbent()
    adoption = plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-2")], tree, POLICY)
    assert [v.status for v in adoption.verdicts] == [ADOPTED, ADOPTED]
    assert adoption.marks == {"hpc_run-1": ("hpc_run", ownership_mark("allocation", R[0])),
                              "hpc_run": ("hpc_genomics", ownership_mark("project", P1)),
                              "hpc_genomics": ("root", ownership_mark("customer", C1)),
                              "hpc_run-2": ("hpc_run", ownership_mark("allocation", R[1]))}
    again = plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-2")], marked(tree, adoption), POLICY)
    assert [v.status for v in again.verdicts] == [OURS, OURS] and again.marks == {}


def test_without_slugs_the_tree_proves_parents_that_hold_only_their_own_resources():
    """A 7.0-line server sends no project_slug/customer_slug: every allocation under the parents is this project's."""
    both = [res(R[0], "hpc_run-1", project_slug="", customer_slug=""),
            res(R[1], "hpc_run-2", project_slug="", customer_slug="")]
    assert [v.status for v in plan_adoption(both, incumbent(), POLICY).verdicts] == [ADOPTED, ADOPTED]
    alone = plan_adoption(both[:1], incumbent(), POLICY)  # hpc_run-2 is then no resource's: proves nothing
    assert verdicts(alone)[R[0]][0] == REFUSED and "no resource names" in verdicts(alone)[R[0]][1]
    named = plan_adoption([res(R[0], "hpc_run-1")], incumbent(), POLICY)  # the incumbent's names prove it
    assert verdicts(named)[R[0]][0] == ADOPTED and "hpc_run-2" not in named.marks


def test_a_parent_holding_another_customers_allocations_is_refused():
    """A second customer copied the slug: the incumbent put its project under the first customer's account."""
    tree = incumbent(acct("hpc_other", "hpc_genomics", "x"), acct("hpc_other-a", "hpc_other", "y"))
    adoption = plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-2"),
                              res(R[2], "hpc_other-a", project=P2, customer=C2, project_slug="other")], tree, POLICY)
    result = verdicts(adoption)
    assert all(result[r][0] == REFUSED and "another customer's" in result[r][1] for r in R[:3])
    assert adoption.marks == {}


def test_two_resources_naming_one_account_and_site_accounts_and_bad_names_are_refused():
    tree = incumbent(acct("site", "root", "our own"))
    adoption = plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-1"), res(R[2], "hpc_run"),
                              res(R[3], "root"), res(R[4], "site"), res(R[5], "Bad|name"), res(R[6], "gone"),
                              res(R[7], "")], tree, POLICY)
    result = verdicts(adoption)
    assert {r: s for r, (s, _) in result.items()} == dict.fromkeys(R, REFUSED)
    assert "named by 2 resources" in result[R[0]][1] and "named by 2 resources" in result[R[1]][1]
    assert "not an allocation" in result[R[2]][1] and "not an allocation" in result[R[3]][1]
    assert "directly under 'root'" in result[R[4]][1]
    assert "name policy" in result[R[5]][1] and "names no SLURM account" in result[R[6]][1]
    assert "no backend_id" in result[R[7]][1]
    assert adoption.marks == {}


def test_an_allocation_under_root_gets_the_reparent_commands_and_nothing_is_written():
    tree = ActualState([Association(account="root"), acct("hpc_old", "root", "old")])
    adoption = plan_adoption([res(R[0], "hpc_old", project_name="Run", customer_name="G")],
                             tree, NamingPolicy("waldur", "hpc_", "hpc_", "hpc_", 34))
    verdict = adoption.verdicts[0]
    assert verdict.status == REFUSED and adoption.marks == {}
    assert [c[:5] for c in verdict.commands] == [("sacctmgr", "-i", "add", "account", "waldur"),
                                                 ("sacctmgr", "-i", "add", "account", "hpc_genomics"),
                                                 ("sacctmgr", "-i", "add", "account", "hpc_run"),
                                                 ("sacctmgr", "-i", "modify", "account", "where")]
    assert verdict.commands[-1][-2:] == ("set", "parent=hpc_run")


def test_a_hostile_description_that_copies_another_resources_mark_proves_nothing():
    """A resource named like another's mark: the incumbent wrote that name as its Description."""
    tree = incumbent()
    tree.accounts["hpc_run-2"] = acct("hpc_run-2", "hpc_run", ownership_mark("allocation", R[0]))
    result = verdicts(plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-2")], tree, POLICY))
    assert result[R[1]][0] == REFUSED and "carries" in result[R[1]][1]
    assert result[R[0]][0] == REFUSED and "already the Description of 'hpc_run-2'" in result[R[0]][1]


def test_an_older_slurm_syncs_plain_name_marks_are_upgraded_to_uuid_marks():
    tree = ActualState([Association(account="root"), acct("waldur", "root", "waldur-slurm-sync"),
                        acct("hpc_genomics", "waldur", "waldur-customer-hpc_genomics"),
                        acct("hpc_run", "hpc_genomics", "waldur-project-hpc_run"),
                        acct("hpc_run-1", "hpc_run", ownership_mark("allocation", R[0]))])
    policy = NamingPolicy("waldur", "hpc_", "hpc_", "hpc_", 34)
    adoption = plan_adoption([res(R[0], "hpc_run-1")], tree, policy)
    assert adoption.verdicts[0].status == ADOPTED
    assert adoption.marks == {"hpc_run": ("hpc_genomics", ownership_mark("project", P1)),
                              "hpc_genomics": ("waldur", ownership_mark("customer", C1))}
    after = marked(tree, adoption)
    assert not any(row.description in ("waldur-customer-hpc_genomics", "waldur-project-hpc_run")
                   for row in after.accounts.values())
    assert plan_adoption([res(R[0], "hpc_run-1")], after, policy).verdicts[0].status == OURS


def test_a_project_under_two_accounts_and_customers_outside_the_default_account_are_refused():
    tree = incumbent(acct("hpc_run2", "hpc_genomics", "x"), acct("hpc_run2-1", "hpc_run2", "y"))
    result = verdicts(plan_adoption([res(R[0], "hpc_run-1"), res(R[1], "hpc_run-2"),
                                     res(R[2], "hpc_run2-1", project_slug="")], tree, POLICY))
    assert all(result[r][0] == REFUSED and "hang under 2 accounts" in result[r][1] for r in R[:3])
    other_top = plan_adoption([res(R[0], "hpc_run-1")], incumbent(), NamingPolicy("waldur", "hpc_", "hpc_", "hpc_", 34))
    assert other_top.verdicts[0].status == REFUSED and "SLURM_DEFAULT_ACCOUNT" in other_top.verdicts[0].why


def test_resource_from_waldur_rows_of_both_generations():
    row = {"uuid": R[0], "backend_id": "hpc_run-1", "project_uuid": P1, "customer_uuid": C1, "name": "x",
           "project_slug": None}  # 7.0: no slugs; None and absent read as ""
    assert Resource.from_waldur(row) == Resource(uuid=R[0], backend_id="hpc_run-1", name="x", project_uuid=P1,
                                                 customer_uuid=C1)


def test_the_marks_load_lists_each_account_under_its_parent_with_its_description_alone():
    import pytest
    from slurm_sync.slurm.loadfile import render_marks

    text = render_marks("lab", [("hpc_genomics", "root", ownership_mark("customer", C1)),
                                ("hpc_run", "hpc_genomics", ownership_mark("project", P1))])
    assert text.splitlines() == ["Cluster - 'lab'", "Parent - 'root'",
                                 f"Account - 'hpc_genomics':Description='waldur-customer-{C1}'",
                                 "Parent - 'hpc_genomics'", f"Account - 'hpc_run':Description='waldur-project-{P1}'"]
    for bad in [("hpc_run", "root", "x'|y"), ("Bad|name", "root", "waldur-project-x"), ("ok", "ro\not", "d")]:
        with pytest.raises(ValueError):
            render_marks("lab", [bad])
