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
