"""Pull tasks: poll the offering's orders and apply them to SLURM in batches; keep teams in sync.

`poll_orders` (any queue) lists the active orders and enqueues their UUIDS in one message (up to
MESSAGE_MAX) to `process_orders` on the `headnode` queue, where the whole message costs one SLURM
read and a few commits: the processor writes at most SLURM_SYNC_BATCH_SIZE orders per `load`. A message
carries no authority: `process_orders` reads the orders back from Waldur (one listing of the
offering's active orders) and acts only on what Waldur shows, so a forged or stale message writes
nothing. `process_order` re-does one order by uuid (for `celery call`). `sync_memberships` makes
each allocation's associations follow its project's team, which changes with no order.

One chain per order (guards.OrderLeases): a message is sent only by whoever claims the order's
lease (the poll, for an order no chain names) or takes a lapsed one over (`recover_orders`, for the
orders of a worker that died); a batch that must try again sends ONE message for what is left, with
a backoff, and keeps the lease. So a poll never enqueues work that is queued or running, and
retries never multiply.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Dict, List, Mapping, Sequence

from dataclasses import asdict

from slurm_sync.domain.approval import left_for_a_person
from slurm_sync.slurm.homedirs import create_home_directories
from slurm_sync.sync.membership import MembershipSync
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.slurm.runner import DockerExecutor, SlurmCommandError
from slurm_sync.waldur.api import WaldurHTTPError, WaldurUnavailable, transient, unavailable_when_transient

from tasks.app import app, runtime
from tasks.guards import ORDER_LOCK_TTL, QUEUED_TTL, OrderGuard, SlurmBusy, exclusive, slurm_writer

log = logging.getLogger(__name__)
# Orders per message: one task reads the SLURM tree once for all of them (a read per message grows with the
# tree), while the Waldur half of so many orders (approve, done: one request each) stays well under an hour.
MESSAGE_MAX = 5000
# A SLURM read that fails (slurmdbd down) or Waldur unreachable: retry with backoff.
# Writes that SLURM refuses are handled per order inside the processor and never get here.
RETRY = dict(autoretry_for=(WaldurUnavailable, SlurmCommandError, SlurmBusy), retry_backoff=2, retry_backoff_max=300, retry_jitter=True,
             max_retries=10)
# process_orders sends its own retry (one message for what is left of the batch, the lease kept)
BATCH_RETRIES = 10
BATCH_BACKOFF_MAX = 120.0


def _home_directories():
    rt = runtime()
    if not rt.settings.enable_user_homedir_account_creation:
        return None
    local = not isinstance(rt.executor, DockerExecutor)
    return lambda users: create_home_directories(rt.executor, users, local=local)


def _processor() -> OrderProcessor:
    rt = runtime()
    return OrderProcessor(rt.waldur, rt.sacctmgr, rt.components, rt.policy, on_new_users=_home_directories(),
                          before_remove=lambda leaving: rt.usage_reporter().bill_final(leaving),
                          write_size=rt.settings.batch_size, approve=rt.settings.approve)


def _uuids(orders: List[Any]) -> List[str]:
    """Order uuids from a message; a message queued by an earlier version carries whole order dicts,
    of which only the uuid is taken (Waldur says what the order is)."""
    return [str(o.get("uuid") if isinstance(o, Mapping) else o) for o in orders]


@app.task(name="tasks.pull.poll_orders", bind=True, **RETRY)
def poll_orders(self) -> int:
    """Enqueue the offering's pending-provider and executing orders; returns how many were enqueued."""
    rt = runtime()
    guard = OrderGuard(rt.redis, rt.keys)
    with exclusive(rt.redis, rt.keys.lock("poll-orders"), ttl=rt.settings.poll_interval * 5) as mine:
        if not mine:
            log.info("poll_orders: another poll is running; skipped")
            return 0
        active = unavailable_when_transient(rt.waldur.active_orders)
        # an order left for a person to approve (SLURM_SYNC_APPROVE) is not sent until it is approved
        orders = [o for o in active if not guard.is_final(o["uuid"])
                  and not left_for_a_person(o, rt.components, rt.settings.approve)]
        fresh = guard.leases.claim([o["uuid"] for o in orders], QUEUED_TTL)
        _send(fresh)
        log.info("poll_orders: %d active orders, %d enqueued", len(orders), len(fresh))
        return len(fresh)


@app.task(name="tasks.pull.recover_orders")
def recover_orders() -> int:
    """Send again the orders whose chain died (a worker killed while it held them: its lease lapsed)."""
    rt = runtime()
    guard = OrderGuard(rt.redis, rt.keys)
    lapsed = guard.leases.take_lapsed(QUEUED_TTL)
    final = {uuid for uuid in lapsed if guard.is_final(uuid)}
    guard.leases.release(sorted(final))
    again = [uuid for uuid in lapsed if uuid not in final]
    _send(again)
    if again:
        log.warning("recover_orders: %d orders whose worker stopped holding them are enqueued again", len(again))
    return len(again)


def _send(uuids: Sequence[str], attempt: int = 0, countdown: float = 0) -> None:
    for start in range(0, len(uuids), MESSAGE_MAX):
        process_orders.apply_async((list(uuids[start:start + MESSAGE_MAX]), attempt), countdown=countdown or None)


def _backoff(attempt: int) -> float:
    return min(BATCH_BACKOFF_MAX, 2.0 * 2 ** attempt) * random.uniform(0.5, 1.0)


@app.task(name="tasks.pull.process_orders", bind=True)
def process_orders(self, orders: List[Any], attempt: int = 0) -> Dict[str, List[str]]:
    """Apply a batch of orders named by uuid; each order is locked and skipped when final. An order another
    worker holds is that worker's (its chain); what this batch must try again goes in one message."""
    rt = runtime()
    guard = OrderGuard(rt.redis, rt.keys)
    mine: List[str] = []
    again: List[str] = []
    try:
        for uuid in _uuids(orders):
            if guard.is_final(uuid):
                guard.leases.release([uuid])
            elif guard.lock(uuid):
                mine.append(uuid)
        if not mine:
            return {}
        try:
            # busy for a minute: try again later; a lost write lock stops the batch before its next write
            with guard.kept_alive(), slurm_writer(rt.redis, rt.keys) as writing, rt.sacctmgr.guarded(writing.check):
                processor = _processor()
                result = processor.process(processor.load(mine))
        except (WaldurHTTPError, WaldurUnavailable, SlurmCommandError, SlurmBusy) as error:
            if isinstance(error, WaldurHTTPError) and not transient(error):
                raise
            log.warning("process_orders: batch of %d orders stopped (%s); trying again", len(mine), error)
            again = list(mine)
            return {"deferred": again}
        for outcome in result.outcomes:
            if outcome.result in ("done", "erred"):
                guard.mark_final(outcome.order_uuid, outcome.result)
        again = result.by_result("deferred")
        log.info("process_orders: %d orders in %.2f s, %d commits: %s", len(mine), result.seconds, result.commits,
                 {r: len(result.by_result(r)) for r in ("done", "erred", "skipped", "deferred")})
        return {r: result.by_result(r) for r in ("done", "erred", "skipped", "deferred")}
    finally:
        guard.release_all()
        _after_batch(guard, mine, again, attempt)


def _after_batch(guard: OrderGuard, mine: Sequence[str], again: Sequence[str], attempt: int) -> None:
    """This chain's next message, or its end: what must be tried again goes in one delayed message and
    keeps its lease until then; the rest of the batch's leases are released (a poll may take them up)."""
    if again and attempt < BATCH_RETRIES:
        countdown = _backoff(attempt)
        guard.leases.hold(list(again), countdown + ORDER_LOCK_TTL)
        _send(list(again), attempt + 1, countdown)
        log.info("process_orders: %d orders again in %.0f s (attempt %d)", len(again), countdown, attempt + 2)
    elif again:
        log.error("process_orders: %d orders still not finished after %d attempts; the next poll takes them up",
                  len(again), attempt + 1)
    retrying = set(again) if attempt < BATCH_RETRIES else set()
    guard.leases.release([uuid for uuid in mine if uuid not in retrying])


@app.task(name="tasks.pull.process_order", bind=True, **RETRY)
def process_order(self, order_uuid: str) -> Dict[str, List[str]]:
    """Re-do one order now, whatever the markers say (`celery call tasks.pull.process_order --args='["<uuid>"]'`)."""
    rt = runtime()
    # an unknown uuid fails here, loudly (a 404)
    order = unavailable_when_transient(rt.waldur.get_order, order_uuid)
    if order.get("offering_uuid") and order["offering_uuid"] != rt.waldur.offering_uuid:
        raise ValueError(f"order {order_uuid} belongs to offering {order['offering_uuid']}, not to "
                         f"{rt.waldur.offering_uuid}")
    rt.redis.delete(rt.keys.order_final(order_uuid))
    return process_orders.run([order_uuid])


@app.task(name="tasks.pull.sync_memberships", bind=True, **RETRY)
def sync_memberships(self) -> Dict[str, Any]:
    """Each allocation's associations follow its project's team and its members' offering-user logins."""
    rt = runtime()
    with exclusive(rt.redis, rt.keys.lock("sync-memberships"), ttl=rt.settings.poll_interval * 5) as mine:
        if not mine:
            log.info("sync_memberships: another run is going on; skipped")
            return {}
        with slurm_writer(rt.redis, rt.keys) as writing, rt.sacctmgr.guarded(writing.check):
            sync = MembershipSync(rt.waldur, rt.sacctmgr, rt.policy, on_new_users=_home_directories())
            result = unavailable_when_transient(sync.run)
        return asdict(result)
