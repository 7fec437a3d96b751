"""Waldur calls in parallel (issue 29): the limiter against the emulator with faults, and a batch of orders whose
steps stay in order under concurrency on both server generations."""
import time

import pytest
import yaml

from slurm_sync.domain.components import parse_components
from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.waldur.api import WaldurAPI
from slurm_sync.waldur.concurrency import Limiter
from tests.pull_scenario import COMPONENTS_YAML


def api_with(waldur, limit: int, offering_uuid: str = "0" * 32) -> WaldurAPI:
    """An API with a limiter of its own (the process-wide one of the emulator's URL is shared by every test)."""
    return WaldurAPI(waldur.url, waldur.token, offering_uuid, limiter=Limiter(limit))


def offering_reads(api, count):
    return api.each(lambda _: api.offering(), range(count))


# -- the limiter alone --------------------------------------------------------------------------------

def test_a_burst_of_server_errors_halves_the_limit_and_good_answers_grow_it_back():
    limiter = Limiter(8)
    limiter.answered(200)
    limiter.answered(503)
    limiter.answered(500)
    assert limiter.limit == 8  # two errors are no burst
    limiter.answered(502)
    assert (limiter.limit, limiter.shrinks) == (4, 1)
    for status in (0, 503, 429):  # no answer and 429 count as errors too
        limiter.answered(status)
    assert limiter.limit == 2
    for _ in range(3):
        limiter.answered(500)
    assert limiter.limit == 1
    for _ in range(3):
        limiter.answered(500)
    assert limiter.limit == 1  # never below one
    grown = []
    for _ in range(40):
        limiter.answered(200)
        grown.append(limiter.limit)
    # each run of `limit` good answers adds one: 1 -> 2 after 1, -> 3 after 2 more, ... up to the setting, not past
    assert grown[0] == 2 and grown[2] == 3 and grown[5] == 4
    assert limiter.limit == 8 and max(grown) == 8


def test_a_retry_after_pauses_every_slot_and_a_404_is_a_good_answer():
    limiter = Limiter(4)
    limiter.answered(404)
    limiter.answered(503, retry_after=0.4)
    started = time.monotonic()
    with limiter.slot():
        waited = time.monotonic() - started
    assert waited >= 0.35
    limiter.answered(429, retry_after=None)  # no Retry-After: no pause
    started = time.monotonic()
    with limiter.slot():
        assert time.monotonic() - started < 0.1


# -- against the emulator -----------------------------------------------------------------------------

def test_requests_in_flight_never_pass_the_setting(waldur, scenario):
    waldur.faults.latency(0.05)
    api = api_with(waldur, 3, scenario.offering["uuid"])
    waldur.log.clear()
    offering_reads(api, 24)
    assert waldur.log.max_in_flight == 3  # in parallel, and never more than the setting
    assert api.limiter.max_in_flight == 3
    assert api.request_count == 24


def test_a_retry_after_slows_every_later_call_of_the_deployment(waldur, scenario):
    waldur.faults.latency(0.02)
    waldur.faults.fail_next(1, 429, path_contains="marketplace-provider-offerings", retry_after=1)
    api = api_with(waldur, 4, scenario.offering["uuid"])
    waldur.log.clear()
    offering_reads(api, 16)
    records = [r for r in waldur.requests if "marketplace-provider-offerings" in r.path]
    refused = [r for r in records if r.status == 429]
    assert len(refused) == 1 and sum(r.status == 200 for r in records) == 16  # the refused one was retried
    # every call that went out after the client read the 429 (a moment after the server sent it), by any thread,
    # waited for the Retry-After: nothing arrives between then and the second after it
    later = [r for r in records if r.arrived > refused[0].answered + 0.1]
    assert len(later) >= 10
    assert min(r.arrived for r in later) >= refused[0].answered + 0.95
    assert waldur.log.max_in_flight <= 4


def test_a_burst_of_5xx_shrinks_the_concurrency_then_it_grows_back(waldur, scenario):
    waldur.faults.latency(0.01)
    waldur.faults.fail_next(4, 503, path_contains="marketplace-provider-offerings")
    api = api_with(waldur, 8, scenario.offering["uuid"])
    offering_reads(api, 80)
    assert api.limiter.shrinks >= 1  # four errors in a row: the burst halved it (at least once)
    assert api.limiter.grows >= 1 and api.limiter.limit == 8  # grown back to the setting by the good answers since
    assert waldur.count("GET", "marketplace-provider-offerings") == 84  # each failed call retried, none lost
    assert waldur.log.max_in_flight <= 8


def test_the_first_error_is_raised_once_every_call_has_finished(waldur, scenario):
    from slurm_sync.waldur.api import WaldurHTTPError
    api = api_with(waldur, 4, scenario.offering["uuid"])
    finished = []

    def call(i):
        if i == 0:
            api.get_order("f" * 32)  # 404
        time.sleep(0.05)
        finished.append(i)

    with pytest.raises(WaldurHTTPError):
        api.each(call, range(6))
    assert sorted(finished) == [1, 2, 3, 4, 5]


# -- a batch of orders under concurrency, on both generations ----------------------------------------

@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    return request.param


class TimedSacctmgr(SacctmgrClient):
    """The real sacctmgr client, remembering when each write ran."""

    writes = ()

    def apply(self, operations):
        started = time.monotonic()
        try:
            return super().apply(operations)
        finally:
            self.writes = (*self.writes, (started, time.monotonic()))


@pytest.fixture
def processor(waldur, scenario, slurm_sandbox):
    api = WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"], limiter=Limiter(4))
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(default_account=f"{slurm_sandbox}w", customer_prefix=f"c{tag}_", project_prefix=f"p{tag}_",
                          allocation_prefix=f"a{tag}_", max_len=34)
    proc = OrderProcessor(api, TimedSacctmgr(NativeExecutor(timeout=60)),
                          parse_components(yaml.safe_load(COMPONENTS_YAML)), policy)
    yield proc
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(policy.default_account)


def calls_of(waldur, order):
    """This order's own calls (on the order or its resource), in the order they came in."""
    keys = (order["uuid"], order["marketplace_resource_uuid"])
    return sorted((r for r in waldur.requests if r.method == "POST" and any(k in r.path for k in keys)),
                  key=lambda r: r.arrived)


def test_order_steps_stay_in_order_under_concurrency_and_a_duplicate_does_nothing_twice(processor, waldur, scenario):
    orders = [scenario.create(f"cu{i % 3}", f"pr{i % 5}", f"conc-{i}", team=("alice", "bob")) for i in range(12)]
    waldur.faults.latency(0.03)
    waldur.log.clear()
    result = processor.process(processor.load([o["uuid"] for o in orders]))
    assert sorted(result.by_result("done")) == sorted(o["uuid"] for o in orders)
    assert all(waldur.get_order(o["uuid"])["state"] == "done" for o in orders)
    assert waldur.log.max_in_flight > 1  # the orders' calls did go out together
    assert waldur.log.max_in_flight <= 4
    (write_started, write_ended), = processor.slurm.writes  # one SLURM write for the batch
    for order in orders:
        calls = calls_of(waldur, order)
        names = [c.path.rstrip("/").rsplit("/", 1)[-1] for c in calls]
        assert names[0] == "approve_by_provider" and names[1] == "set_backend_id"
        if waldur.profile == "current":
            assert names == ["approve_by_provider", "set_backend_id", "set_state_done"]
        else:  # the allocation reported; its Creating -> OK completes the order (no set_state_done)
            assert names[2:4] == ["set_state", "set_state"] and [c.body["state"] for c in calls[2:4]] == ["creating", "ok"]
            assert sorted(c.body["username"] for c in calls if c.path.endswith("create_association/")) == ["alice", "bob"]
        # approve -> SLURM -> backend_id -> done: each step starts once the one before it has been answered
        assert calls[0].answered <= write_started and write_ended <= calls[1].arrived
        assert all(earlier.answered <= later.arrived for earlier, later in zip(calls, calls[1:]))
        assert all(c.status in (200, 201) for c in calls)

    # the same message delivered again (stale order records: pending-provider): nothing is done twice
    before = len(waldur.requests)
    again = processor.process(orders)
    assert again.commits == 0 and len(processor.slurm.writes) == 1
    assert sorted(again.by_result("skipped")) == sorted(o["uuid"] for o in orders)
    repeated = [r for r in waldur.requests[before:] if r.method == "POST"]
    assert all(r.status in (400, 409) and r.path.endswith("approve_by_provider/") for r in repeated)
    for order in orders:
        assert sum(c.status == 200 for c in calls_of(waldur, order) if "approve" in c.path) == 1
        assert waldur.get_order(order["uuid"])["state"] == "done"


def test_the_setting_reaches_the_worker_api_and_its_connection_pool():
    from slurm_sync.settings import load_settings
    from slurm_sync.wiring import waldur_api
    settings = load_settings({"WALDUR_API_URL": "https://waldur.example.com/api/", "WALDUR_API_TOKEN": "t" * 16,
                              "WALDUR_OFFERING_UUID": "a" * 32, "SLURM_TRES_CONFIG_PATH": "config-components.yaml",
                              "SLURM_SYNC_WALDUR_CONCURRENCY": "5"})
    api = waldur_api(settings)
    assert api.limiter.maximum == 5
    adapter = api.client.session.get_adapter("https://waldur.example.com/api/")
    assert adapter._pool_maxsize == 5  # as many kept-alive connections as calls in flight
    assert adapter.max_retries.limiter is api.limiter  # a retry waits out the deployment's pauses
