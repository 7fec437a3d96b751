"""Redis locks of tasks/guards.py on the real Redis."""
import time

from tasks.guards import exclusive


def test_writer_lock_is_renewed_while_held_and_lapses_when_its_holder_dies(test_redis):
    with exclusive(test_redis, "slurm-writes", ttl=1, keep_alive=True) as mine:
        assert mine
        time.sleep(2.5)  # longer than the TTL: renewed meanwhile
        with exclusive(test_redis, "slurm-writes", ttl=1) as other:
            assert not other
    with exclusive(test_redis, "slurm-writes", ttl=1) as after:
        assert after  # released on exit
    # a holder that dies without releasing (no keep-alive thread any more): the lock lapses within its TTL
    test_redis.lock("slurm-sync:lock:slurm-writes", timeout=1).acquire()
    with exclusive(test_redis, "slurm-writes", ttl=1, wait=3) as waited:
        assert waited
