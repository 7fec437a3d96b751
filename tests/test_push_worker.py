"""Push through a real Celery worker: a cycle, and the `celery call` resyncs."""
from datetime import datetime, timedelta, timezone

import pytest

from tests.plugins.celery_worker import wait_until
from tests.plugins.slurm_bed import mark_ours

from tests.test_sacct import bed_accounts, job_table  # noqa: F401  (fixtures)
from tests.test_push import OFFERING_COMPONENTS, PUSH_COMPONENTS


@pytest.mark.bed
@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
def test_report_usage_and_resyncs_through_the_worker(waldur, bed_accounts, job_table, start_worker, send, tmp_path):
    from testkit.job_rows import JobRow
    accounts, users = bed_accounts
    components = tmp_path / "push-components.yaml"
    components.write_text(PUSH_COMPONENTS)
    offering = waldur.add_offering("SLURM", components=OFFERING_COMPONENTS)
    project = waldur.add_project(waldur.add_customer("Acme")["uuid"], "Physics")
    resources = [waldur.add_resource(offering["uuid"], project["uuid"], a, backend_id=a) for a in accounts]
    mark_ours(dict(zip(accounts, resources)))
    now = datetime.now(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    job_table.insert([JobRow(job_table.next_job_id(), accounts[0], users[0], start, start + timedelta(minutes=6),
                             {"cpu": 1, "mem": 10, "node": 1})])
    start_worker(offering["uuid"], WALDUR_SYNC_DIRECTION="push", SLURM_TRES_CONFIG_PATH=str(components))

    send("tasks.push.report_usage")
    wait_until(lambda: waldur.count("POST", "component-usages/set_usage") == 2, what="first cycle's posts")
    period = f"{now.year}-{now.month:02d}-01"
    reported = {u["type"]: float(u["usage"]) for u in waldur.component_usages(resources[0]["uuid"], period)}
    assert reported == {"cpu": 6.0, "mem": 60.0, "gpu": 0.0}

    idle = send("tasks.push.report_usage").get(timeout=60)  # unchanged: the worker posts nothing
    assert idle["usage_posts"] == 0 and waldur.count("POST", "component-usages/set_usage") == 2
    # the job ended long before: kept in the month's ledger in Redis, the idle cycle's one sacct read returns nothing
    assert idle["recounted"] == [] and idle["sacct_calls"] == 1 and idle["jobs"] == 0
    send("tasks.push.report_resource", resources[0]["uuid"]).get(timeout=60)  # forced: re-sent for that one
    assert waldur.count("POST", "component-usages/set_usage") == 3
    forced = send("tasks.push.report_month", now.year, now.month).get(timeout=60)  # the month for all resources
    assert waldur.count("POST", "component-usages/set_usage") == 5
    assert forced["recounted"] == [[now.year, now.month]] and forced["jobs"] == 1  # read whole again
