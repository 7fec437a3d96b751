"""Push on the real bed: usage from real jobs and injected rows, reported once, exactly; account state."""
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.plugins.slurm_bed import mark_ours
import yaml

from slurm_sync.domain.components import parse_components
from slurm_sync.sync.push import UsageReporter
from testkit.memory_stores import MemoryStore
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI

from tests.test_sacct import _sbatch, _wait_done, bed_accounts, job_table  # noqa: F401  (fixtures)

UTC = timezone.utc
PUSH_COMPONENTS = """
cpu: {accounting_type: usage, measured_unit: cpu-minutes, label: CPU, unit_factor: 1}
mem: {accounting_type: usage, measured_unit: MB-minutes, label: RAM, unit_factor: 1}
gres/gpu: {accounting_type: usage, measured_unit: gpu-hours, label: GPU, unit_factor: 60}
"""
COMPONENTS = parse_components(yaml.safe_load(PUSH_COMPONENTS))
OFFERING_COMPONENTS = [{"type": c.type, "name": c.label, "measured_unit": c.measured_unit, "billing_type": "usage"}
                       for c in COMPONENTS]


@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    """Every push test runs against both server generations."""
    return request.param


def user_amounts(waldur, resource):
    """{(user, component type): amount} as Waldur shows per-user usage: the component usages' user usages (on
    7.0 too: SLURM-remote's per-user set_usage takes integers and breaks on other component types, row 18)."""
    return {(r["username"], r["component_type"]): Decimal(str(r["usage"]))
            for r in waldur.user_usages(resource_uuid=resource["uuid"])}


def user_posts(waldur):
    return waldur.count("POST", "set_user_usage")


def _reporter(waldur, accounts, offering_components=OFFERING_COMPONENTS, concurrency=8):
    """An offering with one resource per account, and a reporter for it: (reporter, resources, store)."""
    offering = waldur.add_offering("SLURM", components=offering_components)
    customer = waldur.add_customer("Acme")
    project = waldur.add_project(customer["uuid"], "Physics")
    resources = {a: waldur.add_resource(offering["uuid"], project["uuid"], a, backend_id=a) for a in accounts}
    mark_ours(resources)
    store = MemoryStore()
    reporter = UsageReporter(WaldurAPI(waldur.url, waldur.token, offering["uuid"], concurrency=concurrency),
                             SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS, store)
    return reporter, resources, store


@pytest.fixture
def push(waldur, bed_accounts):
    accounts, users = bed_accounts
    reporter, resources, store = _reporter(waldur, accounts)
    return reporter, resources, accounts, users, store


def usages(waldur, resource, period):
    return {u["type"]: Decimal(str(u["usage"])) for u in waldur.component_usages(resource["uuid"], period)}


def posts(waldur, path):
    return waldur.count("POST", path)


@pytest.mark.bed
def test_reported_usage_equals_ground_truth_per_component_and_user(waldur, push):
    reporter, resources, accounts, users, _ = push
    jobs = {_sbatch(user, account, 2): (account, user) for account in accounts for user in users}
    _wait_done(list(jobs))
    out = subprocess.run(["sacct", "-j", ",".join(jobs), "-X", "-P", "-n", "--noconvert",
                          "-o", "JobID,ElapsedRaw,AllocTRES"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    truth = {}  # (account, user) -> [cpu-minutes, MB-minutes], from ElapsedRaw, independent of start/end
    for line in out.splitlines():
        job_id, elapsed, tres = line.split("|")
        pairs = dict(p.split("=") for p in tres.split(","))
        got = truth.setdefault(jobs[job_id], [Decimal(0), Decimal(0)])
        got[0] += Decimal(pairs["cpu"]) * int(elapsed) / 60
        got[1] += Decimal(pairs["mem"].rstrip("M")) * int(elapsed) / 60
    now = datetime.now(UTC)
    result = reporter.run(now=now, months=[(now.year, now.month)])
    assert result.sacct_calls == 1
    period = f"{now.year}-{now.month:02d}-01"
    for account in accounts:
        reported = usages(waldur, resources[account], period)
        assert abs(reported["cpu"] - sum(v[0] for (a, _), v in truth.items() if a == account)) <= Decimal("0.01")
        assert abs(reported["mem"] - sum(v[1] for (a, _), v in truth.items() if a == account)) <= Decimal("0.01")
        assert reported["gpu"] == 0
        per_user = user_amounts(waldur, resources[account])
        for user in users:
            assert abs(per_user[(user, "cpu")] - truth[(account, user)][0]) <= Decimal("0.01")
            assert abs(per_user[(user, "mem")] - truth[(account, user)][1]) <= Decimal("0.01")


@pytest.mark.bed
def test_unchanged_usage_posts_nothing_and_a_change_posts_once(waldur, push, job_table):
    from testkit.job_rows import JobRow
    reporter, resources, accounts, users, _ = push
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    base = job_table.next_job_id()
    job_table.insert([JobRow(base, accounts[0], users[0], start, start + timedelta(minutes=30), {"cpu": 2, "mem": 100,
                                                                                                "node": 1})])
    reporter.run(now=now)
    first = posts(waldur, "component-usages/set_usage"), user_posts(waldur)
    assert first[0] == 2  # one per resource: the other one's zeros are news too
    assert first[1] >= 1
    before = len(waldur.requests)
    idle = reporter.run(now=now)
    assert (posts(waldur, "component-usages/set_usage"), user_posts(waldur)) == first  # nothing changed: no POST
    assert {r.method for r in waldur.requests[before:]} == {"GET"} and idle.waldur_requests <= 3
    job_table.insert([JobRow(base + 1, accounts[1], users[1], start, start + timedelta(minutes=10),
                             {"cpu": 1, "mem": 10, "node": 1})])
    reporter.run(now=now)
    assert posts(waldur, "component-usages/set_usage") == first[0] + 1  # exactly one: the resource that changed
    # one user's cpu and mem changed: one call per component (the whole list on the current line, the one user on 7.0)
    assert user_posts(waldur) == first[1] + 2
    period = f"{now.year}-{now.month:02d}-01"
    assert usages(waldur, resources[accounts[1]], period)["cpu"] == Decimal(10)


@pytest.mark.bed
def test_job_spanning_the_first_is_split_between_months(waldur, push, job_table):
    from testkit.job_rows import JobRow
    reporter, resources, accounts, users, _ = push
    base = job_table.next_job_id()
    job_table.insert([JobRow(base, accounts[0], users[0], datetime(2024, 1, 31, 23, tzinfo=UTC),
                             datetime(2024, 2, 1, 1, 30, tzinfo=UTC), {"cpu": 2, "mem": 1024, "node": 1,
                                                                         "gres/gpu": 1})])
    waldur.now = lambda: datetime(2024, 2, 2, 12)  # the server's clock: a 7.0 line files usage by it
    result = reporter.run(now=datetime(2024, 2, 2, 12, tzinfo=UTC))  # before the closing day: both months
    assert result.months == [(2024, 1), (2024, 2)] and result.sacct_calls == 2
    jan = usages(waldur, resources[accounts[0]], "2024-01-01")
    feb = usages(waldur, resources[accounts[0]], "2024-02-01")
    assert (feb["cpu"], feb["mem"], feb["gpu"]) == (Decimal(180), Decimal(92160), Decimal("1.5"))
    if waldur.profile == "current":
        assert (jan["cpu"], jan["mem"], jan["gpu"]) == (Decimal(120), Decimal(61440), Decimal(1))
        return
    # 7.0: a closed month's totals would overwrite this month's: never sent, logged with the amounts
    assert jan == {}
    totals = [n for n in result.unreportable if " of " not in n.split(" 2024-01")[0]]
    assert len(totals) == 3 and any("cpu 2024-01 is 120.00" in n for n in totals)
    # per-user usage hangs on the month's component usage: February's is there, January's has none to hang on
    assert any("cpu of " in n and "2024-01" in n for n in result.unreportable)
    assert {r["billing_period"][:7] for r in waldur.user_usages(resource_uuid=resources[accounts[0]]["uuid"])} == {
        "2024-02"}
    again = reporter.run(now=datetime(2024, 2, 2, 12, tzinfo=UTC))
    assert again.unreportable == [] and again.usage_posts == 0  # logged once


@pytest.mark.bed
def test_closed_month_never_goes_down_and_is_logged(waldur, push, caplog):
    reporter, resources, accounts, users, store = push
    resource = resources[accounts[0]]["uuid"]
    store.put(resource, (2024, 1), {"cpu": "999.00", "mem": "0.00", "gpu": "0.00"}, {})
    result = reporter.run(now=datetime(2024, 2, 2, tzinfo=UTC), months=[(2024, 1)])
    assert any("went down from 999.00 to 0.00" in a for a in result.anomalies)
    assert "usage anomaly" in caplog.text
    assert store.get(resource, (2024, 1))[0]["cpu"] == "999.00"
    assert "cpu" not in usages(waldur, resources[accounts[0]], "2024-01-01")


@pytest.mark.bed
def test_vanished_account_errs_the_resource_and_a_returned_one_is_ok(waldur, push, slurm_sandbox):
    from tests.plugins.slurm_bed import sacctmgr
    reporter, resources, accounts, users, _ = push
    offering = reporter.waldur.offering_uuid
    project = resources[accounts[0]]["project_uuid"]
    ghost = f"{slurm_sandbox}_ghost"
    lost = waldur.add_resource(offering, project, "ghost", backend_id=ghost)
    result = reporter.run(now=datetime.now(UTC))
    assert result.erred == [lost["uuid"]]
    if waldur.profile == "7.0":  # set_as_erred is staff-only there: the allocation is set erred (row 7)
        assert waldur.allocation_state(lost["uuid"]) == "Erred"
        assert waldur.count("POST", "set_as_erred") == 0
    else:
        assert waldur.get_resource(lost["uuid"])["state"] == "Erred"
        assert ghost in waldur.get_resource(lost["uuid"])["error_message"]
    assert reporter.run(now=datetime.now(UTC)).erred == []  # reported once
    sacctmgr("-i", "add", "account", ghost, f"parent={slurm_sandbox}", f"Description=waldur-allocation-{lost['uuid']}")
    assert reporter.run(now=datetime.now(UTC)).recovered == [lost["uuid"]]
    if waldur.profile == "7.0":
        assert waldur.allocation_state(lost["uuid"]) == "OK"
    else:
        assert waldur.get_resource(lost["uuid"])["state"] == "OK"
    assert reporter.run(now=datetime.now(UTC)).recovered == []


@pytest.mark.bed
def test_push_leaves_an_account_that_is_not_its_own_alone(waldur, push, slurm_sandbox, job_table):
    """A resource whose backend_id names a site account (staff typed it, say): none of that account's jobs are
    billed to the resource, its users are not reported as the resource's, the resource is not erred; said once."""
    from testkit.job_rows import JobRow
    from tests.plugins.slurm_bed import sacctmgr
    reporter, resources, accounts, users, _ = push
    site = f"{slurm_sandbox}_site"
    sacctmgr("-i", "add", "account", site, f"parent={slurm_sandbox}", "Description=physics dept")
    sacctmgr("-i", "add", "user", users[0], f"account={site}")
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    job_table.insert([JobRow(job_table.next_job_id(), site, users[0], start, start + timedelta(hours=1),
                             {"cpu": 4, "mem": 4096, "node": 1, "gres/gpu": 1})])
    stolen = waldur.add_resource(reporter.waldur.offering_uuid, resources[accounts[0]]["project_uuid"], "stolen",
                                 backend_id=site)
    try:
        first = reporter.run(now=now)
        assert first.skipped_foreign == 1 and len(first.foreign) == 1
        assert site in first.foreign[0] and stolen["uuid"] in first.foreign[0] and "physics dept" in first.foreign[0]
        assert waldur.component_usages(stolen["uuid"]) == []
        assert waldur.get_resource(stolen["uuid"])["state"] == "OK" and first.erred == []
        assert first.usage_posts >= len(accounts)  # the resources whose accounts are ours are billed as before
        second = reporter.run(now=now)
        assert second.skipped_foreign == 1 and second.foreign == []  # said once
        assert waldur.component_usages(stolen["uuid"]) == []
    finally:
        job_table.delete_synthetic([site])


@pytest.mark.bed
def test_a_report_waldur_refuses_does_not_stop_the_others(waldur, bed_accounts, job_table):
    """Row 17: a usage component with a monthly limit_amount refuses an amount over it (400)."""
    from testkit.job_rows import JobRow
    accounts, users = bed_accounts
    capped = [dict(c, limit_period="month", limit_amount=100) if c["type"] == "cpu" else c
              for c in OFFERING_COMPONENTS]
    reporter, resources, store = _reporter(waldur, accounts, capped)
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    base = job_table.next_job_id()
    job_table.insert([JobRow(base, accounts[0], users[0], start, start + timedelta(minutes=100), {"cpu": 2, "mem": 1}),
                      JobRow(base + 1, accounts[1], users[0], start, start + timedelta(minutes=10), {"cpu": 1, "mem": 1})])
    result = reporter.run(now=now, months=[(now.year, now.month)])
    period = f"{now.year}-{now.month:02d}-01"
    assert usages(waldur, resources[accounts[0]], period) == {}  # refused: 200 cpu-minutes over the limit of 100
    assert usages(waldur, resources[accounts[1]], period)["cpu"] == Decimal(10)  # the other one still billed
    assert len(result.refused) == 1
    assert resources[accounts[0]]["uuid"] in result.refused[0] and "'cpu': '200.00'" in result.refused[0]
    assert store.get(resources[accounts[0]]["uuid"], (now.year, now.month))[0] == {}  # not recorded as sent
    again = reporter.run(now=now, months=[(now.year, now.month)])
    assert len(again.refused) == 1 and again.usage_posts == 0  # tried again, still refused; the other unchanged


def jobs_this_month(job_table, rows):
    """Insert finished jobs starting on the 1st of this month: rows of (account, user, minutes, tres); returns now."""
    from testkit.job_rows import JobRow
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    base = job_table.next_job_id()
    job_table.insert([JobRow(base + i, account, user, start, start + timedelta(minutes=minutes), tres)
                      for i, (account, user, minutes, tres) in enumerate(rows)])
    return now


@pytest.mark.bed
def test_a_server_error_on_one_resource_does_not_stop_the_cycle(waldur, bed_accounts, job_table):
    """A 5xx on one resource's post is logged and retried next cycle; the others are billed."""
    accounts, users = bed_accounts
    # one post at a time: the four failures below then meet one resource's four tries (posting together, the
    # resources would share them out, and each would get through on a retry)
    reporter, resources, _ = _reporter(waldur, accounts, concurrency=1)
    now = jobs_this_month(job_table, [(account, users[0], 10, {"cpu": 1, "mem": 1}) for account in accounts])
    waldur.faults.fail_next(4, status=500, path_contains="set_usage")  # more than the retries close to the call
    result = reporter.run(now=now, months=[(now.year, now.month)])
    assert len(result.refused) == 1 and "failed in Waldur" in result.refused[0]
    period = f"{now.year}-{now.month:02d}-01"
    billed = [a for a in accounts if usages(waldur, resources[a], period)]
    assert len(billed) == 1  # the other resource
    again = reporter.run(now=now, months=[(now.year, now.month)])
    assert again.refused == [] and again.usage_posts == 1  # the failed one, next cycle
    assert all(usages(waldur, resources[a], period)["cpu"] == Decimal(10) for a in accounts)


@pytest.mark.bed
def test_a_refused_per_user_post_never_makes_the_totals_look_unsent(waldur, push, job_table):
    """Rows 10, 19: per-user usage is refused; the totals were posted once and are not posted again."""
    reporter, resources, accounts, users, store = push
    now = jobs_this_month(job_table, [(accounts[0], users[0], 10, {"cpu": 1, "mem": 1})])
    waldur.faults.fail_next(1, status=400, path_contains="set_user_usage")
    first = reporter.run(now=now, months=[(now.year, now.month)])
    assert first.usage_posts == 2 and len(first.refused) == 1
    second = reporter.run(now=now, months=[(now.year, now.month)])
    assert second.usage_posts == 0  # the totals are not re-posted because the per-user post failed
    assert user_amounts(waldur, resources[accounts[0]])[(users[0], "cpu")] == Decimal(10)


@pytest.mark.bed
@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_per_user_usage_goes_through_set_user_usage_with_any_component_type(waldur, bed_accounts, job_table):
    """Row 18: SLURM-remote set_usage would 500 on this offering (a 'mem' component); set_user_usage works."""
    accounts, users = bed_accounts
    reporter, resources, store = _reporter(waldur, accounts)
    now = jobs_this_month(job_table, [(accounts[0], users[0], 30, {"cpu": 2, "mem": 100})])
    waldur.now = lambda: now.replace(tzinfo=None)
    result = reporter.run(now=now, months=[(now.year, now.month)])
    remote_usage = [r for r in waldur.requests if "slurm-remote" in r.path and r.path.endswith("/set_usage/")]
    assert result.refused == [] and remote_usage == []
    amounts = user_amounts(waldur, resources[accounts[0]])
    assert amounts[(users[0], "cpu")] == Decimal(60) and amounts[(users[0], "mem")] == Decimal(3000)
    assert reporter.run(now=now, months=[(now.year, now.month)]).user_usage_posts == 0


@pytest.mark.bed
@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_erred_resource_is_said_once_never_counted_recovered(waldur, push):
    """Row 23: set_state ok leaves a 7.0 resource Erred: logged once as unreportable, not 'recovered'."""
    reporter, resources, accounts, users, store = push
    erred = resources[accounts[0]]["uuid"]
    waldur.set_resource_state(erred, "Erred")
    first = reporter.run(now=datetime.now(UTC))
    assert first.recovered == [] and len(first.unreportable) == 1 and erred in first.unreportable[0]
    assert waldur.get_resource(erred)["state"] == "Erred"
    again = reporter.run(now=datetime.now(UTC))
    assert again.unreportable == [] and again.recovered == []
