"""Builds every client from :class:`~slurm_sync.settings.Settings`: the one place settings become objects.

The worker (tasks/app.py), `slurm-sync plan`, `load-components` and `diagnostics` all take their Waldur
API, SLURM runner, sacctmgr client and Redis from here, so a command line sees SLURM and Waldur exactly
as the worker does. Settings are read from the environment only by :mod:`slurm_sync.settings`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import redis

from slurm_sync.domain.components import Components, load_components
from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.domain.usage_ledger import ledger_key
from slurm_sync.observability import metrics
from slurm_sync.redis_keys import RedisKeys
from slurm_sync.redis_stores import RedisGenerationCache, RedisReportedStore, RedisUsageLedger
from slurm_sync.settings import Settings, load_settings
from slurm_sync.slurm.runner import NativeExecutor, make_executor
from slurm_sync.slurm.sacct import PopenLines
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.slurm.users import HeadNodeUsers
from slurm_sync.sync.push import UsageReporter
from slurm_sync.waldur.api import WaldurAPI
from slurm_sync.waldur.generation import GenerationCache


def naming_policy(settings: Settings, executor: Optional[NativeExecutor] = None) -> NamingPolicy:
    """The system-user check looks logins up where SLURM runs: this host's user database in native mode, the
    SLURM container's (``getent`` through ``docker exec``) in docker mode."""
    docker = settings.slurm_deployment_type == "docker"
    uid_of = HeadNodeUsers(executor).uid_of if docker and executor is not None else None
    min_uid = settings.min_uid if settings.min_uid and (not docker or uid_of) else None
    return NamingPolicy(default_account=settings.slurm_default_account,
                        customer_prefix=settings.slurm_customer_prefix, project_prefix=settings.slurm_project_prefix,
                        allocation_prefix=settings.slurm_allocation_prefix,
                        max_len=settings.slurm_allocation_name_max_len, min_uid=min_uid, uid_of=uid_of)


def waldur_api(settings: Settings, generation_cache: Optional[GenerationCache] = None,
               timeout: float = 30.0) -> WaldurAPI:
    api = WaldurAPI(settings.waldur_api_url, settings.waldur_api_token, settings.waldur_offering_uuid,
                    verify_ssl=settings.requests_verify_ssl, timeout=timeout, compat=settings.waldur_api_compat,
                    generation_cache=generation_cache, concurrency=settings.waldur_concurrency)
    api.client.session.hooks["response"].append(metrics.waldur_response_hook)  # Waldur request metrics
    return api


def slurm_runner(settings: Settings) -> NativeExecutor:
    """Native, or ``docker exec`` into SLURM_CONTAINER_NAME; every command with SLURM_COMMAND_TIMEOUT."""
    return make_executor(settings.slurm_deployment_type, settings.slurm_container_name,
                         settings.slurm_command_timeout)


def sacctmgr(settings: Settings, runner: NativeExecutor) -> SacctmgrClient:
    return SacctmgrClient(runner, timeout=settings.slurm_command_timeout)


def redis_keys(settings: Settings) -> RedisKeys:
    return RedisKeys(settings.waldur_offering_uuid)


@dataclass
class Runtime:
    """One process's settings and clients."""

    settings: Settings
    components: Components
    waldur: WaldurAPI
    executor: NativeExecutor
    sacctmgr: SacctmgrClient
    redis: "redis.Redis"
    keys: RedisKeys

    @functools.cached_property
    def policy(self) -> NamingPolicy:
        return naming_policy(self.settings, self.executor)

    def reported_store(self) -> RedisReportedStore:
        return RedisReportedStore(self.redis, self.keys)

    def usage_ledger(self) -> RedisUsageLedger:
        return RedisUsageLedger(self.redis, self.keys, ledger_key(self.settings.waldur_api_token))

    def usage_reporter(self) -> UsageReporter:
        s = self.settings
        return UsageReporter(self.waldur, self.sacctmgr, self.components, self.reported_store(),
                             tz=s.usage_timezone, closing_day=s.usage_closing_day, tres_source=s.slurm_usage_tres,
                             lines=PopenLines(timeout=s.slurm_command_timeout * 5, executor=self.executor),
                             ledger=self.usage_ledger(),
                             recount_every=timedelta(hours=s.usage_recount_hours),
                             margin=timedelta(seconds=s.usage_settle_seconds))


def observe_adapters() -> None:
    """The metrics count what the adapters report through their hooks: every SLURM command (the runner's
    observers), every Waldur retry and unreachable request (the HTTP layer's). Idempotent."""
    from slurm_sync.slurm import runner
    from slurm_sync.waldur import http
    for observers, observer in ((runner.command_observers, metrics.observe_command),
                                (http.retry_observers, metrics.observe_waldur_retry),
                                (http.unreachable_observers, metrics.observe_waldur_unreachable)):
        if observer not in observers:
            observers.append(observer)


def build_runtime(settings: Optional[Settings] = None) -> Runtime:
    """Settings (from the environment unless given) -> every client; raises SettingsError or
    ComponentsConfigError. The metrics subscribe to the adapters' hooks here."""
    settings = settings or load_settings()
    components = load_components(settings.slurm_tres_config_path)
    client = redis.Redis.from_url(settings.redis_url)
    keys = redis_keys(settings)
    runner = slurm_runner(settings)
    observe_adapters()
    return Runtime(settings=settings, components=components,
                   waldur=waldur_api(settings, RedisGenerationCache(client, keys)), executor=runner,
                   sacctmgr=sacctmgr(settings, runner), redis=client, keys=keys)
