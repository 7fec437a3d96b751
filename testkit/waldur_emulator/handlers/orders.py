"""marketplace-orders/ (provider side) and the offering's orders list."""
from testkit.waldur_emulator import filters, orders as machine, serializers
from testkit.waldur_emulator.routes import Response, body_dict, detail_response, list_response, route


def _filtered_orders(request, offering_uuid=None):
    store, query, profile = request.store, request.query, request.profile
    predicate = (
        filters.Filter()
        .equal(offering_uuid or filters.uuid_value(query, "offering_uuid"), lambda o: o["offering_uuid"])
        .within(filters.choices(query, "state", profile.order_states), lambda o: o["state"])
        .within(filters.choices(query, "type", profile.order_types), lambda o: o["type"])
        .equal(filters.uuid_value(query, "resource_uuid"), lambda o: o["resource_uuid"])
        .equal(filters.uuid_value(query, "project_uuid"), lambda o: o["project_uuid"])
        .equal(filters.uuid_value(query, "customer_uuid"),
               lambda o: store.projects[o["project_uuid"]]["customer_uuid"])
        # row 4: ``modified`` means "at or after"; 7.0 silently ignores modified_before
        .at_least(filters.moment(query, "modified"), lambda o: o["modified"])
    )
    if profile.modified_before_filter:
        predicate.below(filters.moment(query, "modified_before"), lambda o: o["modified"])
        predicate.at_least(filters.moment(query, "modified_after"), lambda o: o["modified"])
    return list_response(request, predicate.apply(store.orders.values()), serializers.order)


@route("GET", "marketplace-orders/")
def list_orders(request):
    return _filtered_orders(request)


@route("GET", "marketplace-provider-offerings/{uuid}/orders/",
       enabled=lambda p: p.provider_offering_orders)
def list_offering_orders(request, uuid):
    return _filtered_orders(request, request.store.get("offerings", uuid)["uuid"])


@route("GET", "marketplace-orders/{uuid}/")
def get_order(request, uuid):
    return detail_response(request, request.store.get("orders", uuid), serializers.order)


def _action(transition, answer=lambda profile: None):
    def handler(request, uuid):
        transition(request.store, request.store.get("orders", uuid), body_dict(request))
        return Response(200, answer(request.profile))
    return handler


route("POST", "marketplace-orders/{uuid}/approve_by_provider/")(_action(
    machine.approve, lambda p: {"detail": "Order has been approved."} if p.approve_answers_detail else None))
route("POST", "marketplace-orders/{uuid}/reject_by_provider/")(_action(machine.reject))
route("POST", "marketplace-orders/{uuid}/set_state_done/")(
    _action(lambda store, order, body: machine.set_done(store, order)))
route("POST", "marketplace-orders/{uuid}/set_state_erred/")(_action(machine.set_erred))
