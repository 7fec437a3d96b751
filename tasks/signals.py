"""Celery signal handlers: Sentry, metrics, the last-success marks `slurm-sync health` reads, log format.

Connected by :func:`connect` (tasks/app.py):

- ``celeryd_init`` (worker main process, before anything runs) and ``beat_init``: Sentry when SENTRY_DSN
  is set; for the worker, with SLURM_SYNC_METRICS_PORT set, Prometheus multiprocess mode and the
  /metrics endpoint on SLURM_SYNC_METRICS_ADDR (served by the main process, fed by every pool child);
- ``task_prerun`` / ``task_postrun`` / ``task_failure`` / ``task_retry``: per-task runs, seconds,
  failures (by the exception's own type) and retries (by the exception that caused them); orders
  done/erred and usage posts from the return values; on success the
  task's ``slurm-sync:last-success:<task>`` mark in Redis and its last-success gauge;
- ``after_setup_logger`` / ``after_setup_task_logger``: the redacting filter on every handler and the
  JSON formatter when SLURM_SYNC_LOG_FORMAT=json;
- ``worker_process_shutdown`` / ``worker_shutdown``: multiprocess bookkeeping and clean-up.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Optional

from celery import signals

from slurm_sync.redis_stores import record_success
from slurm_sync.settings import env_int, env_setting
from slurm_sync.observability import logs
from slurm_sync.observability import metrics as m
from slurm_sync.observability import metrics_server

log = logging.getLogger(__name__)

_started: Dict[str, float] = {}
_wired: Dict[str, Any] = {}  # tasks.app's app and runtime, handed to connect()


def _fail_start(message: str) -> None:
    print(f"slurm-sync cannot start: {message}", file=sys.stderr)
    sys.exit(2)


# ---- start-up -------------------------------------------------------------------------------------

def start_sentry(**_kwargs) -> None:
    from slurm_sync.observability.sentry import init_sentry
    dsn = env_setting("SENTRY_DSN")
    try:
        init_sentry(dsn, token=env_setting("WALDUR_API_TOKEN"))
    except Exception as error:  # noqa: BLE001 - a malformed DSN (BadDsn) and the like
        _fail_start(f"SENTRY_DSN=****: {type(error).__name__}: {error} (expected a Sentry DSN such as "
                    "https://<key>@sentry.example.com/<project>)")


def start_worker_observability(**_kwargs) -> None:
    """celeryd_init: Sentry, and the metrics endpoint when SLURM_SYNC_METRICS_PORT is set."""
    start_sentry()
    port = env_int("SLURM_SYNC_METRICS_PORT")  # 0 (the default) or invalid: no endpoint
    if not port:
        return
    addr = env_setting("SLURM_SYNC_METRICS_ADDR")  # 127.0.0.1 (the default) or invalid: this host only
    metrics_server.prepare_multiprocess()
    try:
        metrics_server.start_server(port, addr)
    except OSError as error:
        _fail_start(f"SLURM_SYNC_METRICS_PORT={port} SLURM_SYNC_METRICS_ADDR={addr}: cannot serve /metrics: "
                    f"{error.strerror or error} (expected a free TCP port on an address of this host)")


def on_worker_init(sender=None, **_kwargs) -> None:
    """Before the pool forks: every process of this worker knows its node name (guards' lock records)."""
    from tasks.guards import set_node
    node = getattr(sender, "hostname", None)
    try:
        set_node(runtime().keys.node_holds(node) if node else None)
    except Exception:  # noqa: BLE001 - bad settings: the start-up check stops this worker with the reason
        set_node(None)


def on_worker_ready(sender=None, **_kwargs) -> None:
    if metrics_server.serving:
        log.info("%s", metrics_server.serving)
    _take_over(getattr(sender, "hostname", None))


def _take_over(node: Optional[str]) -> None:
    """A restart under the same node name: the dead process's orders are sent again now, not a lock TTL later."""
    if not node:
        return
    from tasks.guards import take_over_dead_incarnation
    try:
        orders = take_over_dead_incarnation(runtime().redis, runtime().keys, node)
    except Exception as error:  # noqa: BLE001 - never stop a worker's start: the leases lapse anyway
        log.warning("could not take over the locks of %s's previous process: %s", node, error)
        return
    if orders:
        log.warning("%s restarted: %d orders its previous process held are taken up again", node, len(orders))
        _wired["app"].send_task("tasks.pull.recover_orders")


def on_worker_shutdown(**_kwargs) -> None:
    metrics_server.cleanup()


def on_child_shutdown(pid: Optional[int] = None, **_kwargs) -> None:
    metrics_server.child_exited(pid or os.getpid())


# ---- tasks ----------------------------------------------------------------------------------------

def _name(task) -> str:
    return getattr(task, "name", None) or str(task)


def on_prerun(task_id: Optional[str] = None, task=None, **_kwargs) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


def on_postrun(task_id: Optional[str] = None, task=None, retval=None, state: Optional[str] = None,
               **_kwargs) -> None:
    started = _started.pop(task_id, None) if task_id else None
    seconds = time.monotonic() - started if started is not None else None
    name = _name(task)
    m.observe_task(name, state or "unknown", seconds, retval)
    if state == "FAILURE":  # retval is the task's own exception (task_failure gets a pickle-safe stand-in)
        m.observe_failure(name, retval if isinstance(retval, BaseException) else Exception())
    if state == "SUCCESS":
        now = time.time()
        m.observe_success_time(name, now)
        try:
            record_success(runtime().redis, runtime().keys, name, now)
        except Exception as error:  # noqa: BLE001 - a lost mark costs a health warning, not the task
            log.warning("could not store the last success of %s: %s", name, error)


def on_failure(sender=None, task_id: Optional[str] = None, exception: Optional[BaseException] = None,
               **_kwargs) -> None:
    """Only failures no task_postrun follows: the worker lost the child, a hard time limit (main process).

    A task that raised is counted by :func:`on_postrun` with its own exception type: the one this
    signal carries has been made pickle-safe (WaldurHTTPError arrives as WaldurClientException).
    """
    if task_id in _started or exception is None:
        return
    m.observe_failure(_name(sender), exception)


def on_retry(sender=None, reason=None, **_kwargs) -> None:
    m.observe_retry(_name(sender), getattr(reason, "exc", None) or reason)  # Retry.exc: what caused it


# ---- logging --------------------------------------------------------------------------------------

def on_logger_setup(logger=None, **_kwargs) -> None:
    if logger is not None:
        logs.apply_to_logger(logger, logs.log_format())


def runtime() -> Any:
    return _wired["runtime"]()


def connect(app: Any, runtime_of_process: Callable[[], Any]) -> None:
    """Connect every handler (idempotent: Celery keys receivers by their id). ``app`` and ``runtime_of_process``
    are tasks.app's: handed in, so this module imports neither tasks.app nor a task module."""
    _wired.update(app=app, runtime=runtime_of_process)
    signals.celeryd_init.connect(start_worker_observability, weak=False)
    signals.beat_init.connect(start_sentry, weak=False)
    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    signals.worker_process_shutdown.connect(on_child_shutdown, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    signals.task_retry.connect(on_retry, weak=False)
    signals.after_setup_logger.connect(on_logger_setup, weak=False)
    signals.after_setup_task_logger.connect(on_logger_setup, weak=False)
