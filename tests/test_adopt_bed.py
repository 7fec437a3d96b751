"""Switching from waldur-site-agent on the real bed: ITS code (1.0.7, .venv-incumbent) builds the tree, `adopt`
takes it over writing Descriptions only, and then Update, Terminate, a team change, usage and a Create work on it
through the Waldur emulator (both server generations: the 7.0 line sends no slugs, so only the tree proves)."""
import io
import re
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import yaml

from slurm_sync.cli.adopt import adopt, main as adopt_main
from slurm_sync.domain.components import parse_components
from slurm_sync.domain.desired import NamingPolicy, ownership_mark
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.sync.membership import MembershipSync
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.sync.push import UsageReporter
from testkit.memory_stores import MemoryStore
from slurm_sync.waldur.api import WaldurAPI
from testkit import incumbent

from tests.plugins.slurm_bed import ensure_unix_user, sacctmgr
from tests.pull_scenario import COMPONENTS_YAML, OFFERING_COMPONENTS, slurm_tree
from tests.test_membership import Spy

pytestmark = pytest.mark.bed


@pytest.fixture(autouse=True)
def _the_incumbent():
    incumbent.require()
USERS = ("adoptu1", "adoptu2", "adoptu3")
# the incumbent's components: its unit_factor means what ours does (SLURM TRES-minutes per Waldur unit)
INCUMBENT_COMPONENTS = {
    "cpu": {"limit": 100, "measured_unit": "hours", "unit_factor": 60, "accounting_type": "limit", "label": "CPU"},
    "mem": {"limit": 10, "measured_unit": "gb-Hours", "unit_factor": 61440, "accounting_type": "usage",
            "label": "RAM"}}


@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    return request.param


class Site:
    """An offering in the emulator whose accounts the incumbent made on the bed, and slurm-sync's clients."""

    def __init__(self, waldur, sandbox):
        self.waldur, self.sandbox = waldur, sandbox
        tag = sandbox[1:5]
        self.prefixes = (f"c{tag}_", f"p{tag}_", f"a{tag}_")
        self.offering = waldur.add_offering("SLURM", components=OFFERING_COMPONENTS)
        self.users = {}
        for name in USERS:
            ensure_unix_user(name)
            user = waldur.add_user(f"{name}-w", name, f"{name}@example.org")
            waldur.add_offering_user(self.offering["uuid"], user["uuid"], name)
            self.users[name] = user
        self.customers, self.projects = {}, {}
        self.spy = Spy()
        self.api = WaldurAPI(waldur.url, waldur.token, self.offering["uuid"])
        self.policy = NamingPolicy(sandbox, *self.prefixes, 34)
        self.slurm = SacctmgrClient(self.spy)
        self.settings = {"default_account": sandbox, "customer_prefix": self.prefixes[0],
                         "project_prefix": self.prefixes[1], "allocation_prefix": self.prefixes[2],
                         "enable_user_homedir_account_creation": False}

    def project(self, customer, project):
        if customer not in self.customers:
            self.customers[customer] = self.waldur.add_customer(customer.title(), slug=customer)
        if (customer, project) not in self.projects:
            self.projects[(customer, project)] = self.waldur.add_project(
                self.customers[customer]["uuid"], project.title(), slug=project)
        return self.projects[(customer, project)]

    def incumbent_made(self, *specs):
        """Resources in Waldur whose accounts the incumbent's code makes: (customer, project, name, users[,
        naming option]) -> {name: resource}, backend_ids set as its processor sets them."""
        rows, resources = [], {}
        for customer, project, name, users, *naming in specs:
            owner = self.project(customer, project)
            resource = self.waldur.add_resource(self.offering["uuid"], owner["uuid"], name, limits={"cpu": 10})
            for user in users:
                self.waldur.add_team_member(resource["uuid"], self.users[user]["uuid"])
            resources[name] = resource
            rows.append({"uuid": resource["uuid"], "name": name, "customer_name": customer.title(),
                         "slug": self.waldur.store.get("resources", resource["uuid"])["slug"],
                         "customer_slug": customer, "project_slug": project, "project_name": project.title(),
                         "limits": {"cpu": 10}, "users": list(users),
                         "account_name_generation_policy": naming[0] if naming else None})
        made = incumbent.build(self.settings, INCUMBENT_COMPONENTS, rows)
        for name, resource in resources.items():
            self.api.set_backend_id(resource["uuid"], made[resource["uuid"]])
            resource["backend_id"] = made[resource["uuid"]]
        return resources

    def adopt(self, apply):
        out = io.StringIO()
        self.spy.writes.clear()
        adoption = adopt(self.api, self.slurm, self.policy, apply, out)
        return adoption, out.getvalue()

    def processor(self):
        return OrderProcessor(self.api, self.slurm, parse_components(yaml.safe_load(COMPONENTS_YAML)), self.policy)


@pytest.fixture
def site(waldur, slurm_sandbox):
    yield Site(waldur, slurm_sandbox)
    sacctmgr("-i", "remove", "user", "where", f"name={','.join(USERS)}", check=False)


def dump(cluster):
    """``sacctmgr dump`` less Descriptions: what adopt must leave exactly as it was."""
    out = subprocess.run(["sacctmgr", "dump", cluster, "file=/dev/stdout"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [re.sub(r":Description='[^']*'", "", line) for line in out.splitlines() if not line.startswith("#")]


def descriptions(accounts):
    rows = subprocess.run(["sacctmgr", "-P", "-n", "show", "account", "format=Account,Description"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    return {a: d for a, d in (line.split("|", 1) for line in rows.splitlines()) if a in accounts}


def test_adopt_the_incumbents_tree_then_everything_goes_on(site, slurm_bed, waldur):
    made = site.incumbent_made(("gen", "run", "run one", ("adoptu1",)),
                               ("gen", "run", "run two", ("adoptu2",), "project_slug"),
                               ("phys", "lab", "lab one", ("adoptu1",)))
    c, p, a = site.prefixes
    accounts, _, users = slurm_tree(site.sandbox)
    assert accounts[made["run one"]["backend_id"]] == p + "run" and accounts[p + "run"] == c + "gen"
    assert made["run two"]["backend_id"] == a + "run"  # its project_slug naming: named after the project
    before = dump(slurm_bed.cluster)

    adoption, out = site.adopt(apply=False)
    assert site.spy.writes == [] and dump(slurm_bed.cluster) == before
    assert [v.status for v in adoption.verdicts] == ["adopted"] * 3
    assert sum(line.startswith("adopted ") for line in out.splitlines()) == 3
    assert "load file=/dev/stdin" in out and len(adoption.marks) == 7

    adoption, out = site.adopt(apply=True)
    assert len(site.spy.writes) == 1 and site.spy.writes[0][2:4] == ["load", "file=/dev/stdin"]
    assert dump(slurm_bed.cluster) == before  # nothing but Descriptions changed: limits, users, defaults, QoS
    marks = descriptions(set(accounts))
    assert marks[made["run one"]["backend_id"]] == ownership_mark("allocation", made["run one"]["uuid"])
    assert marks[p + "run"] == ownership_mark("project", made["run one"]["project_uuid"])
    assert marks[c + "gen"] == ownership_mark("customer", made["run one"]["customer_uuid"])

    again, out = site.adopt(apply=True)
    assert site.spy.writes == [] and again.marks == {} and again.count("already ours") == 3

    processor = site.processor()
    update = waldur.create_order(site.offering["uuid"], made["run one"]["project_uuid"], type="Update",
                                 limits={"cpu": 20, "gpu": 1}, resource_uuid=made["run one"]["uuid"])
    terminate = waldur.create_order(site.offering["uuid"], made["lab one"]["project_uuid"], type="Terminate",
                                    resource_uuid=made["lab one"]["uuid"])
    create = waldur.create_order(site.offering["uuid"], made["run one"]["project_uuid"], type="Create",
                                 limits={"cpu": 5, "gpu": 1}, attributes={"name": "run three"})
    waldur.add_team_member(create["marketplace_resource_uuid"], site.users["adoptu3"]["uuid"])
    result = processor.process(site.api.active_orders())
    assert sorted(result.by_result("done")) == sorted([update["uuid"], terminate["uuid"], create["uuid"]])
    accounts, limits, users = slurm_tree(site.sandbox)
    assert limits[made["run one"]["backend_id"]] == "cpu=1200,gres/gpu=60,mem=600G"  # mem: the usage component's limit
    assert made["lab one"]["backend_id"] not in accounts and p + "lab" not in accounts and c + "phys" not in accounts
    created = waldur.get_resource(create["marketplace_resource_uuid"])["backend_id"]
    assert accounts[created] == p + "run"  # under the adopted project account: no second parent
    assert sorted(x for x in accounts if x.startswith((c, p))) == [c + "gen", p + "run"]

    waldur.add_team_member(made["run two"]["uuid"], site.users["adoptu3"]["uuid"])  # a team change, no order
    sync = MembershipSync(site.api, site.slurm, site.policy).run()
    run_two = made["run two"]["backend_id"]
    assert ("adoptu3", run_two) in sync.added and sync.not_owned == []  # the project's team, as Waldur shows it
    assert {u for u, acc in slurm_tree(site.sandbox)[2] if acc == run_two} == set(USERS)

    from testkit.job_rows import JobRow, JobTable
    table = JobTable.from_slurm_conf()
    account = made["run two"]["backend_id"]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = max(now.replace(day=1, hour=0, minute=0, second=0), now - timedelta(hours=3))
    try:
        table.insert([JobRow(table.next_job_id(), account, "adoptu2", start, start + timedelta(hours=1),
                             {"cpu": 2, "mem": 1024, "node": 1})])
        components = parse_components(yaml.safe_load(COMPONENTS_YAML))
        reporter = UsageReporter(site.api, SacctmgrClient(site.spy), components, MemoryStore())
        reporter.run(now=now, months=[(now.year, now.month)])
        period = f"{now.year}-{now.month:02d}-01"
        usage = {u["type"]: Decimal(str(u["usage"])) for u in waldur.component_usages(made["run two"]["uuid"],
                                                                                          period)}
        assert usage["mem"] == Decimal(1024 * 60) / 61440  # 1 GB for an hour, in gb-Hours
    finally:
        table.delete_synthetic([account])


def test_bad_input_is_refused_and_nothing_of_it_is_written(site, slurm_bed, waldur):
    made = site.incumbent_made(("gen", "run", "run one", ("adoptu1",)), ("gen", "run", "run two", ("adoptu2",)))
    victim = made["run one"]["uuid"]
    # a resource named like another's ownership mark: the incumbent writes its name as the Description
    hostile = site.incumbent_made(("gen", "run", ownership_mark("allocation", victim), ("adoptu2",)))
    twin = site.waldur.add_resource(site.offering["uuid"], made["run two"]["project_uuid"], "twin",
                                    backend_id=made["run two"]["backend_id"])  # two resources, one account
    site_account = site.waldur.add_resource(site.offering["uuid"], made["run two"]["project_uuid"], "site",
                                            backend_id=site.sandbox)
    before = dump(slurm_bed.cluster)
    adoption, out = site.adopt(apply=True)
    verdicts = {v.resource_uuid: v for v in adoption.verdicts}
    assert verdicts[twin["uuid"]].status == "refused" and "named by 2 resources" in verdicts[twin["uuid"]].why
    assert verdicts[made["run two"]["uuid"]].status == "refused"
    assert "not an allocation" in verdicts[site_account["uuid"]].why
    forged = list(hostile.values())[0]["uuid"]
    assert verdicts[forged].status == "refused" and verdicts[victim].status == "refused"
    assert adoption.count("adopted") == 0 and site.spy.writes == [] and dump(slurm_bed.cluster) == before


@pytest.mark.parametrize("waldur_profile", ["current"])  # the command's wiring is the same on both lines
def test_the_command_prints_one_line_per_resource_and_exits_1_when_some_are_refused(site, capsys, waldur):
    made = site.incumbent_made(("gen", "run", "run one", ("adoptu1",)))
    site.waldur.add_resource(site.offering["uuid"], made["run one"]["project_uuid"], "no account")
    env = {"WALDUR_API_URL": waldur.url, "WALDUR_API_TOKEN": waldur.token,
           "WALDUR_OFFERING_UUID": site.offering["uuid"], "SLURM_DEFAULT_ACCOUNT": site.sandbox,
           "SLURM_CUSTOMER_PREFIX": site.prefixes[0], "SLURM_PROJECT_PREFIX": site.prefixes[1],
           "SLURM_ALLOCATION_PREFIX": site.prefixes[2]}
    out = io.StringIO()
    assert adopt_main(apply=True, out=out, env=env) == 1
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("#")]
    assert sorted(line.split(" ")[0] for line in lines) == ["adopted", "refused"]
    assert "1 adopted, 0 already ours, 1 refused" in out.getvalue()


def test_an_older_slurm_syncs_parents_are_upgraded_and_orders_go_on(site, waldur):
    """Parents an older slurm-sync made carry plain-name marks (waldur-project-<own name>): orders err until adopt
    gives them uuid marks, then a Create goes under them (no second parent) and team sync reaches the allocation."""
    c, p, a = site.prefixes
    customer, project = c + "gen", p + "run"
    owner = site.project("gen", "run")
    resource = waldur.add_resource(site.offering["uuid"], owner["uuid"], "old", backend_id=a + "old")
    waldur.add_team_member(resource["uuid"], site.users["adoptu1"]["uuid"])
    sacctmgr("-i", "add", "account", customer, f"parent={site.sandbox}", f"Description=waldur-customer-{customer}")
    sacctmgr("-i", "add", "account", project, f"parent={customer}", f"Description=waldur-project-{project}")
    sacctmgr("-i", "add", "account", a + "old", f"parent={project}",
             f"Description={ownership_mark('allocation', resource['uuid'])}")
    create = waldur.create_order(site.offering["uuid"], owner["uuid"], type="Create", limits={"cpu": 5},
                                 attributes={"name": "new"})
    result = site.processor().process(site.api.active_orders())
    assert "slurm-sync adopt --apply" in waldur.get_order(create["uuid"])["error_message"]
    assert result.by_result("done") == [] and set(slurm_tree(site.sandbox)[0]) == {customer, project, a + "old"}

    adoption, _ = site.adopt(apply=True)
    assert adoption.count("adopted") == 1 and len(site.spy.writes) == 1
    assert descriptions({customer, project}) == {customer: ownership_mark("customer", owner["customer_uuid"]),
                                                 project: ownership_mark("project", owner["uuid"])}
    create = waldur.create_order(site.offering["uuid"], owner["uuid"], type="Create", limits={"cpu": 5},
                                 attributes={"name": "new"})
    assert site.processor().process(site.api.active_orders()).by_result("done") == [create["uuid"]]
    accounts = slurm_tree(site.sandbox)[0]
    assert accounts[waldur.get_resource(create["marketplace_resource_uuid"])["backend_id"]] == project
    assert sorted(x for x in accounts if x.startswith((c, p))) == [customer, project]
    sync = MembershipSync(site.api, site.slurm, site.policy).run()
    assert ("adoptu1", a + "old") in sync.added and sync.not_owned == []
