"""Component usage rules: which components, amounts and months a report may carry.

A usage is kept per resource, component and billing month; a new report for that
month replaces the value. On 7.0 ``date`` is ignored (row 11) and limit-type
components are accepted too.
"""
from testkit.waldur_emulator import errors
from testkit.waldur_emulator.formats import decimal_places, month_start, normalize_uuid, parse_decimal, parse_moment

USAGE_RESOURCE_STATES = ("OK", "Updating", "Terminating")


def clean_amount(value, field="amount"):
    """A non-negative decimal with at most 2 places (row 17), else a 400 for ``field``."""
    number = parse_decimal(value) if not isinstance(value, bool) else None
    if number is None:
        raise errors.bad_request({field: ["A valid number is required."]})
    if number < 0:
        raise errors.bad_request({field: ["Ensure this value is greater than or equal to 0."]})
    if decimal_places(number) > 2:
        raise errors.bad_request({field: ["Ensure that there are no more than 2 decimal places."]})
    return number


def uuid_from_reference(value) -> str:
    """Accept a bare uuid or an API URL ending in ``<uuid>/``."""
    text = str(value or "").rstrip("/")
    return normalize_uuid(text.rsplit("/", 1)[-1])


def resolve_resource(store, body):
    if body.get("plan_period"):
        wanted = uuid_from_reference(body["plan_period"])
        resource = next((r for r in store.resources.values() if r["plan_period_uuid"] == wanted), None)
        if resource is None:
            raise errors.bad_request({"plan_period": ["Object does not exist."]})
    elif body.get("resource"):
        resource = store.resources.get(uuid_from_reference(body["resource"]))
        if resource is None:
            raise errors.bad_request({"resource": ["Object does not exist."]})
    else:
        raise errors.bad_request({"non_field_errors": ["Either plan_period or resource should be provided."]})
    if resource["state"] not in USAGE_RESOURCE_STATES:
        raise errors.bad_request({"resource": ["Resource is not in valid state."]})
    return resource


def billing_moment(store, body):
    """The moment a report is filed under: its ``date`` on current, now on 7.0."""
    if store.profile.usage_date_ignored or not body.get("date"):
        return store.clock()
    moment = parse_moment(body["date"])
    if moment is None:
        raise errors.bad_request({"date": ["Datetime has wrong format."]})
    return moment


def clean_usages(store, resource, items):
    """Validated [(component, amount, description)] for the resource's offering."""
    if not isinstance(items, list) or not items:
        raise errors.bad_request({"usages": ["This field is required."]})
    offering = store.offerings[resource["offering_uuid"]]
    allowed = store.profile.usage_billing_types
    invalid = [str(i.get("type")) for i in items if not isinstance(i, dict)
               or not (store.component(offering, i.get("type")) or {}).get("billing_type") in allowed]
    if invalid:
        raise errors.bad_request({"non_field_errors": [
            f"These components are invalid: {', '.join(invalid)}."]})
    cleaned = []
    for item in items:
        component = store.component(offering, item["type"])
        amount = clean_amount(item.get("amount"))
        if (component["billing_type"] == "usage" and component.get("limit_period")
                and component.get("limit_amount") is not None
                and amount > parse_decimal(component["limit_amount"])):
            raise errors.bad_request({"non_field_errors": [
                f"Usage of {component['type']} exceeds the limit {component['limit_amount']}."]})
        cleaned.append((component, amount, str(item.get("description") or "")))
    return cleaned


def set_usage(store, body):
    resource = resolve_resource(store, body)
    cleaned = clean_usages(store, resource, body.get("usages"))
    moment = billing_moment(store, body)
    period = month_start(moment)
    for component, amount, description in cleaned:
        key = (resource["uuid"], component["type"], period)
        existing = store.usage_by_key.get(key)
        if existing:
            store.touch(existing, usage=amount, date=moment, description=description)
        else:
            store.usage_by_key[key] = store.new(
                "component_usages", resource_uuid=resource["uuid"], type=component["type"],
                usage=amount, date=moment, billing_period=period, description=description)


def set_user_usage(store, component_usage, item):
    """Create or replace one user's share of a component usage."""
    if not isinstance(item, dict):
        raise errors.bad_request({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    username = item.get("username")
    if not isinstance(username, str) or not username:
        raise errors.bad_request({"username": ["This field is required."]})
    amount = clean_amount(item.get("usage"), "usage")
    moment = parse_moment(item.get("date")) if item.get("date") else store.clock()
    user = item.get("user") or None
    key = (component_usage["uuid"], username)
    existing = store.user_usage_by_key.get(key)
    if existing:
        store.touch(existing, usage=amount, user=user, date=moment)
    else:
        store.user_usage_by_key[key] = store.new("user_usages", component_usage_uuid=component_usage["uuid"],
                                                 username=username, usage=amount, user=user, date=moment)
