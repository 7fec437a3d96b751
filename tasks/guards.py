"""Idempotency keys and locks in Redis.

Keys (prefix ``slurm-sync:``), their TTLs and why:

| key | TTL | why |
|---|---|---|
| ``lock:poll-orders`` | poll interval x 5 (released at the end) | a poll never overlaps itself |
| ``order:<uuid>:queued`` | ORDER_QUEUED_TTL (10 min) | a poll does not enqueue an order already waiting in the queue |
| ``order:<uuid>:lock`` | ORDER_LOCK_TTL (SLURM_SYNC_ORDER_LOCK_TTL, 300 s) | two workers never process one order at once; expires so a killed worker's order is picked up again |
| ``order:<uuid>:final`` | 7 days | a re-delivered task or a re-listed order does no second write |
| ``lock:report-usage`` | usage interval x 5 | a usage cycle never overlaps itself |
| ``usage:<resource>:<YYYY-MM>`` (hash) | 100 days | the last reported amounts: only changes are posted |
| ``state:<resource>`` | 100 days | the allocation state last reported (a 7.0-line server does not show it): reported once |
| ``last-success:<task>`` | 90 days | when the task last succeeded (tasks/signals.py): health check and metrics |
| ``waldur-generation:<api url>`` | 1 day | the Waldur API generation learnt from the server: every worker agrees, one probe a day |

Correctness never depends on these keys surviving: after a flush the worker re-reads SLURM and
the order's state before every write, so the outcome is the same, only slower.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional

import redis
from redis.lock import Lock

from slurm_sync.settings import env_int

PREFIX = "slurm-sync:"
ORDER_LOCK_TTL = env_int("SLURM_SYNC_ORDER_LOCK_TTL")
ORDER_QUEUED_TTL = 600
FINAL_TTL = 7 * 24 * 3600


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


@contextlib.contextmanager
def exclusive(client: "redis.Redis", name: str, ttl: float) -> Iterator[bool]:
    """Yield True when this process holds the lock ``name``; False when another does (no wait)."""
    lock = client.lock(_key("lock", name), timeout=ttl, blocking=False)
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()


class OrderGuard:
    """Per-order lock, queued marker and final marker."""

    def __init__(self, client: "redis.Redis"):
        self.redis = client
        self.locks: List[Lock] = []

    def is_final(self, order_uuid: str) -> bool:
        return bool(self.redis.exists(_key("order", order_uuid, "final")))

    def mark_final(self, order_uuid: str, result: str) -> None:
        self.redis.set(_key("order", order_uuid, "final"), result, ex=FINAL_TTL)
        self.redis.delete(_key("order", order_uuid, "queued"))

    def mark_queued(self, order_uuid: str) -> bool:
        """True when the order was not already queued (and now is)."""
        return bool(self.redis.set(_key("order", order_uuid, "queued"), "1", nx=True, ex=ORDER_QUEUED_TTL))

    def unqueue(self, order_uuid: str) -> None:
        self.redis.delete(_key("order", order_uuid, "queued"))

    def lock(self, order_uuid: str) -> Optional[Lock]:
        lock = self.redis.lock(_key("order", order_uuid, "lock"), timeout=ORDER_LOCK_TTL, blocking=False)
        if lock.acquire(blocking=False):
            self.locks.append(lock)
            return lock
        return None

    def release_all(self) -> None:
        for lock in self.locks:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
        self.locks.clear()
