"""Push tasks: report usage and account state to Waldur (all run sacct/sacctmgr: `headnode` queue).

    celery -A tasks call tasks.push.report_usage                            # a cycle now
    celery -A tasks call tasks.push.report_resource --args='["<resource uuid>"]'   # one resource, re-sent
    celery -A tasks call tasks.push.report_month --args='[2026, 10]'        # one month, re-sent for all
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from dataclasses import asdict
from typing import Dict, List, Optional

from slurm_sync.sync.push import PushResult, UsageReporter
from slurm_sync.slurm.runner import SlurmCommandError
from slurm_sync.slurm.sacct import SacctError
from slurm_sync.waldur.api import WaldurUnavailable, unavailable_when_transient

from tasks.app import app, runtime
from tasks.guards import exclusive

log = logging.getLogger(__name__)
RETRY = dict(autoretry_for=(WaldurUnavailable, SlurmCommandError, SacctError), retry_backoff=5,
             retry_backoff_max=600, retry_jitter=True, max_retries=6)


def _reporter() -> UsageReporter:
    return runtime().usage_reporter()


def _run(resource_uuids: Optional[List[str]] = None, months=None) -> Dict:
    rt = runtime()
    with exclusive(rt.redis, rt.keys.lock("report-usage"), ttl=rt.settings.usage_interval * 5) as mine:
        if not mine:
            log.info("report_usage: another cycle is running; skipped")
            return {}
        # a listing still failing after the retries close to the call: the task's retry, with backoff
        result: PushResult = unavailable_when_transient(
            lambda: _reporter().run(resource_uuids=resource_uuids, months=months))
        log.info("report_usage: months %s, %d sacct calls, %d jobs, %d usage posts, %d user-usage posts, "
                 "%d erred, %d recovered, %d anomalies, %d refused", result.months, result.sacct_calls, result.jobs,
                 result.usage_posts, result.user_usage_posts, len(result.erred), len(result.recovered),
                 len(result.anomalies), len(result.refused))
        return asdict(result)


@app.task(name="tasks.push.report_usage", bind=True, **RETRY)
def report_usage(self) -> Dict:
    """One push cycle: state of every resource, usage of the current (and closing) month."""
    return _run()


@app.task(name="tasks.push.report_usage_month_end", bind=True, **RETRY)
def report_usage_month_end(self) -> Dict:
    """Beat runs this at 23:50 UTC on days 28-31; on a month's last day it is the month's final report
    (a 7.0-line Waldur cannot take a closed month's usage later)."""
    now = datetime.now(timezone.utc)
    if (now + timedelta(days=1)).day != 1:
        return {}
    return _run()


@app.task(name="tasks.push.report_resource", bind=True, **RETRY)
def report_resource(self, resource_uuid: str) -> Dict:
    """Re-read one resource's state and re-send its usage now, whatever was sent before."""
    runtime().reported_store().forget(resource=resource_uuid)
    return _run(resource_uuids=[resource_uuid])


@app.task(name="tasks.push.report_month", bind=True, **RETRY)
def report_month(self, year: int, month: int) -> Dict:
    """Re-read one month whole from SLURM and re-send its usage for all resources (e.g. after fixing accounting
    data): the month's kept ledger and what was reported are both forgotten."""
    runtime().reported_store().forget(month=(int(year), int(month)))
    runtime().usage_ledger().forget(month=(int(year), int(month)))
    return _run(months=[(int(year), int(month))])
