"""Idempotency keys and locks in Redis.

Keys (prefix ``slurm-sync:``), their TTLs and why:

| key | TTL | why |
|---|---|---|
| ``lock:poll-orders`` | poll interval x 5 (released at the end) | a poll never overlaps itself |
| ``order:<uuid>:queued`` | ORDER_QUEUED_TTL (10 min) | a poll does not enqueue an order already waiting in the queue |
| ``order:<uuid>:lock`` | ORDER_LOCK_TTL (SLURM_SYNC_ORDER_LOCK_TTL, 300 s), renewed every third of it while its batch runs | two workers never process one order at once; expires so a killed worker's order is picked up again |
| ``order:<uuid>:final`` | 7 days | a re-delivered task or a re-listed order does no second write |
| ``lock:slurm-writes`` | ORDER_LOCK_TTL, renewed every third of it while the batch runs (a dead worker's lapses) | one batch at a time reads, plans and writes the tree, whatever the worker count: slurmdbd 22.05 corrupted its tree under concurrent writers here, and two batches planned from one read would collide |
| ``lock:sync-memberships`` | poll interval x 5 (released at the end) | a membership sync never overlaps itself (it writes under ``lock:slurm-writes`` too) |
| ``lock:report-usage`` | usage interval x 5 | a usage cycle never overlaps itself |
| ``usage:<resource>:<YYYY-MM>`` (hash) | 100 days | the last reported amounts: only changes are posted |
| ``state:<resource>`` | 100 days | the allocation state last reported (a 7.0-line server does not show it): reported once; ``Erred-stuck`` once an Erred resource that server cannot bring back was reported |
| ``last-success:<task>`` | 90 days | when the task last succeeded (tasks/signals.py): health check and metrics |
| ``waldur-generation:<api url>`` | 1 day | the Waldur API generation learnt from the server: every worker agrees, one probe a day |

Correctness never depends on these keys surviving: after a flush the worker re-reads SLURM and
the order's state before every write, so the outcome is the same, only slower.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, List, Optional, Sequence

import redis
from redis.lock import Lock

from slurm_sync.settings import env_int

PREFIX = "slurm-sync:"
ORDER_LOCK_TTL = env_int("SLURM_SYNC_ORDER_LOCK_TTL")
ORDER_QUEUED_TTL = 600
FINAL_TTL = 7 * 24 * 3600


class SlurmBusy(Exception):
    """Another batch holds ``lock:slurm-writes``: the task retries later."""


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


@contextlib.contextmanager
def renewing(locks: Sequence[Lock], ttl: float) -> Iterator[None]:
    """Renew ``locks`` every ttl/3 from a thread while the body runs, so a TTL can be short (a
    killed worker's locks are gone within it) while the work they guard takes longer."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            for lock in list(locks):
                with contextlib.suppress(redis.exceptions.RedisError):  # LockError included: lost is lost
                    lock.reacquire()

    if locks:
        threading.Thread(target=renew, name="renew-locks", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


@contextlib.contextmanager
def exclusive(client: "redis.Redis", name: str, ttl: float, wait: float = 0,
              keep_alive: bool = False) -> Iterator[bool]:
    """Yield True when this process holds the lock ``name``; False when another does (after ``wait`` s).

    ``keep_alive`` renews it while the body runs (:func:`renewing`)."""
    lock = client.lock(_key("lock", name), timeout=ttl, blocking=wait > 0, blocking_timeout=wait or None,
                       thread_local=False)
    acquired = lock.acquire()
    try:
        with renewing([lock] if acquired and keep_alive else [], ttl):
            yield acquired
    finally:
        if acquired:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()


class OrderGuard:
    """Per-order lock, queued marker and final marker."""

    def __init__(self, client: "redis.Redis", ttl: float = ORDER_LOCK_TTL):
        self.redis = client
        self.ttl = ttl
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
        lock = self.redis.lock(_key("order", order_uuid, "lock"), timeout=self.ttl, blocking=False,
                               thread_local=False)
        if lock.acquire(blocking=False):
            self.locks.append(lock)
            return lock
        return None

    def kept_alive(self) -> "contextlib.AbstractContextManager[None]":
        """The order locks held so far stay held while a long batch runs (renewed every ttl/3)."""
        return renewing(self.locks, self.ttl)

    def release_all(self) -> None:
        for lock in self.locks:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
        self.locks.clear()
