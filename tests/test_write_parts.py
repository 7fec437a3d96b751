"""A task's orders are written in parts, reading the tree once: the parts, the tree a part of additions leaves
(checked against what the real SLURM then shows), and the processor's reads and commits on the real bed."""
from slurm_sync.domain.desired import AccountRef, AllocationSpec
from slurm_sync.domain.real_tree import ActualState, after_additions
from slurm_sync.domain.slurm_objects import (AccountSpec, AddAccounts, AddUsers, Association, RemoveAccounts,
                                             SetLimits)
from slurm_sync.sync.pull import write_parts

from tests.pull_scenario import slurm_tree
from tests.test_pull_processor import names, processor, run, waldur_profile  # noqa: F401 (fixtures)
from tests.test_sacctmgr import bed_client  # noqa: F401 (fixture)


def spec(uuid: str, remove: bool = False) -> AllocationSpec:
    return AllocationSpec(order_uuid=uuid, remove=remove, customer=AccountRef("c", ("c",)),
                          project=AccountRef("p", ("p",)), allocation=f"a{uuid}", allocation_source="",
                          resource_uuid=uuid, limits={}, users=(), kind="Terminate" if remove else "Create")


def test_creates_go_in_runs_of_the_write_size_and_every_removal_last_in_one_part():
    specs = {u: spec(u, remove=u.startswith("t")) for u in ("c1", "t1", "c2", "c3", "t2", "c4", "c5")}
    parts = write_parts(specs, 2)
    assert [list(part) for part in parts] == [["c1", "c2"], ["c3", "c4"], ["c5"], ["t1", "t2"]]
    assert list(write_parts({}, 2)) == [] and [list(p) for p in write_parts(specs, 100)] == [
        ["c1", "c2", "c3", "c4", "c5"], ["t1", "t2"]]


def test_a_part_is_as_many_creates_as_one_load_takes_in_the_budget_into_the_tree_as_it_then_is():
    """Fitted to measured loads (slurm_sync/domain/load_cost.py): the estimate never says less than was measured,
    and a part shrinks as the tree it goes into grows."""
    from slurm_sync.domain.load_cost import load_seconds, part_length
    site = [3 + (a % 250) % 8 for a in range(1000)]  # teams of 3-10, as the measured loads had
    assert load_seconds(1000, round(sum(site) + 1351), 0) >= 18.7  # 1,000 into an empty tree: 18.7 s measured
    assert load_seconds(1000, round(sum(site) + 1000), 7827) >= 106.9  # 1,000 more into it: 106.9 s
    assert part_length(site * 2, 0, 300) == 2000  # 2,000 Creates into an empty tree: one load (52.5 s measured)
    assert part_length(site, 7827, 300) == 1000
    assert 100 < part_length(site * 5, 70_000, 300) < 1000  # a 10,000-allocation site: smaller parts
    assert part_length([5], 10 ** 9, 1) == 1  # never nothing

    rows = iter([0, 10 ** 9, 10 ** 9])  # the tree seen before each part: huge after the first
    specs = {f"c{i}": spec(f"c{i}") for i in range(6)}
    assert [len(p) for p in write_parts(specs, 4, lambda: next(rows), budget=300)] == [4, 1, 1]


def test_the_tree_after_additions_is_not_guessed_after_a_removal():
    rows = [Association("root"), Association("a", parent="root", grp_tres_mins={"cpu": 5, "mem": 7}),
            Association("a", user="u", is_default=True)]
    after = after_additions(rows, [AddAccounts((AccountSpec("b", "a", description="mark-b", grp_tres_mins={"cpu": 1}),),
                                               (("u", "b"), ("v", "b"))),
                                   SetLimits((("a", {"cpu": 9, "mem": -1}),)), AddUsers((("v", "a"),))])
    tree = ActualState(after)
    assert tree.parent("b") == "a" and tree.description("b") == "mark-b" and tree.limits("b") == {"cpu": 1}
    assert tree.limits("a") == {"cpu": 9}  # -1 clears the TRES, as sacctmgr does
    assert tree.users["b"] == {"u", "v"} and tree.users["a"] == {"u", "v"}
    assert tree.default_of == {"u": "a", "v": "b"}  # a known user keeps its default; a new one gets its first
    assert after_additions(rows, [AddAccounts((AccountSpec("b", "a"),)), RemoveAccounts(("b",))]) is None
    assert len(rows) == 3  # the rows read are not changed


def test_the_tree_after_additions_is_what_slurm_then_shows(bed_client, slurm_sandbox):
    top = slurm_sandbox
    before = bed_client.read_associations()
    operations = [AddAccounts((AccountSpec(f"{top}-p", top, description="waldur-project-x"),
                               AccountSpec(f"{top}-a1", f"{top}-p", grp_tres_mins={"cpu": 60}),
                               AccountSpec(f"{top}-a2", f"{top}-p")),
                              ((f"{top}u1", f"{top}-a1"), (f"{top}u2", f"{top}-a1"), (f"{top}u1", f"{top}-a2"))),
                  SetLimits(((f"{top}-a2", {"cpu": 120, "gres/gpu": 5}),)), AddUsers(((f"{top}u3", f"{top}-a2"),))]
    bed_client.apply(operations)

    def ours(rows):
        return sorted((r for r in rows if r.account.startswith(top) and r.account != top),
                      key=lambda r: (r.account, r.user))

    assert ours(after_additions(before, operations)) == ours(bed_client.read_associations())


def test_a_task_of_creates_reads_the_tree_once_and_writes_a_load_per_part(processor, waldur, scenario):
    reads = []
    read = processor.slurm.read_associations
    processor.slurm.read_associations = lambda *a: reads.append(1) or read(*a)
    processor.write_size = 2
    c, p, a = names(processor)
    orders = [scenario.create(f"cust{i % 2}", f"proj{i % 3}", f"alloc{i}", team=("alice",)) for i in range(5)]
    result = run(processor, waldur)
    assert sorted(result.by_result("done")) == sorted(o["uuid"] for o in orders)
    assert len(reads) == 1 and result.commits == 3  # parts of 2, 2 and 1 Creates: one load each
    accounts, _, users = slurm_tree(processor.policy.default_account)
    assert {a(f"alloc{i}") for i in range(5)} <= set(accounts) and len(users) == 5
