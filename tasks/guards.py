"""Idempotency keys and locks in Redis.

Keys and their TTLs: :mod:`slurm_sync.redis_keys`.

Correctness never depends on these keys surviving: after a flush the worker re-reads SLURM and
the order's state before every write, so the outcome is the same, only slower.
"""
from __future__ import annotations

import contextlib
import threading
import time
import uuid as uuidlib
from typing import Callable, Iterator, List, Optional, Sequence

import redis
from redis.lock import Lock

from slurm_sync.redis_keys import RedisKeys
from slurm_sync.settings import env_int

ORDER_LOCK_TTL = env_int("SLURM_SYNC_ORDER_LOCK_TTL")
QUEUED_TTL = env_int("SLURM_SYNC_VISIBILITY_TIMEOUT")  # a message waits in the queue at most this long
FINAL_TTL = 7 * 24 * 3600


INCARNATION = uuidlib.uuid4().hex  # this worker's process tree: prefork children inherit it from the parent
_holds: Optional[str] = None  # the node_holds key of this worker's node name, set at worker start (tasks.signals)


def set_node(holds_key: Optional[str]) -> None:
    """This worker's ``node:<name>:holds`` key (None: not a worker, nothing recorded)."""
    global _holds
    _holds = holds_key or None


class SlurmBusy(Exception):
    """Another batch holds the SLURM write lock: the task retries later."""


@contextlib.contextmanager
def renewing(locks: Sequence[Lock], ttl: float, also: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Renew ``locks`` (and run ``also``) every ttl/3 from a thread while the body runs, so a TTL can be
    short (a killed worker's locks are gone within it) while the work they guard takes longer."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            for lock in list(locks):
                with contextlib.suppress(redis.exceptions.RedisError):  # LockError included: lost is lost
                    lock.reacquire()
            if also is not None:
                with contextlib.suppress(redis.exceptions.RedisError):
                    also()

    if locks:
        threading.Thread(target=renew, name="renew-locks", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


@contextlib.contextmanager
def exclusive(client: "redis.Redis", key: str, ttl: float, wait: float = 0,
              keep_alive: bool = False) -> Iterator[bool]:
    """Yield True when this process holds the lock ``key`` (``RedisKeys.lock(name)``); False when another
    does (after ``wait`` s). ``keep_alive`` renews it while the body runs (:func:`renewing`)."""
    lock = client.lock(key, timeout=ttl, blocking=wait > 0, blocking_timeout=wait or None,
                       thread_local=False)
    acquired = lock.acquire()
    if acquired:
        _record(client, lock)
    try:
        with renewing([lock] if acquired and keep_alive else [], ttl):
            yield acquired
    finally:
        if acquired:
            _release(client, lock)


@contextlib.contextmanager
def slurm_writer(client: "redis.Redis", keys: RedisKeys) -> Iterator[None]:
    """Hold the SLURM write lock (renewed while the body runs) or raise :class:`SlurmBusy` after a minute:
    one batch at a time reads, plans and writes the tree."""
    with exclusive(client, keys.slurm_writes, ttl=ORDER_LOCK_TTL, wait=60, keep_alive=True) as writer:
        if not writer:
            raise SlurmBusy("another batch is writing to SLURM")
        yield


def _record(client: "redis.Redis", lock: Lock) -> None:
    """Note the lock as this worker's (see :func:`take_over_dead_incarnation`)."""
    if _holds:
        token = lock.local.token
        token = token.decode() if isinstance(token, bytes) else str(token)
        with contextlib.suppress(redis.exceptions.RedisError):
            client.hset(_holds, str(lock.name), f"{INCARNATION}|{token}")


def _release(client: "redis.Redis", lock: Lock) -> None:
    with contextlib.suppress(redis.exceptions.LockError):
        lock.release()
    if _holds:
        with contextlib.suppress(redis.exceptions.RedisError):
            client.hdel(_holds, str(lock.name))


# Delete a lock only while it still carries the given token (it is still the dead holder's).
_DELETE_IF_TOKEN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def take_over_dead_incarnation(client: "redis.Redis", keys: RedisKeys, node: str) -> List[str]:
    """At a worker's start: the locks an earlier process under this node name still holds are a dead
    worker's (one node name is one worker: systemd and compose restart it under the same name). Drop
    them and make its orders' leases lapse now; returns those orders (the caller sends recover_orders)."""
    key = keys.node_holds(node)
    orders: List[str] = []
    for field, value in client.hgetall(key).items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        incarnation, _, token = (value.decode() if isinstance(value, bytes) else str(value)).partition("|")
        if incarnation == INCARNATION:
            continue
        client.eval(_DELETE_IF_TOKEN, 1, name, token)
        client.hdel(key, field)
        order = keys.order_of_lock(name)
        if order:
            orders.append(order)
    if orders:
        client.zadd(keys.order_leases(), {uuid: 0 for uuid in orders}, xx=True)
    return orders


# Leases that lapsed, taken over in one step: each gets a new deadline, so a poll's ZADD NX cannot race it.
_TAKE_LAPSED = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(lapsed) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return lapsed
"""


class OrderLeases:
    """One chain of messages per order: the sorted set ``order-leases`` maps an order that some message
    names (queued, held by a worker, or waiting for its retry) to the time by which a worker must have
    taken it up. Only who adds the member or takes a lapsed one over sends a message; the broker's copy
    of a message is not trusted to come back soon (its visibility timeout is an hour)."""

    def __init__(self, client: "redis.Redis", keys: RedisKeys):
        self.redis = client
        self.key = keys.order_leases()

    def claim(self, order_uuids: Sequence[str], ttl: float) -> List[str]:
        """The orders no chain names yet, now named by the caller's message (the others are left alone)."""
        deadline = time.time() + ttl
        pipe = self.redis.pipeline(transaction=False)
        for uuid in order_uuids:
            pipe.zadd(self.key, {uuid: deadline}, nx=True)
        return [uuid for uuid, added in zip(order_uuids, pipe.execute()) if added]

    def hold(self, order_uuids: Sequence[str], ttl: float) -> None:
        """The caller's chain keeps these orders for ``ttl`` more seconds (taken up, renewed, retried later)."""
        if order_uuids:
            deadline = time.time() + ttl
            self.redis.zadd(self.key, {uuid: deadline for uuid in order_uuids})

    def release(self, order_uuids: Sequence[str]) -> None:
        if order_uuids:
            self.redis.zrem(self.key, *order_uuids)

    def take_lapsed(self, ttl: float, limit: int = 10000) -> List[str]:
        """Orders whose chain died (the deadline passed): now the caller's, for ``ttl`` seconds."""
        now = time.time()
        taken = self.redis.eval(_TAKE_LAPSED, 1, self.key, now, now + ttl, limit)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in taken]

    def deadline(self, order_uuid: str) -> Optional[float]:
        return self.redis.zscore(self.key, order_uuid)


class OrderGuard:
    """Per-order lock, lease (:class:`OrderLeases`) and final marker."""

    def __init__(self, client: "redis.Redis", keys: RedisKeys, ttl: float = ORDER_LOCK_TTL):
        self.redis = client
        self.keys = keys
        self.ttl = ttl
        self.locks: List[Lock] = []
        self.leases = OrderLeases(client, keys)
        self.held: List[str] = []

    def is_final(self, order_uuid: str) -> bool:
        return bool(self.redis.exists(self.keys.order_final(order_uuid)))

    def mark_final(self, order_uuid: str, result: str) -> None:
        self.redis.set(self.keys.order_final(order_uuid), result, ex=FINAL_TTL)
        self.leases.release([order_uuid])

    def lock(self, order_uuid: str) -> Optional[Lock]:
        """Lock the order for this worker and hold its lease for the lock's TTL (renewed with it)."""
        lock = self.redis.lock(self.keys.order_lock(order_uuid), timeout=self.ttl, blocking=False,
                               thread_local=False)
        if lock.acquire(blocking=False):
            _record(self.redis, lock)
            self.locks.append(lock)
            self.held.append(order_uuid)
            self.leases.hold([order_uuid], self.ttl)
            return lock
        return None

    def kept_alive(self) -> "contextlib.AbstractContextManager[None]":
        """The order locks and leases held so far stay held while a long batch runs (renewed every ttl/3);
        if this worker dies they lapse within the TTL."""
        return renewing(self.locks, self.ttl, also=lambda: self.leases.hold(list(self.held), self.ttl))

    def release_all(self) -> None:
        for lock in self.locks:
            _release(self.redis, lock)
        self.locks.clear()
        self.held.clear()
