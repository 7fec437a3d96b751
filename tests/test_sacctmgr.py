"""sacctmgr adapter: parsing of recorded output, command building (fake executor), and the
real thing on the test bed (tests marked ``slurm_bed`` need ``-p tests.plugins.slurm_bed``)."""
from __future__ import annotations

import subprocess

import pytest

from slurm_sync.domain import alphabet as safety
from slurm_sync.slurm import loadfile
from slurm_sync.slurm.runner import CommandResult, NativeExecutor, SlurmCommandError
from slurm_sync.domain.slurm_objects import (AccountSpec, AddAccounts, AddUsers, Association, CancelJobs, DeleteUsers, RemoveAccounts,
                                    RemoveUsers, SetDefaultAccounts, SetLimits)
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.slurm.write_groups import cross_groups as _cross_groups
from slurm_sync.slurm.parse import parse_associations, parse_tres, parse_tres_minutes

# `show account withassoc format=Cluster,Account,User,ParentName,Partition,GrpTRESMins,Description`
RECORDED_ASSOC = """\
c1|root|||||default root account
c1|root|root||||default root account
c1|cust||root|||Customer A
c1|alloc||cust||cpu=600,gres/gpu=5,mem=1200G|Alloc | with pipe
c1|alloc|alice||||alloc
c1|alloc|bob||||alloc
c1|alloc|bob||gpu|||alloc
c1|gone||root|||deleted on every cluster
|orphan|||||no association
broken|line
"""
RECORDED_USERS = "root|root\nalice|alloc\nbob|other\n"


def test_parse_tres_minutes_units():
    assert parse_tres_minutes("cpu=600,mem=1200G,gres/gpu=5") == {"cpu": 600, "mem": 1228800, "gres/gpu": 5}
    assert parse_tres_minutes("mem=5M,fs/disk=1T,x=2048K") == {"mem": 5, "fs/disk": 1048576, "x": 2}
    assert parse_tres_minutes("mem=1P") == {"mem": 1024 ** 3}
    assert parse_tres_minutes("") == {}
    assert parse_tres_minutes("cpu=abc,mem=7,=3") == {"mem": 7}


def test_parse_associations_defensive():
    result = parse_associations(RECORDED_ASSOC, {"root": "root", "alice": "alloc", "bob": "other"})
    assert result == [
        Association("root", description="default root account"),
        Association("root", "root", is_default=True),
        Association("cust", parent="root", description="Customer A"),
        Association("alloc", parent="cust", grp_tres_mins={"cpu": 600, "gres/gpu": 5, "mem": 1228800},
                    description="Alloc | with pipe"),
        Association("alloc", "alice", is_default=True),
        Association("alloc", "bob"),
        Association("alloc", "bob", is_default=False, partition="gpu"),
        Association("gone", parent="root", description="deleted on every cluster"),
    ]


def test_parse_tres():
    assert parse_tres("cpu|\nmem|\nenergy|\nfs|disk\ngres|gpu\nbad\n") == {"cpu", "mem", "energy", "fs/disk",
                                                                          "gres/gpu"}


class FakeExecutor(NativeExecutor):
    """Records commands; answers from a list of (argv prefix, CommandResult)."""

    def __init__(self, answers=()):
        super().__init__()
        self.answers = list(answers)
        self.calls = []

    def run(self, argv, *, timeout=None, input=None, check=True):
        self.counter += 1
        self.calls.append((list(argv), input))
        for prefix, result in self.answers:
            if list(argv[:len(prefix)]) == list(prefix):
                break
        else:
            result = CommandResult(0, "", "")
        if check and result.returncode:
            raise SlurmCommandError(argv, result.returncode, result.stdout, result.stderr)
        return result


def client(*answers):
    executor = FakeExecutor(answers)
    return SacctmgrClient(executor, cluster="c1", cancel_wait=0), executor


def test_read_associations_two_calls():
    sacctmgr, executor = client(
        (["sacctmgr", "-P", "-n", "show", "account"], CommandResult(0, RECORDED_ASSOC, "")),
        (["sacctmgr", "-P", "-n", "show", "user"], CommandResult(0, RECORDED_USERS, "")))
    assert len(sacctmgr.read_associations("c1")) == 8  # with the partition row bob keeps
    assert [argv for argv, _ in executor.calls] == [
        ["sacctmgr", "-P", "-n", "show", "account", "withassoc", "wopl", "where", "cluster=c1",
         "format=Cluster,Account,User,ParentName,Partition,GrpTRESMins,Description"],
        ["sacctmgr", "-P", "-n", "show", "user", "format=User,DefaultAccount"]]


def test_cluster_discovered_once():
    executor = FakeExecutor([(["sacctmgr", "-P", "-n", "show", "cluster"], CommandResult(0, "only\n", ""))])
    sacctmgr = SacctmgrClient(executor)
    assert sacctmgr.cluster == "only" and sacctmgr.cluster == "only"
    assert executor.counter == 1
    with pytest.raises(SlurmCommandError, match="expected one cluster"):
        SacctmgrClient(FakeExecutor([([], CommandResult(0, "a\nb\n", ""))])).cluster


def test_add_accounts_is_one_load_on_stdin():
    sacctmgr, executor = client()
    report = sacctmgr.apply([AddAccounts(
        (AccountSpec("alloc", "proj", grp_tres_mins={"mem": 1024, "cpu": 60}), AccountSpec("proj", "cust"),
         AccountSpec("cust", "root", description="Cust A", organization="Org 1")),
        (("u1", "alloc"), ("u2", "alloc")))])
    assert report.commits == 1 and report.processes == 1
    argv, text = executor.calls[0]
    assert argv == ["sacctmgr", "-i", "load", "file=/dev/stdin"]
    assert text.splitlines() == [
        "Cluster - 'c1'",
        "Parent - 'root'",
        "Account - 'cust':Description='Cust A':Organization='Org 1'",
        "Parent - 'cust'",
        "Account - 'proj':Description='proj':Organization='proj'",
        "Parent - 'proj'",
        "Account - 'alloc':Description='alloc':Organization='alloc':GrpTRESMins=cpu=60,mem=1024",
        "Parent - 'alloc'",
        "User - 'u1'",
        "User - 'u2'",
    ]
    assert "DefaultAccount" not in text


def test_load_file_users_of_existing_accounts_and_unreachable():
    text = loadfile.render("c1", (), (("u1", "old"),))
    assert text == "Cluster - 'c1'\nParent - 'old'\nUser - 'u1'\n"
    with pytest.raises(ValueError, match="not reachable"):
        loadfile.render("c1", (AccountSpec("a", "b"), AccountSpec("b", "a")))


def test_nothing_messages_are_not_failures():
    sacctmgr, executor = client((["sacctmgr", "-i"], CommandResult(1, " Nothing new added.\n", "")))
    report = sacctmgr.apply([AddUsers((("u1", "a"),))])
    assert (report.commits, report.unchanged) == (0, 1)


@pytest.mark.parametrize("answer", [" Nothing added.\n", "Request didn't affect anything\n Nothing added.\n",
                                    " Already existing account a on cluster lab\n"])
def test_slurm_24_11_words_for_nothing_changed_are_not_failures(answer):
    """24.11 answers an add of what exists in other words than 22.05 (rc 1 both): a retried order is not erred."""
    sacctmgr, _ = client((["sacctmgr", "-i"], CommandResult(1, answer, "")))
    assert (sacctmgr.apply([AddUsers((("u1", "a"),))]).unchanged, sacctmgr.apply([]).commits) == (1, 0)


def test_nothing_beside_an_error_is_a_failure():
    answer = " Already existing account a on cluster lab\n error: No parent account 'p' on cluster 'lab'\n"
    sacctmgr, _ = client((["sacctmgr", "-i"], CommandResult(1, answer, "")))
    with pytest.raises(SlurmCommandError):
        sacctmgr.apply([AddUsers((("u1", "a"),))])


def test_real_failure_raises_with_stderr():
    sacctmgr, _ = client((["sacctmgr", "-i"], CommandResult(1, "", " Problem with requests: boom\n")))
    with pytest.raises(SlurmCommandError, match="boom"):
        sacctmgr.apply([AddUsers((("u1", "a"),))])


def test_grouping_of_user_and_limit_commands():
    sacctmgr, executor = client()
    sacctmgr.apply([
        SetLimits((("a", {"cpu": 5}), ("b", {"cpu": 5}), ("c", {"cpu": 5, "mem": -1}))),
        AddUsers((("u1", "a"), ("u2", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c"))),
        SetDefaultAccounts((("u1", "a"), ("u2", "a"), ("u3", "c"))),
        RemoveUsers((("u1", "a"), ("u1", "b"))),
    ])
    assert [argv[2:] for argv, _ in executor.calls] == [
        ["modify", "account", "where", "name=a,b", "cluster=c1", "set", "GrpTRESMins=cpu=5"],
        ["modify", "account", "where", "name=c", "cluster=c1", "set", "GrpTRESMins=cpu=5,mem=-1"],
        ["add", "user", "u1,u2", "account=a,b", "cluster=c1"],
        ["add", "user", "u3", "account=c", "cluster=c1"],
        ["modify", "user", "where", "name=u1,u2", "cluster=c1", "set", "DefaultAccount=a"],
        ["modify", "user", "where", "name=u3", "cluster=c1", "set", "DefaultAccount=c"],
        ["remove", "user", "where", "name=u1", "account=a,b", "cluster=c1"],
    ]


def test_distinct_limits_go_in_one_load_and_shared_ones_in_one_modify():
    sacctmgr, executor = client()
    shared = [(f"s{i}", {"cpu": 7}) for i in range(4)]  # more than LOAD_GROUP_MAX share a value: one modify
    distinct = [(f"d{i}", {"cpu": 100 + i, "mem": -1}) for i in range(5)]
    orphan = [("x", {"cpu": 1})]  # parent unknown: never in a load, which would re-parent it
    parents = tuple((a, "proj") for a, _ in shared + distinct)
    report = sacctmgr.apply([SetLimits(tuple(shared + distinct + orphan), parents)])
    calls = [(argv[2:], stdin) for argv, stdin in executor.calls]
    assert calls == [
        (["load", "file=/dev/stdin"],
         "Cluster - 'c1'\nParent - 'proj'\n"
         + "".join(f"Account - 'd{i}':GrpTRESMins=cpu={100 + i},mem=-1\n" for i in range(5))),
        (["modify", "account", "where", "name=s0,s1,s2,s3", "cluster=c1", "set", "GrpTRESMins=cpu=7"], None),
        (["modify", "account", "where", "name=x", "cluster=c1", "set", "GrpTRESMins=cpu=1"], None),
    ]
    assert report.commits == 3


def test_a_single_small_limit_group_stays_a_modify():
    sacctmgr, executor = client()
    sacctmgr.apply([SetLimits((("a", {"cpu": 5}), ("b", {"cpu": 5})), (("a", "p"), ("b", "p")))])
    assert [argv[2:] for argv, _ in executor.calls] == [
        ["modify", "account", "where", "name=a,b", "cluster=c1", "set", "GrpTRESMins=cpu=5"]]


def test_limits_load_file_refuses_hostile_names():
    with pytest.raises(ValueError, match="unsafe"):
        loadfile.render_limits("c1", [("a", "p'\nParent - 'root", {"cpu": 1})])
    with pytest.raises(ValueError, match="unsafe"):
        loadfile.render_limits("c1", [("a", "p", {"cpu=1,mem": 1})])


def test_cross_groups_cover_exactly_the_pairs():
    pairs = {("u1", "a"), ("u2", "a"), ("u1", "b"), ("u3", "b")}
    groups = _cross_groups(sorted(pairs))
    assert {(u, a) for users, accounts in groups for u in users for a in accounts} == pairs


def test_remove_accounts_users_first():
    sacctmgr, executor = client(
        (["sacctmgr", "-P", "-n", "show", "assoc", "wopl", "where", "account=a1,p1"], CommandResult(0, "\nu1\nu2\nu3\n", "")),
        (["sacctmgr", "-P", "-n", "show", "assoc", "wopl", "where", "user=u1,u2,u3"],
         CommandResult(0, "u1|a1|c1\nu1|p1|c1\nu2|a1|c1\nu2|other|c1\nu3|a1|c1\nu3|a1|c2\n", "")))
    report = sacctmgr.apply([RemoveAccounts(("a1", "p1"))])
    writes = [argv[2:] for argv, _ in executor.calls if argv[1] == "-i"]
    # u1 has associations only in the doomed accounts: removed whole (no cluster=, which 22.05 refuses for a
    # user with several associations there); u2 and u3 keep associations elsewhere (another cluster for u3)
    assert writes == [
        ["remove", "user", "where", "name=u1"],
        ["remove", "user", "where", "name=u2,u3", "account=a1,p1", "cluster=c1"],
        ["remove", "account", "where", "name=a1,p1"],
    ]
    assert report.commits == 3


def test_cancel_jobs_lists_then_cancels():
    answers = iter(["12\n13\n", ""])
    sacctmgr, executor = client()
    executor.run = _scripted(executor, answers)
    sacctmgr.apply([CancelJobs(("a", "b"))])
    assert [argv for argv, _ in executor.calls] == [
        ["squeue", "-h", "-o", "%A", "--accounts=a,b"], ["scancel", "12", "13"],
        ["squeue", "-h", "-o", "%A", "--accounts=a,b"]]


def _scripted(executor, squeue_outputs):
    def run(argv, *, timeout=None, input=None, check=True):
        executor.calls.append((list(argv), input))
        return CommandResult(0, next(squeue_outputs) if argv[0] == "squeue" else "", "")
    return run


@pytest.mark.parametrize("operation", [
    AddAccounts((AccountSpec("a\nb", "root"),)),
    AddAccounts((AccountSpec("ok", "root", description="x|y"),)),
    AddAccounts((AccountSpec("ok", "root", organization="it's"),)),
    AddAccounts((AccountSpec("ok", "root", description="d" * 101),)),
    AddAccounts((AccountSpec("ok", "root", grp_tres_mins={"cpu": -2}),)),
    AddAccounts((AccountSpec("ok", "root", grp_tres_mins={"cpu": 1.5}),)),
    AddAccounts((AccountSpec("ok", "root", grp_tres_mins={"CPU": 1}),)),
    AddAccounts((AccountSpec("root", "root"),)),
    AddUsers((("Root", "a"),)),
    AddUsers((("u1", "root"),)),
    SetDefaultAccounts((("u1", "root"),)),
    SetLimits((("a" * 65, {"cpu": 1}),)),
    RemoveUsers((("u%s%n", "a"),)),
    RemoveAccounts(("root",)),
    CancelJobs(("a,b",)),
])
def test_hostile_values_never_reach_a_command(operation):
    sacctmgr, executor = client()
    with pytest.raises(ValueError):
        sacctmgr.apply([operation])
    assert executor.calls == []


def test_safety_accepts_the_safe_alphabet():
    assert safety.name("a" * 64) and safety.tres("gres/gpu") and safety.text("Org 1_a.b-c") == "Org 1_a.b-c"
    assert safety.limit(-1) == -1


# ---- the real bed ------------------------------------------------------------------

def _bed_client():
    return SacctmgrClient(NativeExecutor(timeout=60))


def _tree(sacctmgr, prefix):
    return {(a.account, a.user, a.parent, tuple(sorted(a.grp_tres_mins.items())), a.is_default)
            for a in sacctmgr.read_associations(sacctmgr.cluster) if a.account.startswith(prefix)}


def _user_accounts(sacctmgr, user):
    return {a.account for a in sacctmgr.read_associations(sacctmgr.cluster) if a.user == user}


@pytest.fixture
def bed_client(request):
    request.getfixturevalue("slurm_bed")
    return _bed_client()


def test_real_bed_full_lifecycle(bed_client, slurm_sandbox):
    sacctmgr, top = bed_client, slurm_sandbox
    cust, proj, alloc = f"{top}-c", f"{top}-p", f"{top}-a"
    u1, u2, u3, u4 = (f"{top}u{i}" for i in range(1, 5))
    limits = {"cpu": 600, "mem": 1228800, "gres/gpu": 5}
    create = [AddAccounts((AccountSpec(cust, top, description="Customer 1"), AccountSpec(proj, cust),
                           AccountSpec(alloc, proj, grp_tres_mins=limits)),
                          ((u1, alloc), (u2, alloc), (u3, alloc)))]
    report = sacctmgr.apply(create)
    assert report.commits == 1 and report.processes == 1
    expected = {(cust, "", top, (), False), (proj, "", cust, (), False),
                (alloc, "", proj, tuple(sorted(limits.items())), False),
                *((alloc, u, "", (), True) for u in (u1, u2, u3))}
    assert _tree(sacctmgr, top + "-") == expected
    assert _user_accounts(sacctmgr, u1) == {alloc}  # no root|user association
    described = {a.account: a.description for a in sacctmgr.read_associations() if not a.user}
    assert described[cust] == "customer 1"  # slurmdbd lower-cases descriptions (measured)

    again = sacctmgr.apply(create)  # idempotent
    assert again.commits == 0 and _tree(sacctmgr, top + "-") == expected

    sacctmgr.apply([SetLimits(((alloc, {"cpu": 1200, "mem": -1}),))])
    alloc_row = [a for a in sacctmgr.read_associations() if a.account == alloc and not a.user][0]
    assert dict(alloc_row.grp_tres_mins) == {"cpu": 1200, "gres/gpu": 5}

    # a second allocation; u1's default moves there, then u1 leaves the first one; u2 loses its
    # last association, so it goes whole (a user left with none crashes slurmdbd 22.05)
    alloc2 = f"{top}-a2"
    sacctmgr.apply([AddAccounts((AccountSpec(alloc2, proj),), ((u4, alloc2),)), AddUsers(((u1, alloc2),)),
                    SetDefaultAccounts(((u1, alloc2),)), RemoveUsers(((u1, alloc),)), DeleteUsers((u2,))])
    rows = {(a.account, a.user): a.is_default for a in sacctmgr.read_associations() if a.user in (u1, u2, u4)}
    assert rows == {(alloc2, u1): True, (alloc2, u4): True}
    assert sacctmgr.apply([AddUsers(((u1, alloc2),)), DeleteUsers((u2,))]).commits == 0

    report = sacctmgr.apply([CancelJobs((alloc, alloc2)), RemoveAccounts((alloc, alloc2, proj, cust))])
    assert report.commits <= 3
    left = [a for a in sacctmgr.read_associations() if a.account.startswith(top + "-")
            or a.user in (u1, u2, u3, u4)]
    assert left == []
    users = subprocess.run(["sacctmgr", "-P", "-n", "show", "user", "format=User"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert not {u1, u2, u3, u4} & set(users)
    assert sacctmgr.apply([RemoveAccounts((alloc, alloc2, proj, cust))]).commits == 0


def test_real_bed_user_with_several_associations_all_removed_goes_whole(bed_client, slurm_sandbox):
    sacctmgr, top = bed_client, slurm_sandbox
    a1, a2, user = f"{top}-x1", f"{top}-x2", f"{top}uw"
    sacctmgr.apply([AddAccounts((AccountSpec(a1, top), AccountSpec(a2, top)), ((user, a1), (user, a2)))])
    assert _user_accounts(sacctmgr, user) == {a1, a2}
    sacctmgr.apply([RemoveAccounts((a1, a2))])  # `remove user ... cluster=` would be refused here
    assert _user_accounts(sacctmgr, user) == set()
    users = subprocess.run(["sacctmgr", "-P", "-n", "show", "user", "format=User"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert user not in users


def test_real_bed_read_tres(bed_client):
    assert {"cpu", "mem", "gres/gpu"} <= bed_client.read_tres()


def test_real_bed_distinct_limits_in_one_load_keep_parent_description_and_users(bed_client, slurm_sandbox):
    sacctmgr, top = bed_client, slurm_sandbox
    proj, user = f"{top}-lp", f"{top}ul"
    allocs = [f"{top}-l{i}" for i in range(4)]
    sacctmgr.apply([AddAccounts((AccountSpec(proj, top),) + tuple(
        AccountSpec(a, proj, description=f"mark {i}", grp_tres_mins={"cpu": 10, "mem": 20}) for i, a in enumerate(allocs)),
        tuple((user, a) for a in allocs))])
    wanted = {a: {"cpu": 1000 + i, "mem": -1} if i % 2 else {"cpu": 1000 + i} for i, a in enumerate(allocs)}
    report = sacctmgr.apply([SetLimits(tuple(wanted.items()), tuple((a, proj) for a in allocs))])
    assert report.commits == 1 and report.commands[0][2:] == ["load", "file=/dev/stdin"]
    rows = {(a.account, a.user): a for a in sacctmgr.read_associations() if a.account in allocs}
    for i, account in enumerate(allocs):
        row = rows[(account, "")]
        assert dict(row.grp_tres_mins) == ({"cpu": 1000 + i} if i % 2 else {"cpu": 1000 + i, "mem": 20})
        assert row.parent == proj and row.description == f"mark {i}"
        assert (account, user) in rows  # the user associations under it are untouched
    # load compares the named TRES with the whole old set: name them all for a no-op
    same = {a: {"cpu": 1000 + i} if i % 2 else {"cpu": 1000 + i, "mem": 20} for i, a in enumerate(allocs)}
    again = sacctmgr.apply([SetLimits(tuple(same.items()), tuple((a, proj) for a in allocs))])
    assert again.commits == 0  # load answers "Nothing new added" when the limits are already there
    sacctmgr.apply([RemoveAccounts(tuple(allocs) + (proj,))])


def test_default_moves_to_several_accounts_are_one_load():
    executor = FakeExecutor([(["sacctmgr", "-i"], CommandResult(0, "", ""))])
    sacctmgr = SacctmgrClient(executor, cluster="c1")
    sacctmgr.apply([SetDefaultAccounts((("u1", "a1"), ("u2", "a1"), ("u3", "a2")), (("a1", "p1"), ("a2", "p2")))])
    assert [argv for argv, _ in executor.calls] == [["sacctmgr", "-i", "load", "file=/dev/stdin"]]
    assert executor.calls[0][1] == ("Cluster - 'c1'\nParent - 'p1'\nAccount - 'a1'\nParent - 'a1'\n"
                                    "User - 'u1':DefaultAccount='a1'\nUser - 'u2':DefaultAccount='a1'\n"
                                    "Parent - 'p2'\nAccount - 'a2'\nParent - 'a2'\nUser - 'u3':DefaultAccount='a2'\n")
    one = FakeExecutor([(["sacctmgr", "-i"], CommandResult(0, "", ""))])
    SacctmgrClient(one, cluster="c1").apply([SetDefaultAccounts((("u1", "a1"),), (("a1", "p1"),))])
    assert one.calls[0][0][:4] == ["sacctmgr", "-i", "modify", "user"]  # one target: a modify is cheaper


def test_real_bed_default_moves_in_one_load_keep_the_tree(bed_client, slurm_sandbox):
    """The one-load DefaultAccount move on the real bed: defaults moved, nothing re-parented, marks kept."""
    sacctmgr, top = bed_client, slurm_sandbox
    x1, x2, y1, y2 = (f"{top}-{n}" for n in ("x1", "x2", "y1", "y2"))
    u1, u2 = f"{top}d1", f"{top}d2"
    sacctmgr.apply([AddAccounts(tuple(AccountSpec(a, top, description="mark " + a[-2:]) for a in (x1, x2, y1, y2)),
                                ((u1, x1), (u2, x2)))])
    sacctmgr.apply([AddUsers(((u1, y1), (u2, y2)))])
    report = sacctmgr.apply([SetDefaultAccounts(((u1, y1), (u2, y2)), ((y1, top), (y2, top)))])
    assert report.commits == 1 and report.processes == 1
    rows = sacctmgr.read_associations()
    assert {(r.user, r.account) for r in rows if r.is_default and r.user in (u1, u2)} == {(u1, y1), (u2, y2)}
    assert {r.account: (r.parent, r.description) for r in rows if r.account in (y1, y2) and not r.user} == {
        y1: (top, "mark y1"), y2: (top, "mark y2")}


def test_removals_are_bounded_by_the_tree_size():
    """Each removal write carries at most removal_chunk associations (REMOVAL_ROW_BUDGET / 2 x tree size): on a big
    tree a mass Terminate is several bounded writes, never one that runs for many minutes; together they remove
    exactly what one write would, accounts children first."""
    from slurm_sync.slurm.sacctmgr import REMOVAL_MIN, REMOVAL_ROW_BUDGET
    accounts = [f"a{i}" for i in range(45)] + ["p1"]  # children before their parent
    members = "".join(f"u{i}\nu{i}\n" for i in range(30)) + "".join(f"v{i}\n" for i in range(10))
    elsewhere = "".join(f"v{i}|other|c1\n" for i in range(10))
    reads = ((["sacctmgr", "-P", "-n", "show", "assoc", "wopl", "where", "account=" + ",".join(accounts)],
              CommandResult(0, members, "")),
             (["sacctmgr", "-P", "-n", "show", "assoc", "wopl", "where",
               "user=" + ",".join(sorted({*members.split()}))], CommandResult(0, elsewhere, "")))
    sacctmgr, executor = client(*reads)
    sacctmgr.tree_size = REMOVAL_ROW_BUDGET  # a tree this big: the smallest chunk
    assert sacctmgr.removal_chunk == REMOVAL_MIN == 20
    sacctmgr.apply([RemoveAccounts(tuple(accounts))])
    writes = [argv[2:] for argv, _ in executor.calls if argv[1] == "-i"]
    whole = [w for w in writes if w[:3] == ["remove", "user", "where"] and len(w) == 4]
    shared = [w for w in writes if w[:3] == ["remove", "user", "where"] and len(w) == 6]
    gone = [w for w in writes if w[:2] == ["remove", "account"]]
    names = lambda ws: [n for w in ws for n in w[3].removeprefix("name=").split(",")]  # noqa: E731
    assert names(whole) == [f"u{i}" for i in sorted(range(30), key=str)]  # each holds 2 associations here
    assert all(len(w[3].split(",")) * 2 <= 20 for w in whole) and len(whole) == 3
    assert names(shared) == [f"v{i}" for i in range(10)] and len(shared) == 1  # 10 associations: one write
    assert names(gone) == accounts and [len(w[3].split(",")) for w in gone] == [20, 20, 6]
    # a small tree: one write each, as before
    sacctmgr, executor = client(*reads)
    sacctmgr.tree_size = 3000
    sacctmgr.apply([RemoveAccounts(tuple(accounts)), RemoveUsers(tuple((f"w{i}", "a0") for i in range(30)))])
    assert len([argv for argv, _ in executor.calls if argv[1] == "-i"]) == 4


def test_leaving_members_and_deleted_users_are_bounded_too():
    sacctmgr, executor = client((["sacctmgr", "-P", "-n", "show", "assoc", "where"],
                                 CommandResult(0, "".join(f"x|d{i}\n" for i in range(45)), "")))
    sacctmgr.tree_size = 75_000  # 3 M row updates / (2 x 75 k rows) = 20 associations a write
    assert sacctmgr.removal_chunk == 20
    pairs = tuple((f"u{i}", account) for i in range(15) for account in ("a", "b"))  # 15 users x 2 accounts
    sacctmgr.apply([RemoveUsers(pairs), DeleteUsers(tuple(f"d{i}" for i in range(45)))])
    writes = [argv[2:] for argv, _ in executor.calls if argv[1] == "-i"]
    leaving = [w for w in writes if "account=a,b" in w]
    assert [len(w[3].split(",")) for w in leaving] == [10, 5]  # 10 users x 2 accounts = 20 associations
    deleted = [w for w in writes if len(w) == 4]
    assert [len(w[3].split(",")) for w in deleted] == [20, 20, 5]


def test_a_user_is_deleted_whole_only_while_it_has_no_more_than_the_plan_saw():
    """The tree a plan was made from may be minutes old: right before ``remove user where name=U`` (every
    account, every cluster) the users' associations are read again; one that got another account since is left."""
    now = "alloc|bob\nalloc|carol\nsite_acct|carol\n"
    sacctmgr, executor = client((["sacctmgr", "-P", "-n", "show", "assoc", "where"], CommandResult(0, now, "")))
    sacctmgr.apply([DeleteUsers(("bob", "carol", "dave"), (("bob", ("alloc",)), ("carol", ("alloc",)),
                                                          ("dave", ("alloc",))))])
    reads = [argv for argv, _ in executor.calls if argv[1] == "-P"]
    assert reads == [["sacctmgr", "-P", "-n", "show", "assoc", "where", "user=bob,carol,dave", "format=Account,User"]]
    writes = [argv for argv, _ in executor.calls if argv[1] == "-i"]
    assert writes == [["sacctmgr", "-i", "remove", "user", "where", "name=bob"]]  # carol gained site_acct; dave gone


def test_real_bed_bounded_removal_leaves_nothing_behind(bed_client, slurm_sandbox):
    """A removal too big for one bounded write (forced here: the smallest chunk, 20 associations) runs as several
    writes on the real slurmdbd and still removes every association, account and user record it should."""
    sacctmgr, top = bed_client, slurm_sandbox
    project = f"{top}-bp"
    allocations = [f"{top}-b{i}" for i in range(3)]
    users = [f"{top}b{i}" for i in range(12)]  # each in all 3 allocations: 36 user associations
    sacctmgr.apply([AddAccounts((AccountSpec(project, top), *(AccountSpec(a, project) for a in allocations)),
                                tuple((user, a) for user in users for a in allocations))])
    sacctmgr.read_associations()
    sacctmgr.tree_size = 10 ** 6  # as if the tree were huge: REMOVAL_MIN associations a write
    report = sacctmgr.apply([RemoveAccounts((*allocations, project))])
    assert report.commits == 3  # 36 user associations in writes of at most 20 (12 users x 3 = 2 writes), 1 for the accounts
    left = [a for a in sacctmgr.read_associations() if a.account.startswith(f"{top}-b") or a.user in users]
    assert left == []
    records = subprocess.run(["sacctmgr", "-P", "-n", "show", "user", "format=User"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert not set(users) & set(records)


def test_real_bed_reading_without_parent_limits_reads_the_same_rows(bed_client, slurm_sandbox):
    """`wopl` makes the tree read about 4x cheaper; it must not change a row, not even where a parent has a
    limit its children do not (GrpTRESMins is printed per association, never inherited)."""
    top = slurm_sandbox
    parent, child, user = f"{top}-lp", f"{top}-lc", f"{top}ul"
    bed_client.apply([AddAccounts((AccountSpec(parent, top, grp_tres_mins={"cpu": 600, "mem": 1024}),
                                   AccountSpec(child, parent)), ((user, child),))])
    fields = "format=Cluster,Account,User,ParentName,Partition,GrpTRESMins,Description"

    def rows(*options):
        out = subprocess.run(["sacctmgr", "-P", "-n", "show", "account", "withassoc", *options, fields],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return [line for line in out.splitlines() if f"|{top}" in line]

    plain = rows()
    assert len(plain) == 4 and any("cpu=600" in line for line in plain)  # top, parent (limited), child, user
    assert rows("wopl") == plain


@pytest.mark.bed
def test_real_bed_push_read_shows_the_same_accounts_limits_and_users(bed_client, slurm_sandbox):
    """A push cycle reads `show assoc wopi wopl` (one process, ~3x cheaper than the full tree read): it must show
    the same accounts, limits and users, partition rows included."""
    top = slurm_sandbox
    parent, child, user = f"{top}-pp", f"{top}-pc", f"{top}up"
    bed_client.apply([AddAccounts((AccountSpec(parent, top, grp_tres_mins={"cpu": 600, "mem": 1024}),
                                   AccountSpec(child, parent, grp_tres_mins={"gres/gpu": 5})), ((user, child),))])

    def seen(associations):
        return sorted((a.account, a.user, a.partition, tuple(sorted(a.grp_tres_mins.items())))
                      for a in associations if a.account.startswith(top))

    full, cheap = seen(bed_client.read_associations()), seen(bed_client.read_limits_and_users())
    assert cheap == full
    assert (child, "", "", (("gres/gpu", 5),)) in cheap and (child, user, "", ()) in cheap
    assert (parent, "", "", (("cpu", 600), ("mem", 1024))) in cheap
