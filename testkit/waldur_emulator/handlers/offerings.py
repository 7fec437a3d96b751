"""Provider offerings (with their components) and offering users."""
from testkit.waldur_emulator import errors, filters, serializers
from testkit.waldur_emulator.formats import new_uuid, normalize_uuid
from testkit.waldur_emulator.profiles import BILLING_TYPES
from testkit.waldur_emulator.routes import Response, body_dict, detail_response, list_response, route
from testkit.waldur_emulator.store import COMPONENT_DEFAULTS

OFFERINGS = "marketplace-provider-offerings/"
OFFERING_USERS = "marketplace-offering-users/"
COMPONENT_FIELDS = set(COMPONENT_DEFAULTS) | {"type", "name", "measured_unit"}


@route("GET", OFFERINGS)
def list_offerings(request):
    return list_response(request, request.store.offerings.values(), serializers.offering)


@route("GET", OFFERINGS + "{uuid}/")
def get_offering(request, uuid):
    return detail_response(request, request.store.get("offerings", uuid), serializers.offering)


def _component_changes(request, body, required):
    """Validated component fields from a create/update body (the profile's factor name)."""
    profile = request.profile
    changes = {k: v for k, v in body.items() if k in COMPONENT_FIELDS and k != "unit_factor"}
    if profile.component_factor_field in body:
        changes["unit_factor"] = body[profile.component_factor_field]
    missing = {k: ["This field is required."] for k in required if not body.get(k)}
    if missing:
        raise errors.bad_request(missing)
    if "billing_type" in changes and changes["billing_type"] not in BILLING_TYPES:
        raise errors.bad_request({"billing_type": [
            f'"{changes["billing_type"]}" is not a valid choice.']})
    if changes.get("limit_period") and changes["limit_period"] not in profile.limit_periods:
        raise errors.bad_request({"limit_period": [
            f'"{changes["limit_period"]}" is not a valid choice.']})
    return changes


def _duplicate_type(request):
    if request.profile.duplicate_component_status == 500:
        return errors.server_error()  # row 13: an IntegrityError on 7.0
    return errors.bad_request({"type": ["Offering component with this type already exists."]})


@route("POST", OFFERINGS + "{uuid}/create_offering_component/")
def create_component(request, uuid):
    store = request.store
    offering = store.get("offerings", uuid)
    changes = _component_changes(request, body_dict(request),
                                 ("billing_type", "type", "name", "measured_unit"))
    if store.component(offering, changes["type"]):
        raise _duplicate_type(request)
    record = dict(COMPONENT_DEFAULTS, uuid=new_uuid())
    record.update(changes)
    offering["components"].append(record)
    store.touch(offering)
    return Response(201, serializers.component(store, record))


@route("POST", OFFERINGS + "{uuid}/update_offering_component/")
def update_component(request, uuid):
    store = request.store
    offering = store.get("offerings", uuid)
    body = body_dict(request)
    if not body.get("uuid"):
        raise errors.bad_request({"uuid": ["This field is required."]})
    record = next((c for c in offering["components"]
                   if c["uuid"] == normalize_uuid(body["uuid"])), None)
    if record is None:
        raise errors.not_found("OfferingComponent")
    changes = _component_changes(request, body, ())
    other = store.component(offering, changes.get("type", record["type"]))
    if other is not None and other is not record:
        raise _duplicate_type(request)
    record.update(changes)
    store.touch(offering)
    return Response(200, serializers.component(store, record))


def _visible_offering_users(request):
    """Row 15: on 7.0 a provider sees them only where it may manage offering users."""
    store = request.store
    users = store.offering_users.values()
    if request.profile.offering_users_need_provider_management:
        users = [u for u in users if store.offerings[u["offering_uuid"]]["plugin_options"]
                 .get("service_provider_can_create_offering_user")]
    return users


@route("GET", OFFERING_USERS)
def list_offering_users(request):
    query = request.query
    predicate = (
        filters.Filter()
        .equal(filters.uuid_value(query, "offering_uuid"), lambda u: u["offering_uuid"])
        .equal(filters.uuid_value(query, "user_uuid"), lambda u: u["user_uuid"])
        .equal(filters.boolean(query, "is_restricted"), lambda u: u["is_restricted"])
        .equal(filters.first(query, "username"), lambda u: u["username"])
    )
    return list_response(request, predicate.apply(_visible_offering_users(request)),
                         serializers.offering_user)


def _visible_offering_user(request, uuid):
    record = request.store.get("offering_users", uuid)
    if record not in _visible_offering_users(request):
        raise errors.not_found("OfferingUser")
    return record


@route("GET", OFFERING_USERS + "{uuid}/")
def get_offering_user(request, uuid):
    return detail_response(request, _visible_offering_user(request, uuid), serializers.offering_user)


@route("PATCH", OFFERING_USERS + "{uuid}/")
def patch_offering_user(request, uuid):
    record = _visible_offering_user(request, uuid)
    username = body_dict(request).get("username")
    if username is not None:
        if not isinstance(username, str):
            raise errors.bad_request({"username": ["Not a valid string."]})
        request.store.touch(record, username=username)
    return detail_response(request, record, serializers.offering_user)
