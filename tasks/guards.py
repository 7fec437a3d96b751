"""Idempotency keys and locks in Redis.

Keys and their TTLs: :mod:`slurm_sync.redis_keys`.

Correctness never depends on these keys surviving: after a flush the worker re-reads SLURM and
the order's state before every write, so the outcome is the same, only slower.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
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
log = logging.getLogger(__name__)


INCARNATION = uuidlib.uuid4().hex  # this worker's process tree: prefork children inherit it from the parent
_holds: Optional[str] = None  # the node_holds key of this worker's node name, set at worker start (tasks.signals)


def set_node(holds_key: Optional[str]) -> None:
    """This worker's ``node:<name>:holds`` key (None: not a worker, nothing recorded)."""
    global _holds
    _holds = holds_key or None


class SlurmBusy(Exception):
    """Another batch holds the SLURM write lock (or this one lost it): the task retries later."""


class Renewal:
    """What a :func:`renewing` body can ask: whether every lock is still surely held."""

    def __init__(self):
        self.lost = threading.Event()

    def check(self) -> None:
        """Raise :class:`SlurmBusy` once a lock was lost (taken over, or not renewed within its TTL)."""
        if self.lost.is_set():
            raise SlurmBusy("the SLURM write lock was lost (not renewed within its TTL, or taken over): no more "
                            "writes from this batch")


@contextlib.contextmanager
def renewing(locks: Sequence[Lock], ttl: float, also: Optional[Callable[[], None]] = None) -> Iterator[Renewal]:
    """Renew ``locks`` (and run ``also``) every ttl/3 from a thread while the body runs, so a TTL can be
    short (a killed worker's locks are gone within it) while the work they guard takes longer. A lock that
    is no longer ours, or that no renewal reached Redis for within its TTL, is lost: the yielded
    :class:`Renewal` says so, and a writer checks it before each write."""
    stop, renewal = threading.Event(), Renewal()

    def renew() -> None:
        renewed = time.monotonic()
        while not stop.wait(ttl / 3):
            try:
                for lock in list(locks):
                    lock.reacquire()
                renewed = time.monotonic()
            except redis.exceptions.LockError:  # LockNotOwnedError: expired, or another holder has it
                renewal.lost.set()
            except redis.exceptions.RedisError:
                if time.monotonic() - renewed > ttl:
                    renewal.lost.set()
            if renewal.lost.is_set():
                log.error("a lock of this worker was lost (%s): it writes nothing more under it",
                          ", ".join(str(lock.name) for lock in locks))
                return
            if also is not None:
                with contextlib.suppress(redis.exceptions.RedisError):
                    also()

    if locks:
        threading.Thread(target=renew, name="renew-locks", daemon=True).start()
    try:
        yield renewal
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
        with renewing([lock] if acquired and keep_alive else [], ttl) as renewal:
            yield renewal if acquired else False
    finally:
        if acquired:
            _release(client, lock)


@contextlib.contextmanager
def slurm_writer(client: "redis.Redis", keys: RedisKeys) -> Iterator[Renewal]:
    """Hold the SLURM write lock (renewed while the body runs) or raise :class:`SlurmBusy` after a minute:
    one batch at a time reads, plans and writes the tree. The body hands ``check`` of what it yields to the
    SLURM client (``write_guard``), so a batch that lost the lock stops before its next write."""
    with exclusive(client, keys.slurm_writes, ttl=ORDER_LOCK_TTL, wait=60, keep_alive=True) as writer:
        if not writer:
            raise SlurmBusy("another batch is writing to SLURM")
        yield writer


def _record(client: "redis.Redis", lock: Lock) -> None:
    """Note the lock as this worker's, with the host and process holding it (see :func:`take_over_dead_incarnation`)."""
    if _holds:
        token = lock.local.token
        token = token.decode() if isinstance(token, bytes) else str(token)
        with contextlib.suppress(redis.exceptions.RedisError):
            client.hset(_holds, str(lock.name), f"{INCARNATION}|{token}|{socket.gethostname()}|{os.getpid()}")


def _proved_gone(host: str, pid: str) -> bool:
    """The process that recorded a lock is gone: it ran on this host and its pid is free, or names a process that
    has exited and waits only to be reaped (a killed worker's pool child, until its new parent reaps it). A record
    from another host (or one without host and pid) proves nothing: its lock lapses with its TTL."""
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


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
    """At a worker's start: systemd and compose restart a killed worker under the same node name, and its
    dead process's locks would hold its orders for a lock TTL. Drop the locks of an earlier process under this
    name that is PROVED gone (it ran on this host and its pid is free) and make its orders' leases lapse now;
    returns those orders (the caller sends recover_orders). A name alone proves nothing: a second worker
    started under a live one's name leaves the live one's locks alone (they lapse only if it stops renewing)."""
    key = keys.node_holds(node)
    orders: List[str] = []
    for field, value in client.hgetall(key).items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        incarnation, token, host, pid = ((value.decode() if isinstance(value, bytes) else str(value))
                                         .split("|") + ["", "", ""])[:4]
        if incarnation == INCARNATION:
            continue
        if not _proved_gone(host, pid):
            log.warning("node %s: lock %s is held by process %s on %s, not proved gone: left to lapse on its own "
                        "(is another worker running under this node name?)", node, name, pid or "?", host or "?")
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
