"""Prometheus metrics of slurm-sync and how a worker serves them.

A worker started with ``SLURM_SYNC_METRICS_PORT=<port>`` serves ``/metrics`` on that port of
``SLURM_SYNC_METRICS_ADDR`` (default 127.0.0.1: this host only) from its main process. Celery's
prefork pool runs tasks in child processes, and a child may be replaced at any time, so the worker
uses prometheus-client's *multiprocess mode*: each process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and the main process adds them up at every scrape. The directory is a
private one made at start-up and removed at shutdown unless PROMETHEUS_MULTIPROC_DIR is set (then
the operator owns it and must empty it before the worker starts, as prometheus-client requires).
Any ``-c`` concurrency, ``solo`` or ``threads`` pool works the same.

Metrics are created on first use, never at import: multiprocess mode has to be chosen before
the first sample is written. Processes that are not a worker (the CLI, tests) keep them in
memory.

| metric | type | labels |
|---|---|---|
| ``slurm_sync_task_runs_total`` | counter | task, state (success, failure, retry, ...) |
| ``slurm_sync_task_failures_total`` | counter | task, exception |
| ``slurm_sync_task_retries_total`` | counter | task, exception |
| ``slurm_sync_task_seconds`` | histogram | task |
| ``slurm_sync_last_success_timestamp_seconds`` | gauge | task |
| ``slurm_sync_orders_total`` | counter | result (done, erred, skipped, deferred: a transient Waldur error, taken up again) |
| ``slurm_sync_usage_posts_total`` | counter | kind (component, user) |
| ``slurm_sync_usage_problems_total`` | counter | kind (refused, anomaly, unreportable, foreign, ledger) — billing to look at: alert on it |
| ``slurm_sync_skipped_users_total`` | counter | — team members left without an association (an invalid or system login) |
| ``slurm_sync_membership_changes_total`` | counter | change (added, removed) — associations changed by membership sync |
| ``slurm_sync_slurm_commands_total`` | counter | command, result (ok, unchanged, error, timeout, cannot-run) |
| ``slurm_sync_slurm_command_seconds`` | histogram | command |
| ``slurm_sync_sacctmgr_commits_total`` | counter | — sacctmgr writes that changed something |
| ``slurm_sync_sacctmgr_commit_seconds_total`` | counter | — seconds those writes took |
| ``slurm_sync_sacctmgr_unchanged_total`` | counter | — sacctmgr writes that answered "Nothing ..." |
| ``slurm_sync_waldur_requests_total`` | counter | method, endpoint, status |
| ``slurm_sync_waldur_request_errors_total`` | counter | method, endpoint, status (>= 400, or unreachable) |
| ``slurm_sync_waldur_request_seconds`` | histogram | method |
| ``slurm_sync_waldur_retries_total`` | counter | method, endpoint, status (the answer retried, or unreachable) — transient answers retried close to the call |
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PORT_ENV = "SLURM_SYNC_METRICS_PORT"
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_UUID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|\d+)$")


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
        disable_created_metrics()  # the *_created samples only double the output
        self.registry = CollectorRegistry()
        r = self.registry
        self.task_runs = Counter("slurm_sync_task_runs", "Task runs by end state", ["task", "state"], registry=r)
        self.task_failures = Counter("slurm_sync_task_failures", "Tasks that failed (after their retries)",
                                     ["task", "exception"], registry=r)
        self.task_retries = Counter("slurm_sync_task_retries", "Task retries by the exception that caused them",
                                    ["task", "exception"], registry=r)
        self.task_seconds = Histogram("slurm_sync_task_seconds", "Seconds a task run took", ["task"],
                                      buckets=TASK_BUCKETS, registry=r)
        self.last_success = Gauge("slurm_sync_last_success_timestamp_seconds",
                                  "Unix time of the task's last successful run", ["task"],
                                  multiprocess_mode="max", registry=r)
        self.orders = Counter("slurm_sync_orders", "Orders processed, by outcome", ["result"], registry=r)
        self.usage_posts = Counter("slurm_sync_usage_posts", "Usage POSTs to Waldur (component: set_usage; "
                                   "user: set_user_usages)", ["kind"], registry=r)
        self.usage_problems = Counter("slurm_sync_usage_problems", "Usage reports Waldur refused, usage that went "
                                      "down in a closed month, late usage a 7.0-line Waldur cannot take",
                                      ["kind"], registry=r)
        self.skipped_users = Counter("slurm_sync_skipped_users", "Team members left without a SLURM association "
                                     "(an invalid or system login)", registry=r)
        self.membership_changes = Counter("slurm_sync_membership_changes", "User associations membership sync "
                                          "added or removed", ["change"], registry=r)
        self.commands = Counter("slurm_sync_slurm_commands", "SLURM commands run (sacctmgr, squeue, scancel, ...)",
                                ["command", "result"], registry=r)
        self.command_seconds = Histogram("slurm_sync_slurm_command_seconds", "Seconds a SLURM command took",
                                         ["command"], buckets=COMMAND_BUCKETS, registry=r)
        self.commits = Counter("slurm_sync_sacctmgr_commits", "sacctmgr writes that changed something", registry=r)
        self.commit_seconds = Counter("slurm_sync_sacctmgr_commit_seconds", "Seconds spent in sacctmgr writes "
                                      "that changed something", registry=r)
        self.unchanged = Counter("slurm_sync_sacctmgr_unchanged", "sacctmgr writes that changed nothing",
                                 registry=r)
        self.waldur_requests = Counter("slurm_sync_waldur_requests", "HTTP requests to Waldur that got an answer",
                                       ["method", "endpoint", "status"], registry=r)
        self.waldur_errors = Counter("slurm_sync_waldur_request_errors", "Waldur answers with status >= 400",
                                     ["method", "endpoint", "status"], registry=r)
        self.waldur_retries = Counter("slurm_sync_waldur_retries", "Waldur requests retried close to the call "
                                      "(5xx, 429, no answer)", ["method", "endpoint", "status"], registry=r)
        self.waldur_seconds = Histogram("slurm_sync_waldur_request_seconds", "Seconds a Waldur request took",
                                        ["method"], buckets=HTTP_BUCKETS, registry=r)


_lock = threading.Lock()
_metrics: Optional[Metrics] = None


def metrics() -> Metrics:
    """The metrics of this process, created on first use."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


def multiprocess() -> bool:
    from slurm_sync.settings import environment
    return bool(environment().get(MULTIPROC_ENV))


def reset() -> None:
    """Forget this process's metrics: the next use makes them anew (after a switch to multiprocess mode)."""
    global _metrics
    with _lock:
        _metrics = None


# ---- recording ----------------------------------------------------------------------------------

def _safe(function):
    """Metrics must never break the work they measure."""
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.debug("metrics: %s failed", function.__name__, exc_info=True)
    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@_safe
def observe_command(argv: Sequence[str], result: str, seconds: float, write: bool = False) -> None:
    """One SLURM command; ``argv`` unwrapped (no ``docker exec``), ``result`` ok/unchanged/error/...,
    ``write``: a sacctmgr write (a commit when ``ok``)."""
    m = metrics()
    command = os.path.basename(str(argv[0])) if argv else "?"
    m.commands.labels(command, result).inc()
    m.command_seconds.labels(command).observe(seconds)
    if write:
        if result == "ok":
            m.commits.inc()
            m.commit_seconds.inc(seconds)
        elif result == "unchanged":
            m.unchanged.inc()


@_safe
def observe_task(task: str, state: str, seconds: Optional[float], retval: Any = None) -> None:
    m = metrics()
    m.task_runs.labels(task, state.lower()).inc()
    if seconds is not None:
        m.task_seconds.labels(task).observe(seconds)
    if state == "SUCCESS" and isinstance(retval, Mapping):
        observe_outcome(task, retval)


def observe_outcome(task: str, retval: Mapping[str, Any]) -> None:
    """Orders and usage posts from a task's return value.

    ``tasks.pull.process_orders``/``process_order`` return ``{"done": [uuid...], "erred": [...],
    "skipped": [...]}`` (``{}`` when nothing was theirs); the push tasks return ``asdict(PushResult)``
    with ``usage_posts``, ``user_usage_posts`` and the lists ``refused``, ``anomalies``, ``unreportable``.
    """
    m = metrics()
    if task.startswith("tasks.pull.process_order"):
        for result in ("done", "erred", "skipped", "deferred"):
            count = len(retval.get(result) or ())
            if count:
                m.orders.labels(result).inc(count)
    if task.startswith("tasks.push."):
        for kind, field in (("component", "usage_posts"), ("user", "user_usage_posts")):
            count = retval.get(field) or 0
            if isinstance(count, int) and count > 0:
                m.usage_posts.labels(kind).inc(count)
        for kind, field in (("refused", "refused"), ("anomaly", "anomalies"), ("unreportable", "unreportable"),
                            ("foreign", "foreign"), ("ledger", "ledger")):
            count = len(retval.get(field) or ())
            if count:
                m.usage_problems.labels(kind).inc(count)


@_safe
def observe_skipped_user() -> None:
    metrics().skipped_users.inc()


@_safe
def observe_membership_changes(added: int, removed: int) -> None:
    m = metrics()
    if added:
        m.membership_changes.labels("added").inc(added)
    if removed:
        m.membership_changes.labels("removed").inc(removed)


@_safe
def observe_failure(task: str, exception: BaseException) -> None:
    metrics().task_failures.labels(task, type(exception).__name__).inc()


@_safe
def observe_retry(task: str, reason: Any) -> None:
    name = type(reason).__name__ if isinstance(reason, BaseException) else "unknown"
    metrics().task_retries.labels(task, name).inc()


@_safe
def observe_success_time(task: str, when: float) -> None:
    metrics().last_success.labels(task).set(when)


def endpoint(path: str) -> str:
    """A URL path as a label: ids become ``{id}``, the query goes.

    ``/api/marketplace-orders/<uuid>/approve_by_provider/?x=1`` -> ``/api/marketplace-orders/{id}/approve_by_provider/``
    """
    path = path.split("?", 1)[0]
    return "/".join("{id}" if _UUID_SEGMENT.match(part) else part for part in path.split("/"))


def waldur_response_hook(response, *args, **kwargs):
    """A ``requests`` response hook: ``session.hooks["response"].append(waldur_response_hook)``."""
    _observe_response(response)
    return None


@_safe
def _observe_response(response) -> None:
    from urllib.parse import urlsplit
    m = metrics()
    method = (getattr(response.request, "method", None) or "?").upper()
    where = endpoint(urlsplit(response.url or "").path)
    status = str(response.status_code)
    m.waldur_requests.labels(method, where, status).inc()
    if response.status_code >= 400:
        m.waldur_errors.labels(method, where, status).inc()
    if response.elapsed is not None:
        m.waldur_seconds.labels(method).observe(response.elapsed.total_seconds())


@_safe
def observe_waldur_retry(method: str, url: str, status: str) -> None:
    """A Waldur request retried close to the call (``waldur_api.transient_retry``); ``url`` is the path urllib3
    gives, or a whole URL."""
    from urllib.parse import urlsplit
    metrics().waldur_retries.labels((method or "?").upper(), endpoint(urlsplit(url or "").path), status).inc()


@_safe
def observe_waldur_unreachable(method: str, url: str) -> None:
    """A Waldur request that got no answer (connection refused, timeout, TLS): no response hook runs for it.

    To be called where the request's exception is caught (``waldur_api._SessionClient``).
    """
    from urllib.parse import urlsplit
    m = metrics()
    labels = ((method or "?").upper(), endpoint(urlsplit(url or "").path), "unreachable")
    m.waldur_requests.labels(*labels).inc()
    m.waldur_errors.labels(*labels).inc()


# ---- serving --------------------------------------------------------------------------------------

def exposition_registry():
    """The registry to expose: every process's files in multiprocess mode, else this process's metrics."""
    if multiprocess():
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return metrics().registry


def render() -> bytes:
    from prometheus_client import generate_latest
    return generate_latest(exposition_registry())
