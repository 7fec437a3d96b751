"""The Waldur emulator, driven through python-waldur-client 0.6.4 as the product does.

Calls the client has no method for go through its own ``_post``/``_get_all`` helpers,
so the wire behaviour (retries, Link parsing, error handling) is the client's.
"""
import subprocess
import sys
import time
import types
import uuid
from datetime import datetime

import pytest
import requests
from waldur_client import Endpoints, WaldurClient, WaldurClientException

BOTH = pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
ON_7_0 = pytest.mark.parametrize("waldur_profile", ["7.0"])


@pytest.fixture
def world(waldur):
    customer = waldur.add_customer("Big Lab")
    project = waldur.add_project(customer["uuid"], "Genomics")
    offering = waldur.add_offering("SLURM", components=[
        {"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
        {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage",
         "limit_period": "month", "limit_amount": 1000},
        {"type": "nodes", "name": "Nodes", "measured_unit": "nodes", "billing_type": "limit"},
    ])
    return types.SimpleNamespace(customer=customer, project=project, offering=offering,
                                 offering_uuid=offering["uuid"], project_uuid=project["uuid"])


@pytest.fixture
def client(waldur_client, waldur_no_sleep):
    return waldur_client


def status_of(call, *args, **kwargs):
    """Run a client call; the HTTP status it failed with (None if it succeeded)."""
    try:
        call(*args, **kwargs)
    except WaldurClientException as error:
        text = str(error)
        marker = "Status: "
        if marker in text:
            return int(text.split(marker)[1].split(".")[0])
        if "limit of retries" in text:
            return 409
        raise
    return None


def post(client, endpoint, uuid_, action, body=None, valid=(200,)):
    url = client._build_resource_url(endpoint, uuid_, action)
    return client._post(url, valid_states=list(valid), json=body)


def create_order(waldur, world, **kwargs):
    return waldur.create_order(world.offering_uuid, world.project_uuid, **kwargs)


def running_resource(waldur, world, name="alloc", limits=None):
    return waldur.add_resource(world.offering_uuid, world.project_uuid, name,
                               limits=limits or {"cpu": 10, "mem": 20, "nodes": 1})


def set_usage(client, resource_uuid, usages, date=None):
    body = {"resource": resource_uuid, "usages": usages}
    if date:
        body["date"] = date
    url = client._build_url(f"{Endpoints.MarketplaceComponentUsage}/set_usage/")
    return client._post(url, valid_states=[201], json=body)


# ------------------------------------------------------------------ listing
def test_orders_are_paged_and_collected_across_pages(waldur, world, client):
    created = {create_order(waldur, world, attributes={"name": f"a{i}"})["uuid"] for i in range(25)}
    orders = client.list_orders({"offering_uuid": world.offering_uuid, "page_size": 10})
    assert {o["uuid"] for o in orders} == created and len(orders) == 25
    pages = [r.query.get("page", ["1"])[0] for r in waldur.requests]
    assert pages == ["1", "2", "3"]


def test_link_header_lists_first_prev_next_last(waldur, world):
    for i in range(5):
        create_order(waldur, world)
    headers = {"Authorization": f"token {waldur.token}"}
    url = waldur.url + "marketplace-orders/"
    first = requests.get(url, params={"page_size": 2}, headers=headers)
    middle = requests.get(url, params={"page_size": 2, "page": 2}, headers=headers)
    last = requests.get(url, params={"page_size": 2, "page": 3}, headers=headers)
    rels = lambda r: [part.split("; ")[1] for part in r.headers["Link"].split(", ")]  # noqa: E731
    assert rels(first) == ['rel="first"', 'rel="next"', 'rel="last"']
    assert rels(middle) == ['rel="first"', 'rel="prev"', 'rel="next"', 'rel="last"']
    assert rels(last) == ['rel="first"', 'rel="prev"', 'rel="last"']
    assert first.headers["X-Result-Count"] == "5" and len(first.json()) == 2
    assert requests.get(url, params={"page": 9}, headers=headers).status_code == 404


def test_ordering_parameter(waldur, world, client):
    uuids = []
    for day in (3, 1, 2):
        waldur.now = lambda day=day: datetime(2024, 10, day)
        uuids.append(create_order(waldur, world)["uuid"])
    assert [o["uuid"] for o in client.list_orders()] == uuids[::-1]  # newest first
    by_created = [o["uuid"] for o in client.list_orders({"o": "created"})]
    assert by_created == [uuids[1], uuids[2], uuids[0]]
    assert [o["uuid"] for o in client.list_orders({"o": "-created"})] == by_created[::-1]


def test_page_size_is_capped_at_300(waldur, world, client):
    for i in range(301):
        create_order(waldur, world)
    assert len(client.list_orders({"page_size": 1000})) == 301
    assert waldur.count("GET", "marketplace-orders") == 2


def test_result_count_and_field_selection(waldur, world, client):
    for name in ("a", "b", "c"):
        running_resource(waldur, world, name)
    assert client.count_marketplace_provider_resources() == 3
    listed = client.list_marketplace_provider_resources(offering_uuid=world.offering_uuid,
                                                         fields=["uuid", "name"])
    assert sorted(r["name"] for r in listed) == ["a", "b", "c"]
    assert all(set(r) == {"uuid", "name"} for r in listed)


def test_order_and_resource_filters(waldur, world, client):
    pending = create_order(waldur, world)
    done = create_order(waldur, world, state="done")
    update = create_order(waldur, world, type="Update", resource_uuid=done["marketplace_resource_uuid"],
                          limits={"cpu": 5})
    both = client.list_orders({"offering_uuid": world.offering_uuid,
                               "state": ["pending-provider", "executing"]})
    assert {o["uuid"] for o in both} == {pending["uuid"], update["uuid"]}
    assert [o["uuid"] for o in client.list_orders({"type": "Update"})] == [update["uuid"]]
    assert [o["uuid"] for o in client.list_orders(
        {"resource_uuid": done["marketplace_resource_uuid"], "state": "done"})] == [done["uuid"]]
    assert update["attributes"]["old_limits"] == done["limits"]
    ok = client.list_marketplace_provider_resources(state="OK", offering_uuid=world.offering_uuid)
    assert [r["uuid"] for r in ok] == [done["marketplace_resource_uuid"]]
    assert status_of(client.list_orders, {"state": "bogus"}) == 400


@BOTH
def test_modified_filters_per_generation(waldur, world, client, waldur_profile):
    waldur.now = lambda: datetime(2024, 10, 1, 12, 0)
    old = create_order(waldur, world)
    waldur.now = lambda: datetime(2024, 10, 5, 12, 0)
    new = create_order(waldur, world)
    since = client.list_orders({"modified": "2024-10-05T12:00:00Z"})
    assert [o["uuid"] for o in since] == [new["uuid"]]  # at or after
    before = {o["uuid"] for o in client.list_orders({"modified_before": "2024-10-03T00:00:00Z"})}
    expected = {old["uuid"]} if waldur_profile == "current" else {old["uuid"], new["uuid"]}
    assert before == expected


@ON_7_0
def test_7_0_lacks_restore_and_pending_start_date(waldur, world, client):
    assert status_of(client.list_orders, {"state": "pending-start-date"}) == 400
    assert status_of(client.list_orders, {"type": "Restore"}) == 400
    with pytest.raises(ValueError):
        create_order(waldur, world, type="Restore", resource_uuid=running_resource(waldur, world)["uuid"])
    assert status_of(client._get_all, client._build_resource_url(
        Endpoints.MarketplaceProviderOffering, world.offering_uuid, "orders")) == 404


def test_offering_orders_list_on_current(waldur, world, client):
    order = create_order(waldur, world)
    other = waldur.add_offering("Other")
    waldur.create_order(other["uuid"], world.project_uuid)
    url = client._build_resource_url(Endpoints.MarketplaceProviderOffering, world.offering_uuid, "orders")
    assert [o["uuid"] for o in client._get_all(url)] == [order["uuid"]]


# ------------------------------------------------------------------ order state machine
@BOTH
def test_create_order_approve_then_done(waldur, world, client):
    order = create_order(waldur, world, limits={"cpu": 10}, attributes={"name": "alloc1"})
    resource_uuid = order["marketplace_resource_uuid"]
    assert waldur.get_resource(resource_uuid)["state"] == "Creating"
    assert waldur.get_resource(resource_uuid)["name"] == "alloc1"
    client.marketplace_order_approve_by_provider(order["uuid"])
    assert client.get_order(order["uuid"])["state"] == "executing"
    client.marketplace_order_set_state_done(order["uuid"])
    assert client.get_order(order["uuid"])["state"] == "done"
    resource = client.get_marketplace_provider_resource(resource_uuid)
    assert resource["state"] == "OK" and resource["limits"] == {"cpu": 10}


@BOTH
def test_terminate_order_terminates_the_resource(waldur, world, client):
    resource = running_resource(waldur, world)
    order = create_order(waldur, world, type="Terminate", resource_uuid=resource["uuid"])
    client.marketplace_order_approve_by_provider(order["uuid"])
    assert waldur.get_resource(resource["uuid"])["state"] == "Terminating"
    client.marketplace_order_set_state_done(order["uuid"])
    assert waldur.get_resource(resource["uuid"])["state"] == "Terminated"


def test_update_order_sets_new_limits_on_current(waldur, world, client):
    resource = running_resource(waldur, world)
    order = create_order(waldur, world, type="Update", resource_uuid=resource["uuid"],
                         limits={"cpu": 99, "mem": 20, "nodes": 1})
    client.marketplace_order_approve_by_provider(order["uuid"])
    assert waldur.get_resource(resource["uuid"])["state"] == "Updating"
    client.marketplace_order_set_state_done(order["uuid"])
    assert waldur.resource_limits(resource["uuid"]) == {"cpu": 99, "mem": 20, "nodes": 1}


def test_restore_order_on_current(waldur, world, client):
    resource = running_resource(waldur, world)
    waldur.set_resource_state(resource["uuid"], "Terminated")
    order = create_order(waldur, world, type="Restore", resource_uuid=resource["uuid"])
    client.marketplace_order_approve_by_provider(order["uuid"])
    client.marketplace_order_set_state_done(order["uuid"])
    assert waldur.get_resource(resource["uuid"])["state"] == "OK"


def test_illegal_transition_is_400_on_current(waldur, world, client, waldur_no_sleep):
    order = create_order(waldur, world)
    assert status_of(client.marketplace_order_set_state_done, order["uuid"]) == 400
    assert status_of(client.marketplace_order_set_state_erred, order["uuid"], "x", "y") == 400
    client.marketplace_order_approve_by_provider(order["uuid"])
    assert status_of(client.marketplace_order_approve_by_provider, order["uuid"]) == 400
    assert waldur_no_sleep == []
    body = waldur.requests[-1]
    assert body.status == 400


@ON_7_0
def test_illegal_transition_is_409_on_7_0_and_the_client_retries_with_real_sleeps(
        waldur, world, waldur_client):
    """The one test that lets python-waldur-client really sleep (3 x 2 s)."""
    order = create_order(waldur, world)
    started = time.monotonic()
    with pytest.raises(WaldurClientException, match="Valid states for operation: executing"):
        waldur_client.marketplace_order_set_state_done(order["uuid"])
    assert time.monotonic() - started >= 5.5
    assert waldur.count("POST", "set_state_done") == 3
    assert {r.status for r in waldur.requests} == {409}


@ON_7_0
def test_wrong_state_approve_on_7_0_answers_409_detail(waldur, world, client, waldur_no_sleep):
    order = create_order(waldur, world, state="executing")
    assert status_of(client.marketplace_order_approve_by_provider, order["uuid"]) == 409
    assert waldur_no_sleep == [2, 2, 2]
    response = requests.post(f"{waldur.url}marketplace-orders/{order['uuid']}/reject_by_provider/",
                             headers={"Authorization": f"token {waldur.token}"})
    assert response.status_code == 409
    assert response.json() == {"detail": "Valid states for operation: pending-provider."}


@BOTH
def test_set_state_erred(waldur, world, client, waldur_profile):
    executing = create_order(waldur, world, state="executing")
    client.marketplace_order_set_state_erred(executing["uuid"], "boom", "trace")
    order = waldur.get_order(executing["uuid"])
    assert order["state"] == "erred" and order["error_message"] == "boom"
    assert waldur.get_resource(executing["marketplace_resource_uuid"])["state"] == "Erred"
    pending = create_order(waldur, world)
    status = status_of(client.marketplace_order_set_state_erred, pending["uuid"], "boom", "trace")
    assert status == (400 if waldur_profile == "current" else None)
    assert waldur.get_order(pending["uuid"])["state"] == "pending-provider"
    missing = status_of(post, client, Endpoints.MarketplaceOrder, create_order(
        waldur, world, state="executing")["uuid"], "set_state_erred", {"error_message": "x"})
    assert missing == (None if waldur_profile == "current" else 500)


@BOTH
def test_reject_create(waldur, world, client, waldur_profile):
    order = create_order(waldur, world)
    client.marketplace_order_reject_by_provider(order["uuid"])
    assert waldur.get_order(order["uuid"])["state"] == "rejected"
    state = waldur.get_resource(order["marketplace_resource_uuid"])["state"]
    assert state == ("Creating" if waldur_profile == "current" else "Terminated")


@ON_7_0
def test_7_0_update_errs_until_allocation_reported_ok(waldur, world, client):
    """Rows 8, 20, 21, 22: the allocation state machine of a real 7.0.7 server."""
    create = create_order(waldur, world, limits={"cpu": 1})
    resource_uuid = create["marketplace_resource_uuid"]
    remote = lambda action, body, valid=(200,): post(  # noqa: E731
        client, Endpoints.MarketplaceSlurmRemote, resource_uuid, action, body, valid)
    assert status_of(remote, "set_state", {"state": "creating"}) == 404  # no allocation yet
    client.marketplace_order_approve_by_provider(create["uuid"])
    assert waldur.allocation_state(resource_uuid) == "Creation Scheduled"

    early = create_order(waldur, world, type="Update", resource_uuid=resource_uuid, limits={"cpu": 2})
    client.marketplace_order_approve_by_provider(early["uuid"])  # answers 200...
    erred = waldur.get_order(early["uuid"])  # ...and errs the order inside that call (row 22)
    assert erred["state"] == "erred" and erred["error_message"] == \
        "Can't switch from state '5' using method 'schedule_updating'"

    remote("set_state", {"state": "creating"})
    # row 21: ok from Creating completes the Create order in that call; set_state_done then answers 409
    remote("set_state", {"state": "ok"})
    assert waldur.allocation_state(resource_uuid) == "OK"
    assert waldur.get_order(create["uuid"])["state"] == "done" and waldur.get_resource(resource_uuid)["state"] == "OK"
    assert status_of(client.marketplace_order_set_state_done, create["uuid"]) == 409
    # row 20: a transition the allocation cannot take is a 409 naming the state number; ok is allowed from any
    assert status_of(remote, "set_state", {"state": "creating"}) == 409
    update = create_order(waldur, world, type="Update", resource_uuid=resource_uuid, limits={"cpu": 3})
    client.marketplace_order_approve_by_provider(update["uuid"])
    assert waldur.allocation_state(resource_uuid) == "Update Scheduled"  # row 22
    response = client._post(f"{waldur.url}marketplace-slurm-remote/{resource_uuid}/set_state/",
                            valid_states=[409], json={"state": "creating"})
    assert response == {"detail": "Allocation state can not be changed from 1 to creating."}
    remote("set_state", {"state": "ok"})
    client.marketplace_order_set_state_done(update["uuid"])
    assert waldur.get_order(update["uuid"])["state"] == "done"
    assert waldur.resource_limits(resource_uuid) == {"cpu": 3}


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_erred_resource_stays_erred_when_its_allocation_is_set_ok(waldur, world, client):
    """Row 23: slurm-remote set_state ok changes the allocation only; usage for an Erred resource is a 400."""
    resource = running_resource(waldur, world)
    waldur.set_resource_state(resource["uuid"], "Erred")
    post(client, Endpoints.MarketplaceSlurmRemote, resource["uuid"], "set_state", {"state": "ok"})
    assert waldur.get_resource(resource["uuid"])["state"] == "Erred"
    assert status_of(set_usage, client, resource["uuid"], [{"type": "cpu", "amount": "1"}]) == 400


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_remote_per_user_usage_is_integer_needs_user_and_breaks_on_other_types(waldur, world, client):
    """Row 18, as measured: decimals 400, no ``user`` 500, any component type but cpu/ram/gpu 500."""
    resource = running_resource(waldur, world)
    remote = lambda body: post(client, Endpoints.MarketplaceSlurmRemote, resource["uuid"], "set_usage", body)  # noqa
    body = {"username": "alice", "month": 10, "year": 2024, "cpu_usage": 1, "ram_usage": 2, "gpu_usage": 0}
    assert status_of(remote, dict(body, gpu_usage="1.5", user="u")) == 400
    assert status_of(remote, body) == 500  # no user: KeyError
    assert status_of(remote, dict(body, user="u")) == 500  # the world's offering has a 'mem' component
    assert waldur.slurm_user_usages(resource["uuid"]) == []


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_limit_amount_caps_the_sum_of_all_resources_limits(waldur, world):
    """Row 24: limit_amount of a limit component is an offering-wide cap at order time."""
    offering = waldur.add_offering("capped", components=[
        {"type": "node", "name": "Nodes", "measured_unit": "n", "billing_type": "limit", "limit_amount": 10}])
    project = world.project_uuid
    waldur.create_order(offering["uuid"], project, limits={"node": 6}, state="done")
    with pytest.raises(ValueError, match="Total limit exceeds threshold 10."):
        waldur.create_order(offering["uuid"], project, limits={"node": 5})


# ------------------------------------------------------------------ resources
@BOTH
def test_set_backend_id_and_metadata(waldur, world, client):
    resource = running_resource(waldur, world)
    answer = client.marketplace_provider_resource_set_backend_id(resource["uuid"], "hpc_alloc")
    assert answer == {"status": "Resource backend_id has been changed."}
    client.marketplace_provider_resource_set_backend_metadata(resource["uuid"], {"qos": "normal"})
    assert client.list_marketplace_provider_resources(fields=["backend_id"]) == [{"backend_id": "hpc_alloc"}]
    found = client.filter_marketplace_provider_resources({"backend_id": "hpc_alloc"})
    assert [r["uuid"] for r in found] == [resource["uuid"]]
    assert waldur.get_resource(resource["uuid"])["backend_metadata"] == {"qos": "normal"}


@BOTH
def test_resource_fields_per_generation(waldur, world, client, waldur_profile):
    resource = client.get_marketplace_provider_resource(running_resource(waldur, world)["uuid"])
    has_slugs = {"project_slug", "customer_slug"} <= set(resource)
    assert has_slugs == (waldur_profile == "current")
    assert create_order(waldur, world)["project_slug"] == "genomics"  # orders have them on both


def test_set_limits_on_current_provider_path(waldur, world, client):
    resource = running_resource(waldur, world)
    client.marketplace_provider_resource_set_limits(resource["uuid"], {"cpu": 100, "mem": 5})
    assert waldur.resource_limits(resource["uuid"]) == {"cpu": 100, "mem": 5}


@ON_7_0
def test_set_limits_on_7_0_goes_through_slurm_remote(waldur, world, client):
    order = create_order(waldur, world, limits={"cpu": 1})
    resource_uuid = order["marketplace_resource_uuid"]
    assert status_of(client.marketplace_provider_resource_set_limits, resource_uuid, {"cpu": 5}) == 404
    remote_limits = lambda: post(client, Endpoints.MarketplaceSlurmRemote, resource_uuid,  # noqa: E731
                                 "set_limits", {"cpu": 100, "mem": 200})
    assert status_of(remote_limits) == 404  # until approved
    client.marketplace_order_approve_by_provider(order["uuid"])
    remote_limits()
    assert waldur.resource_limits(resource_uuid) == {"cpu": 100, "mem": 200}


@BOTH
def test_resource_state_actions(waldur, world, client, waldur_profile):
    resource = running_resource(waldur, world)
    erred = status_of(client.marketplace_provider_resource_set_as_erred, resource["uuid"],
                      {"error_message": "x", "error_traceback": "y"})
    ok = status_of(client.marketplace_provider_resource_set_as_ok, resource["uuid"])
    sync = status_of(client.marketplace_provider_resource_refresh_last_sync, resource["uuid"])
    if waldur_profile == "current":
        assert (erred, ok, sync) == (None, None, None)
        assert waldur.get_resource(resource["uuid"])["last_sync"] is not None
    else:
        assert (erred, ok, sync) == (403, 404, 404)
    assert waldur.get_resource(resource["uuid"])["state"] == "OK"


@BOTH
def test_team_items(waldur, world, client, waldur_profile):
    resource = running_resource(waldur, world)
    alice, bob = waldur.add_user("alice", "Alice A"), waldur.add_user("bob")
    waldur.add_offering_user(world.offering_uuid, alice["uuid"], "alice_hpc")
    waldur.add_team_member(resource["uuid"], alice["uuid"], role="manager")
    waldur.add_team_member(resource["uuid"], bob["uuid"])
    team = {m["username"]: m for m in client.marketplace_provider_resource_get_team(resource["uuid"])}
    assert team["alice"]["offering_user_username"] == "alice_hpc" and team["alice"]["role"] == "manager"
    assert team["bob"]["offering_user_username"] is None
    assert ("offering_user_state" in team["alice"]) == (waldur_profile == "current")


def test_plan_periods(waldur, world, client):
    resource = running_resource(waldur, world)
    periods = client.marketplace_provider_resource_get_plan_periods(resource["uuid"])
    assert len(periods) == 1 and periods[0]["plan_uuid"] == resource["plan_uuid"]
    client.create_component_usages(plan_period_uuid=periods[0]["uuid"],
                                   usages=[{"type": "cpu", "amount": "1.5", "description": ""}])
    assert [u["usage"] for u in waldur.component_usages(resource["uuid"])] == ["1.50"]


# ------------------------------------------------------------------ offering users
@BOTH
def test_offering_users(waldur, world, client, waldur_profile):
    alice, bob = waldur.add_user("alice", email="a@x.org"), waldur.add_user("bob")
    ou_alice = waldur.add_offering_user(world.offering_uuid, alice["uuid"], "alice")
    waldur.add_offering_user(world.offering_uuid, bob["uuid"], "", is_restricted=True)
    free = client.list_remote_offering_users({"offering_uuid": world.offering_uuid, "is_restricted": "false"})
    assert [u["user_username"] for u in free] == ["alice"]
    assert ({"state", "user_email"} <= set(free[0])) == (waldur_profile == "current")
    client._patch_resource(Endpoints.MarketplaceOfferingUsers, ou_alice["uuid"], {"username": "al1"})
    assert waldur.get_offering_user(ou_alice["uuid"])["username"] == "al1"
    assert len(client.list_remote_offering_users({"offering_uuid": world.offering_uuid})) == 2


@ON_7_0
def test_7_0_hides_offering_users_unless_provider_manages_them(waldur, world, client):
    closed = waldur.add_offering("Closed", plugin_options={"service_provider_can_create_offering_user": False})
    user = waldur.add_user("u")
    waldur.add_offering_user(closed["uuid"], user["uuid"], "u")
    waldur.add_offering_user(world.offering_uuid, user["uuid"], "u")
    assert [u["offering_uuid"] for u in client.list_remote_offering_users()] == [world.offering_uuid]


# ------------------------------------------------------------------ usage
@BOTH
def test_set_usage_replaces_the_month_and_date_handling(waldur, world, client, waldur_profile):
    resource = running_resource(waldur, world)
    waldur.now = lambda: datetime(2024, 11, 3, 10, 0)
    set_usage(client, resource["uuid"], [{"type": "cpu", "amount": "12.34"}], date="2024-10-15T00:00:00Z")
    set_usage(client, resource["uuid"], [{"type": "cpu", "amount": "20"}], date="2024-10-20T00:00:00Z")
    month = "2024-10-01" if waldur_profile == "current" else "2024-11-01"
    listed = client.list_component_usages(resource["uuid"], billing_period=month)
    assert [(u["type"], u["usage"]) for u in listed] == [("cpu", "20.00")]
    other = "2024-11-01" if waldur_profile == "current" else "2024-10-01"
    assert client.list_component_usages(resource["uuid"], billing_period=other) == []
    assert len(waldur.component_usages(resource["uuid"])) == 1


def test_set_usage_without_date_files_under_this_month(waldur, world, client):
    resource = running_resource(waldur, world)
    waldur.now = lambda: datetime(2025, 2, 14)
    client.create_component_usages(resource_uuid=resource["uuid"],
                                   usages=[{"type": "cpu", "amount": 3, "description": "x"}])
    assert [u["billing_period"] for u in waldur.component_usages(resource["uuid"])] == ["2025-02-01"]
    by_date = client.list_component_usages(resource["uuid"], date_after="2025-02-01", date_before="2025-02-28")
    assert len(by_date) == 1


@BOTH
def test_usage_validation(waldur, world, client, waldur_profile):
    resource = running_resource(waldur, world)
    assert status_of(set_usage, client, resource["uuid"], [{"type": "cpu", "amount": "1.234"}]) == 400
    assert status_of(set_usage, client, resource["uuid"], [{"type": "mem", "amount": "1000.01"}]) == 400
    with pytest.raises(WaldurClientException, match="These components are invalid: nope"):
        set_usage(client, resource["uuid"], [{"type": "nope", "amount": "1"}])
    limit_type = status_of(set_usage, client, resource["uuid"], [{"type": "nodes", "amount": "1"}])
    assert limit_type == (400 if waldur_profile == "current" else None)
    waldur.set_resource_state(resource["uuid"], "Erred")
    with pytest.raises(WaldurClientException, match="Resource is not in valid state"):
        set_usage(client, resource["uuid"], [{"type": "cpu", "amount": "1"}])


def test_user_usages_plural_on_current(waldur, world, client):
    resource = running_resource(waldur, world)
    set_usage(client, resource["uuid"], [{"type": "cpu", "amount": "10"}])
    usage_uuid = waldur.component_usages(resource["uuid"])[0]["uuid"]
    body = {"usages": [{"username": "alice", "usage": "4"}, {"username": "bob", "usage": "6"}]}
    post(client, Endpoints.MarketplaceComponentUsage, usage_uuid, "set_user_usages", body, (201,))
    post(client, Endpoints.MarketplaceComponentUsage, usage_uuid, "set_user_usages",
         {"usages": [{"username": "alice", "usage": "5"}]}, (201,))
    listed = client._query_resource_list("marketplace-component-user-usages",
                                         {"component_usage_uuid": usage_uuid})
    assert sorted((u["username"], u["usage"]) for u in listed) == [("alice", "5.00"), ("bob", "6.00")]


@ON_7_0
def test_user_usage_singular_on_7_0(waldur, world, client):
    resource = running_resource(waldur, world)
    set_usage(client, resource["uuid"], [{"type": "cpu", "amount": "10"}])
    usage_uuid = waldur.component_usages(resource["uuid"])[0]["uuid"]
    assert status_of(post, client, Endpoints.MarketplaceComponentUsage, usage_uuid, "set_user_usages",
                     {"usages": [{"username": "alice", "usage": "4"}]}, (201,)) == 404
    client.create_component_user_usage(usage_uuid, "4", "alice")
    client.create_component_user_usage(usage_uuid, "7.5", "alice")
    assert [(u["username"], u["usage"]) for u in waldur.user_usages(resource["uuid"])] == [("alice", "7.50")]


@ON_7_0
def test_slurm_remote_associations_and_usage(waldur, world, client):
    resource = running_resource(waldur, world)
    remote = lambda action, body, valid=(200,): post(  # noqa: E731
        client, Endpoints.MarketplaceSlurmRemote, resource["uuid"], action, body, valid)
    remote("create_association", {"username": "alice"}, (201,))
    assert remote("create_association", {"username": "alice"}) == {"status": "Association already exists."}
    remote("create_association", {"username": "bob"}, (201,))
    remote("delete_association", {"username": "bob"})
    assert status_of(remote, "delete_association", {"username": "bob"}) == 400
    listed = client.list_slurm_associations({"allocation_uuid": resource["resource_uuid"]})
    assert [a["username"] for a in listed] == ["alice"] == waldur.slurm_associations(resource["uuid"])
    if waldur.profile == "current":
        usage = {"username": "alice", "month": 10, "year": 2024, "cpu_usage": "1.5", "ram_usage": "2",
                 "gpu_usage": "0"}
        remote("set_usage", usage)
        remote("set_usage", dict(usage, cpu_usage="3"))
        assert [u["cpu_usage"] for u in waldur.slurm_user_usages(resource["uuid"])] == ["3.00"]


# ------------------------------------------------------------------ offering components
@BOTH
def test_offering_components(waldur, world, client, waldur_profile):
    created = client.create_offering_component(world.offering_uuid, {
        "billing_type": "usage", "type": "storage", "name": "Storage", "measured_unit": "GB"})
    assert created["type"] == "storage" and len(created["uuid"]) == 32
    dup = status_of(client.create_offering_component, world.offering_uuid, {
        "billing_type": "usage", "type": "storage", "name": "Storage", "measured_unit": "GB"})
    assert dup == (400 if waldur_profile == "current" else 500)
    client.update_offering_component(world.offering_uuid, dict(created, name="Disk", limit_amount=5))
    offering = client.get_marketplace_provider_offering(world.offering_uuid)
    storage = next(c for c in offering["components"] if c["type"] == "storage")
    assert storage["name"] == "Disk" and storage["limit_amount"] == 5
    factor = "unit_factor" if waldur_profile == "current" else "factor"
    assert factor in storage and ({"unit_factor", "factor"} - {factor}).isdisjoint(storage)
    quarterly = status_of(client.create_offering_component, world.offering_uuid, {
        "billing_type": "usage", "type": "q", "name": "Q", "measured_unit": "h", "limit_period": "quarterly"})
    assert quarterly == (None if waldur_profile == "current" else 400)


# ------------------------------------------------------------------ auth, errors, faults
def test_token_is_required(waldur, world):
    assert status_of(WaldurClient(waldur.url, "wrong").list_orders) == 401
    response = requests.get(waldur.url + "marketplace-orders/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}
    assert requests.get(waldur.url + "version/", headers={
        "Authorization": f"token {waldur.token}"}).status_code == 403


def test_unknown_uuid_is_404(waldur, world, client):
    with pytest.raises(WaldurClientException, match="No Order matches the given query"):
        client.get_order(uuid.uuid4().hex)
    assert status_of(client.marketplace_provider_resource_set_backend_id, uuid.uuid4().hex, "x") == 404


def test_permissions_not_loaded_answers_403(waldur, world, client):
    waldur.provider_permissions_loaded = False
    assert status_of(client.list_orders) == 403


def test_fail_next_and_rate(waldur, world, client):
    waldur.faults.fail_next(2, status=503, path_contains="marketplace-orders")
    assert status_of(client.list_orders) == 503
    assert status_of(client.list_orders) == 503
    assert client.count_marketplace_provider_resources() == 0  # other paths unaffected
    assert client.list_orders() == []
    waldur.faults.fail_rate(0.5, status=500)
    failures = sum(status_of(client.list_orders) == 500 for _ in range(40))
    assert 5 < failures < 35
    waldur.faults.clear()
    assert client.list_orders() == []


def test_latency(waldur, world, client):
    waldur.faults.latency(0.2)
    started = time.monotonic()
    client.list_orders()
    assert time.monotonic() - started >= 0.2


def test_calls_are_served_concurrently(waldur, world, client):
    from concurrent.futures import ThreadPoolExecutor

    waldur.faults.latency(0.3)
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.list_orders(), range(6)))
    assert results == [[]] * 6 and time.monotonic() - started < 1.5


def test_request_log(waldur, world, client):
    order = create_order(waldur, world)
    client.list_orders({"offering_uuid": world.offering_uuid, "state": ["pending-provider", "executing"]})
    client.marketplace_order_approve_by_provider(order["uuid"])
    first, second = waldur.requests
    assert first.method == "GET" and first.query["state"] == ["pending-provider", "executing"]
    assert second.path == f"/api/marketplace-orders/{order['uuid']}/approve_by_provider/"
    assert waldur.count("POST") == 1 and waldur.count(path_contains="marketplace-orders") == 2


def test_standalone_runner_prints_url_token_and_offering():
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.waldur_emulator", "--port", "0", "--token", "T",
         "--profile", "7.0", "--seed", "demo"], stdout=subprocess.PIPE, text=True)
    try:
        lines = {}
        for line in process.stdout:
            if line.startswith("Ctrl-C"):
                break
            key, _, value = line.strip().partition("=")
            lines[key] = value
        client = WaldurClient(lines["WALDUR_API_URL"], "T")
        assert client.list_orders({"offering_uuid": lines["OFFERING_UUID"]})[0]["resource_name"] == "alloc1"
        assert lines["PROFILE"] == "7.0"
    finally:
        process.terminate()
        process.wait(timeout=5)
