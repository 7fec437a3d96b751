"""Redis locks of tasks/guards.py on the real Redis."""
import time

from slurm_sync.redis_keys import SLURM_WRITES, RedisKeys
from tasks.guards import exclusive

KEYS = RedisKeys("test-offering")


def test_writer_lock_is_renewed_while_held_and_lapses_when_its_holder_dies(test_redis):
    with exclusive(test_redis, KEYS.slurm_writes, ttl=1, keep_alive=True) as mine:
        assert mine
        time.sleep(2.5)  # longer than the TTL: renewed meanwhile
        with exclusive(test_redis, KEYS.slurm_writes, ttl=1) as other:
            assert not other
    with exclusive(test_redis, KEYS.slurm_writes, ttl=1) as after:
        assert after  # released on exit
    # a holder that dies without releasing (no keep-alive thread any more): the lock lapses within its TTL
    test_redis.lock(SLURM_WRITES, timeout=1).acquire()
    with exclusive(test_redis, KEYS.slurm_writes, ttl=1, wait=3) as waited:
        assert waited


def test_order_locks_are_renewed_while_their_batch_runs(test_redis):
    from tasks.guards import OrderGuard
    guard, other = OrderGuard(test_redis, KEYS, ttl=1), OrderGuard(test_redis, KEYS, ttl=1)
    assert guard.lock("o1") and guard.lock("o2")
    with guard.kept_alive():
        time.sleep(2.5)  # longer than the TTL: a second worker still cannot take them
        assert other.lock("o1") is None and other.lock("o2") is None
    time.sleep(1.5)  # no longer renewed: a dead worker's order locks lapse within the TTL
    assert other.lock("o1") and other.lock("o2")
    other.release_all()
    guard.release_all()  # theirs are gone already: no error


def _hold_as(client, node, lock_key, token, host, pid):
    """A lock held by another process of this node name, as its _record wrote it."""
    client.set(lock_key, token, px=60_000)
    client.hset(KEYS.node_holds(node), lock_key, f"another-incarnation|{token}|{host}|{pid}")


def test_a_node_name_alone_takes_over_nothing_a_live_process_holds(test_redis):
    """Two workers started with one node name (-n): the second's start drops only what a process PROVED gone
    held (this host, its pid free); a live holder's locks stay, the SLURM write lock included."""
    import os
    import socket
    import subprocess
    import sys

    from tasks.guards import take_over_dead_incarnation
    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that has just exited
    _hold_as(test_redis, "same", KEYS.slurm_writes, "live-token", host, os.getpid())  # alive: this very process
    _hold_as(test_redis, "same", KEYS.order_lock("o-live"), "t1", host, os.getpid())
    _hold_as(test_redis, "same", KEYS.order_lock("o-dead"), "t2", host, gone)
    _hold_as(test_redis, "same", KEYS.order_lock("o-far"), "t3", "another-host", gone)  # nothing proves it gone
    test_redis.zadd(KEYS.order_leases(), {"o-live": 9e12, "o-dead": 9e12, "o-far": 9e12})
    assert take_over_dead_incarnation(test_redis, KEYS, "same") == ["o-dead"]
    assert test_redis.get(KEYS.slurm_writes) == b"live-token"
    assert test_redis.exists(KEYS.order_lock("o-live")) and test_redis.exists(KEYS.order_lock("o-far"))
    assert not test_redis.exists(KEYS.order_lock("o-dead"))
    assert test_redis.zscore(KEYS.order_leases(), "o-dead") == 0 and test_redis.zscore(KEYS.order_leases(), "o-live")
    assert take_over_dead_incarnation(test_redis, KEYS, "same") == []  # said once: its record is gone


def test_a_writer_that_lost_the_lock_writes_nothing_more(test_redis):
    """The write lock taken from under a batch (it expired, another holder has it): the renewal sees it and
    the SLURM client refuses the batch's next write before running anything."""
    import pytest

    from slurm_sync.domain.slurm_objects import AddUsers
    from slurm_sync.slurm.sacctmgr import SacctmgrClient
    from tasks.guards import SlurmBusy, slurm_writer
    from tests.test_sacctmgr import FakeExecutor

    executor = FakeExecutor()
    client = SacctmgrClient(executor, cluster="c1")
    with slurm_writer(test_redis, KEYS) as writing, client.guarded(writing.check):
        client.apply([AddUsers((("alice", "acc"),))])  # held: written
        test_redis.set(KEYS.slurm_writes, "someone-else")  # lost
        deadline = time.monotonic() + 30
        while not writing.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert writing.lost.is_set()
        with pytest.raises(SlurmBusy):
            client.apply([AddUsers((("bob", "acc"),))])
    assert [argv[-1] for argv, _ in executor.calls] == ["cluster=c1"] and len(executor.calls) == 1
    assert client.write_guard is None
