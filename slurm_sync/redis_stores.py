"""What slurm-sync keeps in Redis besides its locks (tasks/guards.py): the last reported usage and states,
the Waldur generation learnt, and each task's last success. Keys: :mod:`slurm_sync.redis_keys`."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Optional

from slurm_sync.domain.usage_ledger import MonthLedger
from slurm_sync.redis_keys import RedisKeys
from slurm_sync.waldur.generation import GENERATIONS

log = logging.getLogger(__name__)
REPORTED_TTL = 100 * 24 * 3600
LAST_SUCCESS_TTL = 90 * 24 * 3600


class RedisReportedStore:
    """A :class:`~slurm_sync.sync.push.ReportedStore` in Redis: hash ``usage:<resource>:<YYYY-MM>`` (the last
    reported amounts) and ``state:<resource>`` (the allocation state last reported), 100 days each."""

    def __init__(self, client, keys: RedisKeys):
        self.redis = client
        self.keys = keys
        self._key = keys.usage

    def get(self, resource, month):
        raw = self.redis.hgetall(self._key(resource, month))
        totals = json.loads(raw.get(b"totals", b"{}"))
        users = json.loads(raw.get(b"users", b"{}"))
        return totals, users

    def put(self, resource, month, totals, users):
        key = self._key(resource, month)
        self.redis.hset(key, mapping={"totals": json.dumps(totals), "users": json.dumps(users)})
        self.redis.expire(key, REPORTED_TTL)

    def state(self, resource):
        raw = self.redis.get(self.keys.state(resource))
        return raw.decode() if raw else None

    def put_state(self, resource, state):
        self.redis.set(self.keys.state(resource), state, ex=REPORTED_TTL)

    def first_time(self, note):
        digest = hashlib.sha256(note.encode()).hexdigest()[:32]
        return bool(self.redis.set(self.keys.noted(digest), 1, nx=True, ex=REPORTED_TTL))

    def forget(self, resource=None, month=None):
        for key in self.redis.scan_iter(match=self.keys.usage_pattern(resource, month)):
            self.redis.delete(key)


class RedisUsageLedger:
    """A :class:`~slurm_sync.sync.month_usage.LedgerStore` in Redis: hash ``usage-ledger:<YYYY-MM>``, 100 days,
    replaced whole in one MULTI/EXEC so a reader never sees half a cycle's ledger."""

    def __init__(self, client, keys: RedisKeys, key: bytes = b""):
        self.redis = client
        self._key = keys.usage_ledger
        self.key = key  # signs every entry (usage_ledger.ledger_key): a forged one is dropped and recounted

    def get(self, month):
        raw = self.redis.hgetall(self._key(month))
        return MonthLedger.load({k.decode(): v.decode() for k, v in raw.items()}, self.key) if raw else None

    def put(self, month, ledger):
        key = self._key(month)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=ledger.dump(self.key))
            pipe.expire(key, REPORTED_TTL)
            pipe.execute()

    def forget(self, month=None):
        if month is not None:
            self.redis.delete(self._key(month))
            return
        for key in self.redis.scan_iter(match=self._key((0, 0)).replace("0-00", "*")):
            self.redis.delete(key)


class RedisGenerationCache:
    """``waldur-generation:<api url>`` = "<name>|<reason>", one day: every worker agrees,
    and a server upgraded in place is re-learnt the next day (or at once after a 404)."""

    TTL = 24 * 3600

    def __init__(self, client, keys: RedisKeys):
        self.redis = client
        self._key = keys.waldur_generation

    def get(self, api_url):
        try:
            raw = self.redis.get(self._key(api_url))
        except Exception as error:  # Redis down: learn again from the server, never fail on a cache
            log.warning("generation cache unreadable: %s", error)
            return None
        if not raw:
            return None
        name, _, reason = raw.decode().partition("|")
        return (name, reason) if name in GENERATIONS else None

    def put(self, api_url, name, reason):
        try:
            self.redis.set(self._key(api_url), f"{name}|{reason}", ex=self.TTL)
        except Exception as error:
            log.warning("generation cache unwritable: %s", error)


def record_success(client, keys: RedisKeys, task: str, when: Optional[float] = None) -> float:
    """Store ``when`` (now) as ``task``'s last success; returns it."""
    when = time.time() if when is None else when
    client.set(keys.last_success(task), f"{when:.3f}", ex=LAST_SUCCESS_TTL)
    return when


def last_success(client, keys: RedisKeys, task: str) -> Optional[float]:
    raw = client.get(keys.last_success(task))
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
