"""Pull through a real Celery worker and Redis, on the real bed: the idempotency guarantees."""
import time

import pytest

from slurm_sync.waldur.api import ORDER_FIELDS
from tests.plugins.celery_worker import wait_until

from tests.pull_scenario import Scenario, slurm_tree
from slurm_sync.redis_keys import SLURM_WRITES, RedisKeys


def slim(order):
    return {k: order.get(k) for k in ORDER_FIELDS if k in order}


def names(env):
    """c("acme") -> this test's customer account name; likewise p() and a()."""
    return tuple((lambda n, k=k: env[f"SLURM_{k}_PREFIX"] + n) for k in ("CUSTOMER", "PROJECT", "ALLOCATION"))


def all_done(emu, orders):
    return lambda: all(emu.get_order(o["uuid"])["state"] in ("done", "erred") for o in orders)


@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
def test_poll_through_worker_runs_create_update_terminate(waldur, start_worker, send, sync_env):
    scenario = Scenario(waldur)
    root = sync_env["SLURM_DEFAULT_ACCOUNT"]
    c, p, a = names(sync_env)
    start_worker(scenario.offering["uuid"])
    orders = [scenario.create("acme", "physics", "w-one", team=("alice", "bob")),
              scenario.create("globex", "bio", "w-two", team=("carol",))]
    send("tasks.pull.poll_orders")
    wait_until(all_done(waldur, orders), what="creates done")
    assert [waldur.get_order(o["uuid"])["state"] for o in orders] == ["done", "done"]
    accounts, _, users = slurm_tree(root)
    assert accounts == {c("acme"): root, p("physics"): c("acme"), a("w-one"): p("physics"),
                        c("globex"): root, p("bio"): c("globex"), a("w-two"): p("bio")}
    assert users == {("alice", a("w-one")), ("bob", a("w-one")), ("carol", a("w-two"))}

    r1 = orders[0]["marketplace_resource_uuid"]
    update = scenario.order(r1, "Update", limits={"cpu": 30, "gpu": 1})
    send("tasks.pull.poll_orders")
    wait_until(all_done(waldur, [update]), what="update done")
    assert waldur.get_order(update["uuid"])["state"] == "done"  # on 7.0 only after the allocation was reported OK
    assert "cpu=1800" in slurm_tree(root)[1][a("w-one")]
    assert waldur.resource_limits(r1) == {"cpu": 30, "gpu": 1}
    if waldur.profile == "7.0":
        assert waldur.allocation_state(r1) == "OK" and waldur.slurm_associations(r1) == ["alice", "bob"]

    terminate = scenario.order(r1, "Terminate")
    send("tasks.pull.poll_orders")
    wait_until(all_done(waldur, [terminate]), what="terminate done")
    accounts, _, users = slurm_tree(root)
    assert set(accounts) == {c("globex"), p("bio"), a("w-two")} and users == {("carol", a("w-two"))}


def test_duplicate_delivery_does_one_write(waldur, start_worker, send, sync_env):
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    start_worker(scenario.offering["uuid"])
    order = scenario.create("acme", "physics", "dup", team=("alice",))
    deliveries = [send("tasks.pull.process_orders", [slim(order)]) for _ in range(2)]
    for delivery in deliveries:  # both deliveries have run to their end
        delivery.get(timeout=60)
    assert all_done(waldur, [order])()
    assert waldur.count("POST", "approve_by_provider") == 1
    assert waldur.count("POST", "set_state_done") == 1
    assert waldur.count("POST", "set_backend_id") == 1
    assert a("dup") in slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])[0]


def test_two_workers_racing_on_one_order(waldur, start_worker, send, sync_env):
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    start_worker(scenario.offering["uuid"], name="one")
    start_worker(scenario.offering["uuid"], name="two")
    waldur.faults.latency(0.3)  # widen the race window
    order = scenario.create("acme", "physics", "race", team=("alice",))
    deliveries = [send("tasks.pull.process_orders", [slim(order)]) for _ in range(4)]
    for delivery in deliveries:  # every delivery has run to its end (those that found the order locked too)
        delivery.get(timeout=90)
    wait_until(all_done(waldur, [order]), timeout=90, what="order done")  # a locked-out delivery's retry
    waldur.faults.clear()
    assert waldur.get_order(order["uuid"])["state"] == "done"
    assert waldur.count("POST", "approve_by_provider") == 1
    assert waldur.count("POST", "set_state_done") == 1
    accounts, _, users = slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])
    assert [x for x in accounts if x.startswith(a(""))] == [a("race")] and users == {("alice", a("race"))}


def test_worker_killed_mid_order_is_redelivered_and_finishes(waldur, start_worker, send, sync_env):
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    extra = {"SLURM_SYNC_VISIBILITY_TIMEOUT": "3", "SLURM_SYNC_ORDER_LOCK_TTL": "3",
             "SLURM_SYNC_RESTORE_INTERVAL": "1", "SLURM_SYNC_RESTORE_THROTTLE": "1"}
    worker = start_worker(scenario.offering["uuid"], name="doomed", **extra)
    order = scenario.create("acme", "physics", "killed", team=("alice",))
    waldur.faults.latency(1.0)
    send("tasks.pull.process_orders", [slim(order)])
    wait_until(lambda: waldur.count("POST", "approve_by_provider") == 1, what="approve sent")
    worker.kill()  # SIGKILL: no ack, no lock release, mid-order
    waldur.faults.clear()
    assert waldur.get_order(order["uuid"])["state"] == "executing"
    start_worker(scenario.offering["uuid"], name="heir", **extra)
    # the dead worker's lease lapses with its lock (3 s); beat sends recover_orders every TTL / 2
    deadline = time.monotonic() + 90
    while not all_done(waldur, [order])() and time.monotonic() < deadline:
        send("tasks.pull.recover_orders").get(timeout=30)  # recovered now, or its lease has not lapsed yet
    assert all_done(waldur, [order])(), "order finished by the new worker"
    assert waldur.get_order(order["uuid"])["state"] == "done"
    accounts, _, users = slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])
    assert [x for x in accounts if x.startswith(a(""))] == [a("killed")] and users == {("alice", a("killed"))}


def test_a_worker_restarted_under_its_name_takes_its_orders_up_at_once(waldur, start_worker, send, sync_env,
                                                                       test_redis):
    """Systemd and compose restart a killed worker under the same node name; its dead process's
    locks are dropped and its orders sent again when it is ready, not when the 300 s lock TTL here lapses
    (nor the broker's hour-long visibility timeout)."""
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    slow = {"SLURM_SYNC_ORDER_LOCK_TTL": "300", "SLURM_SYNC_VISIBILITY_TIMEOUT": "3600"}
    worker = start_worker(scenario.offering["uuid"], name="same", **slow)
    order = scenario.create("acme", "physics", "restarted", team=("alice",))
    waldur.faults.latency(1.0)
    send("tasks.pull.process_orders", [order["uuid"]])
    wait_until(lambda: waldur.count("POST", "approve_by_provider") == 1, what="approve sent")
    worker.kill()  # SIGKILL mid-order: its lock (300 s) and lease stay behind
    waldur.faults.clear()
    assert test_redis.exists(RedisKeys(scenario.offering["uuid"]).order_lock(order["uuid"]))
    start_worker(scenario.offering["uuid"], name="same", **slow)
    wait_until(all_done(waldur, [order]), timeout=60, what="order finished by the restarted worker")
    assert waldur.count("POST", "approve_by_provider") == 1 and waldur.count("POST", "set_state_done") == 1
    accounts, _, users = slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])
    assert [x for x in accounts if x.startswith(a(""))] == [a("restarted")]


def test_redis_flush_between_runs_changes_nothing(waldur, start_worker, send, sync_env, test_redis):
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    start_worker(scenario.offering["uuid"])
    order = scenario.create("acme", "physics", "flushed", team=("alice", "bob"))
    send("tasks.pull.process_orders", [slim(order)])
    wait_until(all_done(waldur, [order]), what="order done")
    before = slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])
    test_redis.flushdb()  # markers gone: the same order delivered again must re-check, not re-do
    stale = {**slim(order), "state": "executing"}  # a message's claims count for nothing: Waldur says it is done
    reads = _order_listings(waldur)
    send("tasks.pull.process_orders", [stale])
    wait_until(lambda: _order_listings(waldur) > reads, what="second delivery read the orders back")
    wait_until(lambda: test_redis.get(SLURM_WRITES) is None, what="second delivery finished")
    assert slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"]) == before
    assert waldur.get_order(order["uuid"])["state"] == "done"
    assert waldur.count("POST", "set_state_done") == 1 and waldur.count("POST", "set_backend_id") == 1


def _order_listings(waldur):
    return sum(1 for r in waldur.requests if r.method == "GET" and r.path.endswith("/marketplace-orders/"))


@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
def test_forged_messages_write_nothing(waldur, start_worker, send, sync_env, slurm_sandbox):
    """H1: a message published straight to the broker names work; Waldur says what it is. A forged Terminate
    of a site account, a uuid that exists nowhere and another offering's order change nothing in SLURM."""
    from tests.plugins.slurm_bed import add_slurm_user, sacctmgr
    scenario = Scenario(waldur)
    site = f"{slurm_sandbox}_physics"
    sacctmgr("-i", "add", "account", site, f"parent={slurm_sandbox}", "description=physics")
    add_slurm_user("carol", site)
    other_offering = waldur.add_offering("Other")
    elsewhere = waldur.create_order(other_offering["uuid"], scenario.project("acme", "physics")["uuid"],
                                    attributes={"name": "elsewhere"})
    start_worker(scenario.offering["uuid"])  # one process: messages run in the order they were sent
    forged = {"uuid": "f" * 32, "type": "Terminate", "state": "executing", "backend_id": site,
              "marketplace_resource_uuid": "e" * 32, "project_uuid": "d" * 32, "customer_uuid": "c" * 32}
    send("tasks.pull.process_orders", [forged, elsewhere["uuid"], "0" * 32])
    real = scenario.create("acme", "physics", "real", team=("alice",))
    send("tasks.pull.process_orders", [real["uuid"]])
    wait_until(all_done(waldur, [real]), what="the real order, sent after the forged one, done")
    assert sacctmgr("show", "assoc", f"account={site}", "format=User", "-P", "-n").stdout.split() == ["carol"]
    assert waldur.get_order(elsewhere["uuid"])["state"] == "pending-provider"
    posted = {r.path.split("/")[-3] for r in waldur.requests if r.method == "POST" and "/marketplace-orders/" in r.path}
    assert posted == {real["uuid"]}  # approve and done of the real order, nothing for the forged ones


def test_a_second_worker_under_a_live_ones_name_never_writes_beside_it(waldur, start_worker, send, sync_env,
                                                                      test_redis):
    """Two workers started with one node name (-n): the second's start takes over nothing of the live first's,
    the SLURM write lock included, and says so; the first finishes its batch, nothing is done twice."""
    scenario = Scenario(waldur)
    c, p, a = names(sync_env)
    first = start_worker(scenario.offering["uuid"], name="same")
    order = scenario.create("acme", "physics", "twice", team=("alice",))
    waldur.faults.latency(1.0)  # a slow Waldur: the batch holds the SLURM write lock for a while
    send("tasks.pull.process_orders", [order["uuid"]])
    wait_until(lambda: test_redis.get(SLURM_WRITES) is not None, what="the first worker holds the write lock")
    token = test_redis.get(SLURM_WRITES)
    second = start_worker(scenario.offering["uuid"], name="same")
    second.wait_for("not proved gone", timeout=60)
    assert test_redis.get(SLURM_WRITES) in (token, None)  # still the first's (or released by it when done)
    waldur.faults.clear()
    wait_until(all_done(waldur, [order]), timeout=90, what="order finished by the first worker")
    assert waldur.count("POST", "approve_by_provider") == 1 and waldur.count("POST", "set_state_done") == 1
    accounts, _, _ = slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])
    assert [x for x in accounts if x.startswith(a(""))] == [a("twice")]
    assert "Traceback" not in first.tail(200)


def test_periodic_work_that_waited_past_its_interval_is_dropped_not_run_back_to_back(waldur, start_worker, send,
                                                                                   sync_env, _test_app):
    """Beat's entries expire after their interval (tasks.app.beat_schedule): behind a long batch on the one
    headnode worker, the copies that waited longer are dropped (revoked) instead of running one after another."""
    from tasks.app import beat_schedule
    from slurm_sync.settings import Settings
    schedule = beat_schedule(Settings(waldur_sync_direction="both"))
    assert {name: entry["options"]["expires"] for name, entry in schedule.items()} == {
        "poll-orders": 60.0, "sync-memberships": 60.0, "recover-orders": 20.0, "report-usage": 900.0,
        "report-usage-month-end": 600}
    scenario = Scenario(waldur)
    start_worker(scenario.offering["uuid"])
    order = scenario.create("acme", "physics", "long", team=("alice",))
    waldur.faults.latency(1.0)  # the batch below keeps the single worker busy for several seconds
    batch = send("tasks.pull.process_orders", [order["uuid"]])
    waited = [_test_app.send_task("tasks.pull.sync_memberships", expires=2) for _ in range(3)]
    batch.get(timeout=120)
    waldur.faults.clear()
    for result in waited:
        wait_until(lambda: result.state in ("REVOKED", "SUCCESS", "FAILURE"), timeout=60, what="queued copy handled")
    assert [r.state for r in waited] == ["REVOKED"] * 3
