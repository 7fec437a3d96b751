"""`slurm-sync health`: exit 0 when this deployment works, 1 when not, with one line saying why.

For a container HEALTHCHECK (give it a ``--start-period`` longer than the first cycle)::

    HEALTHCHECK --interval=60s --start-period=180s CMD slurm-sync health

Checks, in order, stopping at the first failure:

1. Redis (REDIS_URL) answers PING, and the broker (CELERY_BROKER_URL) accepts a connection;
2. the last successful cycle is recent: ``tasks.pull.poll_orders`` when WALDUR_SYNC_DIRECTION
   pulls, ``tasks.push.report_usage`` when it pushes. The Celery signal handler stores the time of
   every task's last success in Redis (``last-success:<task>``, Unix seconds; slurm_sync/redis_keys.py). The
   allowed age is ``--max-age`` seconds, by default 3 intervals (SLURM_SYNC_POLL_INTERVAL,
   SLURM_SYNC_USAGE_INTERVAL) and at least 5 minutes.

``--no-cycle`` checks only the connections (e.g. for a beat-only container), and so does a container
without WALDUR_OFFERING_UUID (Flower's): the marks are kept per offering.
"""
from __future__ import annotations

import argparse
import time
from typing import List, Optional, Tuple

from slurm_sync.redis_keys import RedisKeys
from slurm_sync.redis_stores import last_success
from slurm_sync.settings import Settings

POLL_TASK = "tasks.pull.poll_orders"
USAGE_TASK = "tasks.push.report_usage"
MIN_MAX_AGE = 300.0
CONNECT_TIMEOUT = 5.0


def cycle_tasks(settings: Settings) -> List[Tuple[str, float]]:
    """(task, its schedule interval) of each cycle beat runs for this direction."""
    tasks = []
    if settings.pulls:
        tasks.append((POLL_TASK, settings.poll_interval))
    if settings.pushes:
        tasks.append((USAGE_TASK, settings.usage_interval))
    return tasks


def default_max_age(interval: float) -> float:
    return max(3 * interval, MIN_MAX_AGE)


def redis_client(url: str):
    import redis
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)


def broker_problem(url: str) -> Optional[str]:
    """None when the broker accepts a connection, else why not."""
    from kombu import Connection
    try:
        with Connection(url, connect_timeout=CONNECT_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CONNECT_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        return f"{type(error).__name__}: {error}"
    return None


def redis_problem(url: str) -> Optional[str]:
    try:
        redis_client(url).ping()
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    return None


def safe_url(url: str) -> str:
    """A broker/Redis URL without its password (``redis://:****@redis:6379/0``)."""
    from slurm_sync.observability.masking import mask_url
    return mask_url(url)


def check(settings: Settings, max_age: Optional[float] = None, cycles: bool = True,
          now: Optional[float] = None) -> Tuple[bool, str]:
    """(healthy, one line)."""
    problem = redis_problem(settings.redis_url)
    if problem:
        return False, f"FAIL redis {safe_url(settings.redis_url)} unreachable: {problem}"
    if settings.celery_broker_url != settings.redis_url:
        problem = broker_problem(settings.celery_broker_url)
        if problem:
            return False, f"FAIL broker {safe_url(settings.celery_broker_url)} unreachable: {problem}"
    facts = ["redis and broker reachable"]
    if cycles and not settings.waldur_offering_uuid:
        # the marks are kept per offering: a container without one (Flower) can only vouch for the connections
        facts.append("no WALDUR_OFFERING_UUID here: cycles not checked")
    elif cycles:
        client = redis_client(settings.redis_url)
        keys = RedisKeys(settings.waldur_offering_uuid)
        now = time.time() if now is None else now
        for task, interval in cycle_tasks(settings):
            limit = default_max_age(interval) if max_age is None else max_age
            when = last_success(client, keys, task)
            if when is None:
                return False, (f"FAIL {task} has not succeeded yet (no {keys.last_success(task)} in Redis): "
                               "are beat and a worker running?")
            age = max(0.0, now - when)
            if age > limit:
                return False, (f"FAIL {task} last succeeded {age:.0f} s ago (limit {limit:.0f} s): "
                               "is beat running, and a worker serving its queue?")
            facts.append(f"{task} succeeded {age:.0f} s ago")
    return True, "OK " + "; ".join(facts)


def main(argv: Optional[List[str]] = None, settings: Optional[Settings] = None) -> int:
    parser = argparse.ArgumentParser(prog="slurm-sync health", description=__doc__.split("\n")[0])
    parser.add_argument("--max-age", type=float, help="seconds a cycle's last success may be old")
    parser.add_argument("--no-cycle", action="store_true", help="check only Redis and the broker")
    args = parser.parse_args(argv or [])
    if settings is None:
        from slurm_sync.settings import SettingsError, load_settings
        try:
            settings = load_settings(require_waldur=False)
        except SettingsError as error:
            print("FAIL settings: " + "; ".join(error.problems))
            return 1
    healthy, line = check(settings, max_age=args.max_age, cycles=not args.no_cycle)
    print(line)
    return 0 if healthy else 1
