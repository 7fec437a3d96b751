"""The Celery app, its beat schedule, and the per-process runtime (settings, clients)."""
from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass

import redis
from celery import Celery, signals
from celery.schedules import crontab

from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.domain.components import Components, ComponentsConfigError, load_components
from slurm_sync.settings import Settings, SettingsError, load_settings
from slurm_sync.slurm.runner import NativeExecutor, make_executor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI
from slurm_sync.waldur.generation import RedisGenerationCache
from slurm_sync.observability.metrics import waldur_response_hook

log = logging.getLogger(__name__)

app = Celery("slurm_sync", include=["tasks.pull", "tasks.push"])
app.config_from_object("celeryconfig")


@dataclass
class Runtime:
    settings: Settings
    components: Components
    waldur: WaldurAPI
    executor: NativeExecutor
    sacctmgr: SacctmgrClient
    redis: "redis.Redis"

    @property
    def policy(self) -> NamingPolicy:
        s = self.settings
        # the system-user check reads this host's user database: the cluster's only in native mode
        min_uid = s.min_uid if s.min_uid and s.slurm_deployment_type == "native" else None
        return NamingPolicy(default_account=s.slurm_default_account, customer_prefix=s.slurm_customer_prefix,
                            project_prefix=s.slurm_project_prefix, allocation_prefix=s.slurm_allocation_prefix,
                            max_len=s.slurm_allocation_name_max_len, min_uid=min_uid)


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Built once per process from the environment; raises SettingsError/ComponentsConfigError."""
    settings = load_settings()
    components = load_components(settings.slurm_tres_config_path)
    executor = make_executor(settings.slurm_deployment_type, settings.slurm_container_name,
                             settings.slurm_command_timeout)
    client = redis.Redis.from_url(settings.redis_url)
    rt = Runtime(
        settings=settings, components=components,
        waldur=WaldurAPI(settings.waldur_api_url, settings.waldur_api_token, settings.waldur_offering_uuid,
                         verify_ssl=settings.requests_verify_ssl, compat=settings.waldur_api_compat,
                         generation_cache=RedisGenerationCache(client)),
        executor=executor,
        sacctmgr=SacctmgrClient(executor, timeout=settings.slurm_command_timeout),
        redis=client,
    )
    rt.waldur.client.session.hooks["response"].append(waldur_response_hook)  # Waldur request metrics
    return rt


def beat_schedule(settings: Settings) -> dict:
    """pull: poll orders; push: report usage and state. WALDUR_SYNC_DIRECTION=both runs both in one deployment."""
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
                                              "schedule": crontab(minute=50, hour=23, day_of_month="28-31")}
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

_observability.connect()
