"""Push on the real bed: usage from real jobs and injected rows, reported once, exactly; account state."""
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import yaml

from slurm_sync.components import parse_components
from slurm_sync.push import MemoryStore, UsageReporter
from slurm_sync.slurm.executor import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur_api import WaldurAPI

from .test_sacct import _sbatch, _wait_done, bed_accounts, job_table  # noqa: F401  (fixtures)

UTC = timezone.utc
PUSH_COMPONENTS = """
cpu: {accounting_type: usage, measured_unit: cpu-minutes, label: CPU, unit_factor: 1}
mem: {accounting_type: usage, measured_unit: MB-minutes, label: RAM, unit_factor: 1}
gres/gpu: {accounting_type: usage, measured_unit: gpu-hours, label: GPU, unit_factor: 60}
"""
COMPONENTS = parse_components(yaml.safe_load(PUSH_COMPONENTS))
OFFERING_COMPONENTS = [{"type": c.type, "name": c.label, "measured_unit": c.measured_unit, "billing_type": "usage"}
                       for c in COMPONENTS]


@pytest.fixture
def push(waldur, bed_accounts):
    accounts, users = bed_accounts
    offering = waldur.add_offering("SLURM", components=OFFERING_COMPONENTS)
    customer = waldur.add_customer("Acme")
    project = waldur.add_project(customer["uuid"], "Physics")
    resources = {a: waldur.add_resource(offering["uuid"], project["uuid"], a, backend_id=a) for a in accounts}
    store = MemoryStore()
    reporter = UsageReporter(WaldurAPI(waldur.url, waldur.token, offering["uuid"]),
                             SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS, store)
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
        per_user = {(r["username"], r["component_type"]): Decimal(str(r["usage"]))
                    for r in waldur.user_usages(resource_uuid=resources[account]["uuid"])}
        for user in users:
            assert abs(per_user[(user, "cpu")] - truth[(account, user)][0]) <= Decimal("0.01")
            assert abs(per_user[(user, "mem")] - truth[(account, user)][1]) <= Decimal("0.01")


@pytest.mark.bed
def test_unchanged_usage_posts_nothing_and_a_change_posts_once(waldur, push, job_table):
    from slurm_sync.testing.job_rows import JobRow
    reporter, resources, accounts, users, _ = push
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    base = job_table.next_job_id()
    job_table.insert([JobRow(base, accounts[0], users[0], start, start + timedelta(minutes=30), {"cpu": 2, "mem": 100,
                                                                                                "node": 1})])
    reporter.run(now=now)
    first = posts(waldur, "set_usage"), posts(waldur, "set_user_usages")
    assert first[0] == 2  # one per resource: the other one's zeros are news too
    reporter.run(now=now)
    assert (posts(waldur, "set_usage"), posts(waldur, "set_user_usages")) == first  # nothing changed: no POST
    job_table.insert([JobRow(base + 1, accounts[1], users[1], start, start + timedelta(minutes=10),
                             {"cpu": 1, "mem": 10, "node": 1})])
    reporter.run(now=now)
    assert posts(waldur, "set_usage") == first[0] + 1  # exactly one: the resource that changed
    period = f"{now.year}-{now.month:02d}-01"
    assert usages(waldur, resources[accounts[1]], period)["cpu"] == Decimal(10)


@pytest.mark.bed
def test_job_spanning_the_first_is_split_between_months(waldur, push, job_table):
    from slurm_sync.testing.job_rows import JobRow
    reporter, resources, accounts, users, _ = push
    base = job_table.next_job_id()
    job_table.insert([JobRow(base, accounts[0], users[0], datetime(2024, 1, 31, 23, tzinfo=UTC),
                             datetime(2024, 2, 1, 1, 30, tzinfo=UTC), {"cpu": 2, "mem": 1024, "node": 1,
                                                                         "gres/gpu": 1})])
    result = reporter.run(now=datetime(2024, 2, 2, 12, tzinfo=UTC))  # before the closing day: both months
    assert result.months == [(2024, 1), (2024, 2)] and result.sacct_calls == 2
    jan = usages(waldur, resources[accounts[0]], "2024-01-01")
    feb = usages(waldur, resources[accounts[0]], "2024-02-01")
    assert (jan["cpu"], jan["mem"], jan["gpu"]) == (Decimal(120), Decimal(61440), Decimal(1))
    assert (feb["cpu"], feb["mem"], feb["gpu"]) == (Decimal(180), Decimal(92160), Decimal("1.5"))


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
    assert waldur.get_resource(lost["uuid"])["state"] == "Erred"
    assert ghost in waldur.get_resource(lost["uuid"])["error_message"]
    assert reporter.run(now=datetime.now(UTC)).erred == []  # reported once
    sacctmgr("-i", "add", "account", ghost, f"parent={slurm_sandbox}")
    assert reporter.run(now=datetime.now(UTC)).recovered == [lost["uuid"]]
    assert waldur.get_resource(lost["uuid"])["state"] == "OK"
