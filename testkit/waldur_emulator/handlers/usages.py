"""marketplace-component-usages/ and marketplace-component-user-usages/."""
from testkit.waldur_emulator import errors, filters, serializers, usage
from testkit.waldur_emulator.formats import parse_moment
from testkit.waldur_emulator.routes import Response, body_dict, detail_response, list_response, route

USAGES = "marketplace-component-usages/"


@route("POST", USAGES + "set_usage/")
def set_usage(request):
    usage.set_usage(request.store, body_dict(request))
    return Response(201, None)


def _billing_period(query):
    value = filters.first(query, "billing_period")
    if not value:
        return None
    moment = parse_moment(value)
    if moment is None:
        raise errors.bad_request({"billing_period": ["Enter a valid date."]})
    return moment.date()


@route("GET", USAGES)
def list_usages(request):
    store, query = request.store, request.query
    date_after, date_before = filters.moment(query, "date_after"), filters.moment(query, "date_before")
    predicate = (
        filters.Filter()
        .equal(filters.uuid_value(query, "resource_uuid"), lambda u: u["resource_uuid"])
        .equal(filters.uuid_value(query, "offering_uuid"),
               lambda u: store.resources[u["resource_uuid"]]["offering_uuid"])
        .equal(_billing_period(query), lambda u: u["billing_period"])
        .within(set(query["type"]) if query.get("type") else None, lambda u: u["type"])
        .at_least(date_after and date_after.date(), lambda u: u["date"].date())
        .at_most(date_before and date_before.date(), lambda u: u["date"].date())
    )
    return list_response(request, predicate.apply(store.component_usages.values()),
                         serializers.component_usage)


@route("GET", USAGES + "{uuid}/")
def get_usage(request, uuid):
    return detail_response(request, request.store.get("component_usages", uuid),
                           serializers.component_usage)


@route("POST", USAGES + "{uuid}/set_user_usage/")
def set_user_usage(request, uuid):
    """One user per call; a second post for the same username replaces it (row 10)."""
    usage.set_user_usage(request.store, request.store.get("component_usages", uuid), body_dict(request))
    return Response(201, None)


@route("POST", USAGES + "{uuid}/set_user_usages/", enabled=lambda p: p.user_usages_plural)
def set_user_usages(request, uuid):
    store = request.store
    component_usage = store.get("component_usages", uuid)
    items = body_dict(request).get("usages")
    if not isinstance(items, list):
        raise errors.bad_request({"usages": ["This field is required."]})
    for item in items:
        usage.set_user_usage(store, component_usage, item)
    return Response(201, None)


@route("GET", "marketplace-component-user-usages/")
def list_user_usages(request):
    store, query = request.store, request.query
    predicate = (
        filters.Filter()
        .equal(filters.uuid_value(query, "component_usage_uuid"), lambda u: u["component_usage_uuid"])
        .equal(filters.uuid_value(query, "resource_uuid"),
               lambda u: store.component_usages[u["component_usage_uuid"]]["resource_uuid"])
        .equal(filters.first(query, "username"), lambda u: u["username"])
    )
    return list_response(request, predicate.apply(store.user_usages.values()), serializers.user_usage)
