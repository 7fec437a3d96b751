"""What each compose test stack must do, whatever reaches its SLURM: an order becomes an account, and
`celery call tasks.push.report_usage` posts the account's usage."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, List

from testkit.job_rows import JobRow, JobTable
from tests.plugins.celery_worker import wait_until
from tests.plugins.slurm_bed import ensure_unix_user
from tests.pull_scenario import Scenario

from tests.compose.stack import Stack


def order_becomes_account(stack: Stack, emu, scenario: Scenario, associations: Callable[[], List[list]],
                          prefix: str) -> None:
    """A Create order for customer acme / project physics / allocation dock, with alice and bob in its team."""
    order = scenario.create("acme", "physics", "dock", limits={"cpu": 2, "mem": 4, "gpu": 1}, team=("alice", "bob"))
    wait_until(lambda: emu.get_order(order["uuid"])["state"] in ("done", "erred"), timeout=120,
               what="the Create order to finish")
    assert emu.get_order(order["uuid"])["state"] == "done", stack.logs("worker-headnode")
    rows = associations()
    accounts = {(account, parent) for account, user, parent, _ in rows if not user}
    users = {(account, user) for account, user, _, _ in rows if user}
    root, customer, project, allocation = (f"{prefix}root", f"{prefix}c_acme", f"{prefix}p_physics",
                                           f"{prefix}a_dock")
    assert {(root, "root"), (customer, root), (project, customer), (allocation, project)} <= accounts, rows
    assert {(allocation, "alice"), (allocation, "bob")} <= users, rows
    limits = {account: tres for account, user, _, tres in rows if not user}
    assert "cpu=" in limits[allocation], limits
    assert emu.get_resource(order["marketplace_resource_uuid"])["backend_id"] == allocation


def cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def usage_is_posted(stack: Stack, emu, table: JobTable, account: str, slurm: Callable[..., str]) -> None:
    """One job row of ``account`` after its resource was created; the resync in docs/deploying.md posts its usage."""
    resource = next(r for r in emu.resources() if r.get("backend_id") == account)
    # usage before the resource was created belongs to an earlier allocation: the job runs after it
    created = datetime.fromisoformat(resource["created"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = max(created.replace(microsecond=0) + timedelta(seconds=1), now - timedelta(seconds=60))
    seconds = Decimal((now - start).total_seconds())
    ensure_unix_user("alice")
    table.insert([JobRow(table.next_job_id(), account, "alice", start, now, {"cpu": 6000, "mem": 614400, "node": 1})])
    posts = emu.count("POST", "component-usages/set_usage")
    assert stack.celery_call("tasks.push.report_usage")  # prints the task's id
    period = f"{now.year}-{now.month:02d}-01"
    try:
        wait_until(lambda: {u["type"] for u in emu.component_usages(resource["uuid"], period)
                            if float(u["usage"])} >= {"cpu", "mem"},
                   timeout=120, what=f"the usage of {account} to be posted")
    except AssertionError as error:
        jobs = slurm("sacct", "-a", "-X", "-S", start.strftime("%Y-%m-%d"), "-o", "jobid,account,start,end,alloctres")
        raise AssertionError(f"{error}: {emu.component_usages(resource['uuid'])}\n{jobs}\n"
                             f"{stack.logs('worker-headnode')}") from None
    assert emu.count("POST", "component-usages/set_usage") > posts
    reported = {u["type"]: float(u["usage"]) for u in emu.component_usages(resource["uuid"], period)}
    # config-components.yaml: 1 k-Hour = 60000 CPU-minutes, 1 GB-hour = 61440 MB-minutes; 2 places
    assert reported["cpu"] == cents(6000 * seconds / 60 / 60000)
    assert reported["mem"] == cents(614400 * seconds / 60 / 61440)
