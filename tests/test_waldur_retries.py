"""Transient Waldur answers are retried close to the call: a 5xx, a 429 or a dropped
connection costs that call a retry, not the batch or the cycle; a write whose answer was lost is
not done twice, because the repeat meets the state the first try reached."""
import pytest

from slurm_sync.waldur.api import WaldurAPI, WaldurHTTPError, WaldurUnavailable


@pytest.fixture
def api(waldur):
    offering = waldur.add_offering("SLURM")
    return waldur, offering, WaldurAPI(waldur.url, waldur.token, offering["uuid"])


def _order(waldur, offering):
    customer = waldur.add_customer("Acme", slug="acme")
    project = waldur.add_project(customer["uuid"], "Physics", slug="physics")
    return waldur.create_order(offering["uuid"], project["uuid"], limits={}, attributes={"name": "alloc"})


def _calls(waldur, fragment):
    return [(r.method, r.status) for r in waldur.log.snapshot() if fragment in r.path]


def test_a_read_answered_503_twice_succeeds_on_the_third_try(api):
    waldur, offering, client = api
    order = _order(waldur, offering)
    waldur.faults.fail_next(2, status=503, path_contains="marketplace-orders")
    assert [o["uuid"] for o in client.active_orders()] == [order["uuid"]]
    statuses = [status for method, status in _calls(waldur, "marketplace-orders")]
    assert statuses.count(503) == 2 and statuses[-1] == 200


def test_an_approve_whose_answer_was_lost_is_done_once(api):
    """The server approved, the proxy answered 502: the repeat answers 409/400 (wrong state), and the
    order is executing once, not approved twice."""
    waldur, offering, client = api
    order = _order(waldur, offering)
    waldur.faults.fail_next(1, status=502, path_contains="approve_by_provider", after=True)
    with pytest.raises(WaldurHTTPError) as raised:
        client.approve_order(order["uuid"])
    assert raised.value.wrong_state  # the repeat met the state the first try reached
    assert client.get_order(order["uuid"])["state"] == "executing"
    assert [s for m, s in _calls(waldur, "approve_by_provider")] == [502, raised.value.status]


def test_a_dropped_connection_is_retried(api):
    waldur, offering, client = api
    order = _order(waldur, offering)
    waldur.faults.drop_rate(1.0, path_contains="set_backend_id", after=False)
    with pytest.raises(WaldurUnavailable):
        client.set_backend_id(order["marketplace_resource_uuid"], "acc1")
    assert len(_calls(waldur, "set_backend_id")) == 4  # the call and 3 retries, then the task's retry
    waldur.faults.clear()
    waldur.faults.fail_next(1, status=503, path_contains="set_backend_id")
    client.set_backend_id(order["marketplace_resource_uuid"], "acc1")
    assert waldur.store.get("resources", order["marketplace_resource_uuid"])["backend_id"] == "acc1"


def test_retries_are_bounded_and_the_last_answer_is_raised(api):
    waldur, offering, client = api
    waldur.faults.fail_next(10, status=500, path_contains="marketplace-orders")
    with pytest.raises(WaldurHTTPError) as raised:
        client.active_orders()
    assert raised.value.status == 500 and raised.value.transient
    assert len(_calls(waldur, "marketplace-orders")) == 4


def test_a_refusal_is_not_retried(api):
    waldur, offering, client = api
    waldur.faults.fail_next(1, status=400, path_contains="marketplace-orders")
    with pytest.raises(WaldurHTTPError) as raised:
        client.active_orders()
    assert raised.value.status == 400 and len(_calls(waldur, "marketplace-orders")) == 1
