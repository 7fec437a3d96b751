"""Membership sync on the real bed and the emulator: teams change with no order, SLURM follows in one cycle."""
import subprocess

import pytest
import yaml

from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.domain.components import parse_components
from slurm_sync.sync.membership import MembershipSync
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI

from tests.pull_scenario import COMPONENTS_YAML, sacctmgr_rows, slurm_tree

pytestmark = pytest.mark.bed


@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    return request.param


class Spy(NativeExecutor):
    """The real executor, counting sacctmgr writes (argv with -i)."""

    def __init__(self):
        super().__init__(timeout=60)
        self.writes = []

    def run(self, argv, *, timeout=None, input=None, check=True):
        if argv[:2] == ["sacctmgr", "-i"]:
            self.writes.append(list(argv))
        return super().run(argv, timeout=timeout, input=input, check=check)


@pytest.fixture
def bed(waldur, scenario, slurm_sandbox):
    """(processor, membership sync, spy executor) with this test's own account names."""
    spy = Spy()
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"])
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(f"{slurm_sandbox}w", f"c{tag}_", f"p{tag}_", f"a{tag}_", 34)
    sacctmgr = SacctmgrClient(spy)
    processor = OrderProcessor(api, sacctmgr, parse_components(yaml.safe_load(COMPONENTS_YAML)), policy)
    yield processor, MembershipSync(api, sacctmgr, policy), spy
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(policy.default_account)


def users_of(root):
    return slurm_tree(root)[2]


def test_team_changes_reach_slurm_within_one_cycle(bed, waldur, scenario):
    processor, sync, spy = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    order = scenario.create("acme", "physics", "team", team=("alice",))
    assert processor.process(processor.waldur.active_orders()).by_result("done") == [order["uuid"]]
    resource = order["marketplace_resource_uuid"]
    account = a + "team"
    assert users_of(root) == {("alice", account)}

    # idle: reads only, no write
    spy.writes.clear()
    idle = sync.run()
    assert spy.writes == [] and idle.added == [] and idle.removed == []
    assert idle.waldur_requests <= 5  # resources, offering users, project permissions (+ provider look-up once)

    waldur.add_team_member(resource, scenario.users["bob"]["uuid"])  # a member joins
    result = sync.run()
    assert result.added == [("bob", account)] and users_of(root) == {("alice", account), ("bob", account)}

    waldur.remove_team_member(resource, scenario.users["alice"]["uuid"])  # a member leaves
    result = sync.run()
    assert result.removed == [("alice", account)] and users_of(root) == {("bob", account)}

    # a member without a login yet gets one: no order, the association follows
    dave = waldur.add_user("dave-waldur")
    offering_user = waldur.add_offering_user(scenario.offering["uuid"], dave["uuid"], "")
    waldur.add_team_member(resource, dave["uuid"])
    assert sync.run().added == []
    waldur.set_offering_username(offering_user["uuid"], "dave.d")
    assert sync.run().added == [("dave.d", account)]
    waldur.set_offering_username(offering_user["uuid"], "")  # and loses it
    assert sync.run().removed == [("dave.d", account)]
    assert users_of(root) == {("bob", account)}

    spy.writes.clear()
    assert sync.run().added == [] and spy.writes == []


def test_a_leaving_member_keeps_other_allocations_and_its_default_moves(bed, waldur, scenario, slurm_sandbox):
    processor, sync, _ = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    login = f"md{slurm_sandbox[1:7]}"  # a login no other test uses: its DefaultAccount is this test's
    member = waldur.add_user(f"{login}-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], member["uuid"], login)
    first = scenario.create("acme", "physics", "first", team=())
    second = scenario.create("globex", "bio", "second", team=())
    for order in (first, second):
        waldur.add_team_member(order["marketplace_resource_uuid"], member["uuid"])
    processor.process(processor.waldur.active_orders())
    default = dict(sacctmgr_rows("show", "user", login, "format=User,DefaultAccount"))[login]
    assert default in (a + "first", a + "second")
    leaving, kept = (first, a + "second") if default == a + "first" else (second, a + "first")
    waldur.remove_team_member(leaving["marketplace_resource_uuid"], member["uuid"])
    sync.run()
    assert {(u, acc) for u, acc in users_of(root) if u == login} == {(login, kept)}
    assert dict(sacctmgr_rows("show", "user", login, "format=User,DefaultAccount"))[login] == kept


def test_jobs_of_a_removed_member_are_cancelled(bed, waldur, scenario):
    from tests.plugins.slurm_bed import ensure_unix_user
    processor, sync, _ = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    login = ensure_unix_user("msuser1")
    member = waldur.add_user("msuser1-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], member["uuid"], login)
    order = scenario.create("acme", "physics", "jobs", team=("alice",))
    waldur.add_team_member(order["marketplace_resource_uuid"], member["uuid"])
    processor.process(processor.waldur.active_orders())
    job = subprocess.run(["runuser", "-u", login, "--", "sbatch", "--parsable", f"--account={a}jobs", "--mem=64",
                          "--chdir=/tmp", "--output=/dev/null", "--wrap", "sleep 300"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    waldur.remove_team_member(order["marketplace_resource_uuid"], member["uuid"])
    assert sync.run().removed == [(login, a + "jobs")]
    assert job not in subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                                     timeout=60).stdout.split()
    assert users_of(root) == {("alice", a + "jobs")}


def test_accounts_not_provably_ours_are_left_alone(bed, waldur, scenario, slurm_sandbox):
    """A resource whose backend_id names a site account: its users are never touched by membership sync."""
    from tests.plugins.slurm_bed import add_slurm_user, sacctmgr
    processor, sync, spy = bed
    site = f"{slurm_sandbox}_site"
    sacctmgr("-i", "add", "account", site, f"parent={slurm_sandbox}", "description=site")
    add_slurm_user("carol", site)
    project = scenario.project("acme", "physics")
    resource = waldur.add_resource(scenario.offering["uuid"], project["uuid"], "foreign", backend_id=site)
    waldur.add_team_member(resource["uuid"], scenario.users["alice"]["uuid"])
    spy.writes.clear()
    result = sync.run()
    assert result.not_owned == [resource["uuid"]] and spy.writes == []
    assert {u for a, u in sacctmgr_rows("show", "assoc", f"account={site}", "format=Account,User") if u} == {"carol"}


def test_without_the_providers_permission_listing_teams_are_read_per_resource(bed, waldur, scenario):
    processor, sync, _ = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    order = scenario.create("acme", "physics", "perres", team=("alice",))
    processor.process(processor.waldur.active_orders())
    waldur.token_is_provider_owner = False  # a service manager's token: project_permissions is 403
    waldur.add_team_member(order["marketplace_resource_uuid"], scenario.users["bob"]["uuid"])
    assert sync.run().added == [("bob", a + "perres")]
    assert waldur.count("GET", "/team/") >= 1
    assert users_of(root) == {("alice", a + "perres"), ("bob", a + "perres")}


def test_a_site_user_with_partition_associations_keeps_them(bed, waldur, scenario, slurm_sandbox):
    """M4 on the bed: the member's only other association is a site's partition-specific one; leaving the team
    removes slurm-sync's association alone, never the user (and so never the site's association)."""
    from tests.plugins.slurm_bed import sacctmgr
    processor, sync, _ = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    login = f"mp{slurm_sandbox[1:7]}"
    site = f"{slurm_sandbox}_site"
    sacctmgr("-i", "add", "account", site, f"parent={slurm_sandbox}", "description=site")
    sacctmgr("-i", "add", "user", login, f"account={site}", "partition=bed")
    member = waldur.add_user(f"{login}-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], member["uuid"], login)
    order = scenario.create("acme", "physics", "part", team=())
    waldur.add_team_member(order["marketplace_resource_uuid"], member["uuid"])
    processor.process(processor.waldur.active_orders())
    assert (login, a + "part") in users_of(root)
    waldur.remove_team_member(order["marketplace_resource_uuid"], member["uuid"])
    assert sync.run().removed == [(login, a + "part")]
    rows = sacctmgr_rows("show", "assoc", f"user={login}", "format=Account,Partition")
    assert rows == [[site, "bed"]]


def test_a_member_leaving_two_allocations_of_a_project_is_removed_whole(bed, waldur, scenario, slurm_sandbox):
    """Both of its associations go in one plan: the user is removed whole (22.05 refuses `remove user ...
    cluster=` for a user with several associations, found by benchmarks/membership_sync.py)."""
    processor, sync, _ = bed
    root, a = processor.policy.default_account, processor.policy.allocation_prefix
    login = f"mw{slurm_sandbox[1:7]}"
    member = waldur.add_user(f"{login}-waldur")
    waldur.add_offering_user(scenario.offering["uuid"], member["uuid"], login)
    orders = [scenario.create("acme", "physics", name, team=()) for name in ("two-a", "two-b")]
    waldur.add_team_member(orders[0]["marketplace_resource_uuid"], member["uuid"])  # the project's team: both
    processor.process(processor.waldur.active_orders())
    assert {(u, acc) for u, acc in users_of(root) if u == login} == {(login, a + "two-a"), (login, a + "two-b")}
    waldur.remove_team_member(orders[0]["marketplace_resource_uuid"], member["uuid"])
    assert sorted(sync.run().removed) == [(login, a + "two-a"), (login, a + "two-b")]
    assert login not in {u for u, in sacctmgr_rows("show", "user", "format=User")}
