"""One chain per order: the Redis leases that decide who may send an order's message."""
import time

import pytest

from slurm_sync.redis_keys import RedisKeys
from tasks.guards import OrderGuard, OrderLeases

KEYS = RedisKeys("test-offering")


@pytest.fixture
def leases(test_redis):
    return OrderLeases(test_redis, KEYS)


def test_a_claimed_order_is_not_claimed_again(leases):
    assert leases.claim(["o1", "o2"], 60) == ["o1", "o2"]
    assert leases.claim(["o2", "o3"], 60) == ["o3"]  # o2 is named by a message already


def test_a_lapsed_lease_is_taken_over_once(leases):
    leases.claim(["o1"], 0.2)
    leases.claim(["o2"], 60)
    assert leases.take_lapsed(60) == []
    time.sleep(0.3)
    assert leases.take_lapsed(60) == ["o1"]
    assert leases.take_lapsed(60) == []  # taken over: a new deadline
    assert leases.claim(["o1"], 60) == []  # and the poll cannot start a second chain for it


def test_a_worker_holding_an_order_keeps_its_lease_and_a_dead_one_loses_it(test_redis):
    worker = OrderGuard(test_redis, KEYS, ttl=1)
    worker.leases.claim(["o1"], 3600)  # queued for an hour
    assert worker.lock("o1")
    assert worker.leases.deadline("o1") < time.time() + 2  # taken up: its lease is now the lock's TTL
    with worker.kept_alive():
        time.sleep(1.5)  # renewed every third of the TTL while the batch runs
        assert worker.leases.take_lapsed(60) == []
    # the worker "dies" here: nothing renews, nothing is released
    time.sleep(1.2)
    assert worker.leases.take_lapsed(60) == ["o1"]
    assert OrderGuard(test_redis, KEYS, ttl=1).lock("o1")  # and its lock has lapsed too


def test_final_releases_the_lease(test_redis):
    guard = OrderGuard(test_redis, KEYS)
    guard.leases.claim(["o1"], 60)
    guard.mark_final("o1", "done")
    assert guard.leases.deadline("o1") is None and guard.is_final("o1")
