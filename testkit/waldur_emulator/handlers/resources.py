"""marketplace-provider-resources/: list, detail and the provider's resource actions."""
from testkit.waldur_emulator import errors, filters, serializers
from testkit.waldur_emulator.formats import parse_decimal
from testkit.waldur_emulator.profiles import RESOURCE_STATES
from testkit.waldur_emulator.routes import Response, body_dict, detail_response, list_response, required_field, route

BASE = "marketplace-provider-resources/"


@route("GET", BASE)
def list_resources(request):
    store, query = request.store, request.query
    predicate = (
        filters.Filter()
        .equal(filters.uuid_value(query, "offering_uuid"), lambda r: r["offering_uuid"])
        .within(filters.choices(query, "state", RESOURCE_STATES), lambda r: r["state"])
        .equal(filters.first(query, "backend_id"), lambda r: r["backend_id"])
        .equal(filters.uuid_value(query, "project_uuid"), lambda r: r["project_uuid"])
        .equal(filters.uuid_value(query, "customer_uuid"),
               lambda r: store.projects[r["project_uuid"]]["customer_uuid"])
        .equal(filters.first(query, "name_exact"), lambda r: r["name"])
    )
    return list_response(request, predicate.apply(store.resources.values()), serializers.resource)


@route("GET", BASE + "{uuid}/")
def get_resource(request, uuid):
    return detail_response(request, request.store.get("resources", uuid), serializers.resource)


@route("POST", BASE + "{uuid}/set_backend_id/")
def set_backend_id(request, uuid):
    resource = request.store.get("resources", uuid)
    request.store.touch(resource, backend_id=required_field(request, "backend_id", str))
    return Response(200, {"status": "Resource backend_id has been changed."})


@route("POST", BASE + "{uuid}/set_backend_metadata/")
def set_backend_metadata(request, uuid):
    resource = request.store.get("resources", uuid)
    metadata = required_field(request, "backend_metadata", dict)
    request.store.touch(resource, backend_metadata=dict(metadata))
    return Response(200, {"status": "Resource backend_metadata has been changed."})


def validate_limits(limits, field="limits"):
    """Limits are a dict of component type -> non-negative integer."""
    if not isinstance(limits, dict):
        raise errors.bad_request({field: ["Expected a dictionary of items."]})
    clean = {}
    for key, value in limits.items():
        number = parse_decimal(value) if not isinstance(value, bool) else None
        if number is None or number < 0 or number != int(number):
            raise errors.bad_request({field: [f"Invalid limit for {key}: {value!r}."]})
        clean[str(key)] = int(number)
    return clean


@route("POST", BASE + "{uuid}/set_limits/", enabled=lambda p: p.provider_set_limits)
def set_limits(request, uuid):
    resource, body = request.store.get("resources", uuid), body_dict(request)
    request.store.touch(resource, limits=validate_limits(body.get("limits")))
    return Response(200, {"status": "Resource limits have been set."})


@route("POST", BASE + "{uuid}/set_as_erred/")
def set_as_erred(request, uuid):
    resource, body = request.store.get("resources", uuid), body_dict(request)
    if request.profile.provider_set_as_erred_forbidden:
        raise errors.forbidden()  # row 7: staff only on 7.0
    request.store.touch(resource, state="Erred", error_message=body.get("error_message", "") or "",
                        error_traceback=body.get("error_traceback", "") or "")
    return Response(200, {"status": "Resource has been marked as erred."})


@route("POST", BASE + "{uuid}/set_as_ok/", enabled=lambda p: p.provider_set_as_ok)
def set_as_ok(request, uuid):
    resource = request.store.get("resources", uuid)
    request.store.touch(resource, state="OK", error_message="", error_traceback="")
    return Response(200, {"status": "Resource has been marked as OK."})


@route("POST", BASE + "{uuid}/refresh_last_sync/", enabled=lambda p: p.provider_refresh_last_sync)
def refresh_last_sync(request, uuid):
    resource = request.store.get("resources", uuid)
    resource["last_sync"] = request.store.clock()
    return Response(200, {"status": "Last sync has been refreshed."})


@route("GET", BASE + "{uuid}/team/")
def team(request, uuid):
    """Not paginated in Waldur: the whole team in one answer."""
    store = request.store
    resource = store.get("resources", uuid)
    members = [serializers.team_member(store, resource, user, membership)
               for user, membership in store.team_of(resource)]
    return Response(200, filters.select_fields(members, request.query))


@route("GET", BASE + "{uuid}/plan_periods/")
def plan_periods(request, uuid):
    resource = request.store.get("resources", uuid)
    return Response(200, [serializers.plan_period(request.store, resource)])
