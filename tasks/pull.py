"""Pull tasks: poll the offering's orders and apply them to SLURM in batches; keep teams in sync.

`poll_orders` (any queue) lists the active orders and enqueues their UUIDS in batches of
SLURM_SYNC_BATCH_SIZE to `process_orders` on the `headnode` queue, where one batch costs one
SLURM read and a few commits. A message carries no authority: `process_orders` reads the
orders back from Waldur (one listing of the offering's active orders) and acts only on what
Waldur shows, so a forged or stale message writes nothing. `process_order` re-does one order
by uuid (for `celery call`). `sync_memberships` makes each allocation's associations follow its
project's team, which changes with no order.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping

from dataclasses import asdict

from slurm_sync.homedirs import create_home_directories
from slurm_sync.membership import MembershipSync
from slurm_sync.pull import OrderProcessor
from slurm_sync.settings import env_int
from slurm_sync.slurm.executor import DockerExecutor, SlurmCommandError
from slurm_sync.waldur_api import WaldurHTTPError, WaldurUnavailable

from .app import app, runtime
from .guards import ORDER_LOCK_TTL, OrderGuard, SlurmBusy, exclusive

log = logging.getLogger(__name__)
BATCH_SIZE = env_int("SLURM_SYNC_BATCH_SIZE")
HELD_RECHECK = max(1, ORDER_LOCK_TTL // 3)
# A SLURM read that fails (slurmdbd down) or Waldur unreachable: retry the batch with backoff.
# Writes that SLURM refuses are handled per order inside the processor and never get here.
RETRY = dict(autoretry_for=(WaldurUnavailable, SlurmCommandError, SlurmBusy), retry_backoff=2, retry_backoff_max=300, retry_jitter=True,
             max_retries=10)


def _home_directories():
    rt = runtime()
    if not rt.settings.enable_user_homedir_account_creation:
        return None
    local = not isinstance(rt.executor, DockerExecutor)
    return lambda users: create_home_directories(rt.executor, users, local=local)


def _bill_final_usage(leaving) -> None:
    """Terminate: the allocations' usage up to now is posted before their accounts are removed."""
    from .push import bill_final_usage  # the push side's reporter; imported late (tasks.push imports this app)

    bill_final_usage(leaving)


def _processor() -> OrderProcessor:
    rt = runtime()
    return OrderProcessor(rt.waldur, rt.sacctmgr, rt.components, rt.policy, on_new_users=_home_directories(),
                          before_remove=_bill_final_usage)


def _uuids(orders: List[Any]) -> List[str]:
    """Order uuids from a message; a message queued by an earlier version carries whole order dicts,
    of which only the uuid is taken (Waldur says what the order is)."""
    return [str(o.get("uuid") if isinstance(o, Mapping) else o) for o in orders]


@app.task(bind=True, **RETRY)
def poll_orders(self) -> int:
    """Enqueue the offering's pending-provider and executing orders; returns how many were enqueued."""
    rt = runtime()
    guard = OrderGuard(rt.redis)
    with exclusive(rt.redis, "poll-orders", ttl=rt.settings.poll_interval * 5) as mine:
        if not mine:
            log.info("poll_orders: another poll is running; skipped")
            return 0
        orders = [o for o in _call(rt.waldur.active_orders) if not guard.is_final(o["uuid"])]
        fresh = [o["uuid"] for o in orders if guard.mark_queued(o["uuid"])]
        for start in range(0, len(fresh), BATCH_SIZE):
            process_orders.delay(fresh[start:start + BATCH_SIZE])
        log.info("poll_orders: %d active orders, %d enqueued", len(orders), len(fresh))
        return len(fresh)


@app.task(bind=True, **RETRY)
def process_orders(self, orders: List[Any]) -> Dict[str, List[str]]:
    """Apply a batch of orders named by uuid; each order is locked, skipped when final, and looked at again
    later when another worker holds it."""
    rt = runtime()
    guard = OrderGuard(rt.redis)
    mine: List[str] = []
    try:
        held = []
        for uuid in _uuids(orders):
            if not guard.is_final(uuid):
                (mine if guard.lock(uuid) else held).append(uuid)
        if held:
            # Another worker holds them: it finishes them, or it died and its locks lapse within the TTL.
            # Look again then rather than drop them (a poll would not re-enqueue them while they are queued).
            log.info("process_orders: %d orders locked by another worker; looking again in %d s", len(held),
                     HELD_RECHECK)
            process_orders.apply_async((held,), countdown=HELD_RECHECK)
        if not mine:
            return {}
        with guard.kept_alive(), \
                exclusive(rt.redis, "slurm-writes", ttl=ORDER_LOCK_TTL, wait=60, keep_alive=True) as writer:
            if not writer:  # another batch has been writing for a minute: retry later (order locks are released)
                raise SlurmBusy("another batch is writing to SLURM")
            processor = _processor()
            result = _call(lambda: processor.process(processor.load(mine)))
        for outcome in result.outcomes:
            if outcome.result in ("done", "erred"):
                guard.mark_final(outcome.order_uuid, outcome.result)
        log.info("process_orders: %d orders in %.2f s, %d commits: %s", len(mine), result.seconds, result.commits,
                 {r: len(result.by_result(r)) for r in ("done", "erred", "skipped")})
        return {r: result.by_result(r) for r in ("done", "erred", "skipped")}
    finally:
        for uuid in mine:  # whatever is not final may be enqueued again by the next poll
            if not guard.is_final(uuid):
                guard.unqueue(uuid)
        guard.release_all()


@app.task(bind=True, **RETRY)
def process_order(self, order_uuid: str) -> Dict[str, List[str]]:
    """Re-do one order now, whatever the markers say (`celery call tasks.pull.process_order --args='["<uuid>"]'`)."""
    rt = runtime()
    order = _call(rt.waldur.get_order, order_uuid)  # an unknown uuid fails here, loudly (a 404)
    if order.get("offering_uuid") and order["offering_uuid"] != rt.waldur.offering_uuid:
        raise ValueError(f"order {order_uuid} belongs to offering {order['offering_uuid']}, not to "
                         f"{rt.waldur.offering_uuid}")
    rt.redis.delete(f"slurm-sync:order:{order_uuid}:final")
    return process_orders.run([order_uuid])


@app.task(bind=True, **RETRY)
def sync_memberships(self) -> Dict[str, Any]:
    """Each allocation's associations follow its project's team and its members' offering-user logins."""
    rt = runtime()
    with exclusive(rt.redis, "sync-memberships", ttl=rt.settings.poll_interval * 5) as mine:
        if not mine:
            log.info("sync_memberships: another run is going on; skipped")
            return {}
        with exclusive(rt.redis, "slurm-writes", ttl=ORDER_LOCK_TTL, wait=60, keep_alive=True) as writer:
            if not writer:
                raise SlurmBusy("another batch is writing to SLURM")
            result = _call(MembershipSync(rt.waldur, rt.sacctmgr, rt.policy, on_new_users=_home_directories()).run)
        return asdict(result)


def _call(function, *args):
    """Turn Waldur's transient answers into retries (the task's autoretry takes WaldurUnavailable)."""
    try:
        return function(*args)
    except WaldurHTTPError as error:
        if error.transient:
            raise WaldurUnavailable(str(error)) from error
        raise
