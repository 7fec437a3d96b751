"""The Celery app, its beat schedule, and the per-process runtime (settings, clients: slurm_sync.wiring)."""
from __future__ import annotations

import functools
import logging
import sys

from celery import Celery, signals
from celery.schedules import crontab

from slurm_sync.domain.components import ComponentsConfigError
from slurm_sync.settings import Settings, SettingsError, load_settings
from slurm_sync.wiring import Runtime, build_runtime

log = logging.getLogger(__name__)

app = Celery("slurm_sync", include=["tasks.pull", "tasks.push"])
app.config_from_object("celeryconfig")


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Built once per process from the environment (:func:`slurm_sync.wiring.build_runtime`); raises
    SettingsError/ComponentsConfigError."""
    return build_runtime()


def beat_schedule(settings: Settings) -> dict:
    """pull: poll orders; push: report usage and state. WALDUR_SYNC_DIRECTION=both runs both in one deployment.

    Each entry expires after its own interval: behind a long batch on the headnode queue, the periodic tasks
    beat keeps sending would otherwise pile up and then run back to back (measured: orders delayed 4.7-8.3 s at
    500 allocations); a worker drops a copy that waited longer than the next one's interval."""
    schedule = {}
    if settings.pulls:
        schedule["poll-orders"] = {"task": "tasks.pull.poll_orders", "schedule": settings.poll_interval}
        # teams change with no order: each poll interval, associations follow them
        schedule["sync-memberships"] = {"task": "tasks.pull.sync_memberships", "schedule": settings.poll_interval}
        # a killed worker's orders: their leases lapse within the order lock TTL and are sent again
        schedule["recover-orders"] = {"task": "tasks.pull.recover_orders",
                                      "schedule": max(5.0, settings.order_lock_ttl / 2)}
    if settings.pushes:
        schedule["report-usage"] = {"task": "tasks.push.report_usage", "schedule": settings.usage_interval}
        # a 7.0-line Waldur files usage under its current month only: the month's last report must be in
        # before midnight UTC of its last day (the task runs only on that day)
        schedule["report-usage-month-end"] = {"task": "tasks.push.report_usage_month_end",
                                              "schedule": crontab(minute=50, hour=23, day_of_month="28-31"),
                                              "options": {"expires": 600}}
    for entry in schedule.values():
        if isinstance(entry["schedule"], (int, float)):
            entry["options"] = {"expires": float(entry["schedule"])}
    return schedule


def _check_start_up(**_kwargs) -> None:
    """Fail at start-up, with one line per bad setting, rather than at the first task."""
    try:
        rt = runtime()
    except (SettingsError, ComponentsConfigError) as error:
        print(f"slurm-sync cannot start: {error}", file=sys.stderr)
        sys.exit(2)
    app.conf.beat_schedule = beat_schedule(rt.settings)
    log.info("slurm-sync started: direction=%s offering=%s deployment=%s", rt.settings.waldur_sync_direction,
             rt.settings.waldur_offering_uuid, rt.settings.slurm_deployment_type)
    try:
        log.info("slurm-sync talks to %s", rt.waldur.generation)
    except Exception as error:  # Waldur unreachable now: learnt at the first task
        log.warning("Waldur API generation not known yet (%s); it is learnt at the first call", error)


try:  # beat reads the schedule when it starts; a bad setting is reported by _check_start_up
    app.conf.beat_schedule = beat_schedule(load_settings(require_waldur=False))
except SettingsError:
    pass

signals.worker_init.connect(_check_start_up, weak=False)
signals.beat_init.connect(_check_start_up, weak=False)

from tasks import signals as _observability  # noqa: E402 - Sentry, metrics, last-success marks, log format

_observability.connect(app, runtime)
