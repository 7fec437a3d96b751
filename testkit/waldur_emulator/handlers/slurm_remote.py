"""marketplace-slurm-remote/{resource uuid}/… and the SLURM read-back lists.

The 7.0 server's provider path for allocation state, limits, associations and
per-user monthly usage (rows 6-10); present on the current profile too.
"""
from testkit.waldur_emulator import errors, filters, serializers
from testkit.waldur_emulator.allocations import allocation_of, set_state
from testkit.waldur_emulator.routes import Response, body_dict, list_response, required_field, route
from testkit.waldur_emulator.usage import clean_amount
from testkit.waldur_emulator.handlers.resources import validate_limits

REMOTE = "marketplace-slurm-remote/{uuid}/"


@route("POST", REMOTE + "set_state/")
def remote_set_state(request, uuid):
    set_state(request.store, uuid, body_dict(request).get("state"))
    return Response(200, {"status": "Allocation state has been changed."})


@route("POST", REMOTE + "set_limits/")
def remote_set_limits(request, uuid):
    """The whole body is the limits dict: ``{"cpu": 100, "mem": 200}``."""
    resource, _ = allocation_of(request.store, uuid)
    request.store.touch(resource, limits=validate_limits(body_dict(request), "non_field_errors"))
    return Response(200, {"status": "Allocation limits have been set."})


def _username(request):
    return required_field(request, "username", str, allow_empty=False)


def _association(store, resource, username):
    return next((a for a in store.associations.values()
                 if a["resource_uuid"] == resource["uuid"] and a["username"] == username), None)


@route("POST", REMOTE + "create_association/")
def create_association(request, uuid):
    store = request.store
    resource, _ = allocation_of(store, uuid)
    username = _username(request)
    if _association(store, resource, username):
        return Response(200, {"status": "Association already exists."})
    store.new("associations", resource_uuid=resource["uuid"], username=username)
    return Response(201, {"status": "Association has been created."})


@route("POST", REMOTE + "delete_association/")
def delete_association(request, uuid):
    store = request.store
    resource, _ = allocation_of(store, uuid)
    username = _username(request)
    association = _association(store, resource, username)
    if association is None:
        raise errors.bad_request({"detail": "Association does not exist."})
    del store.associations[association["uuid"]]
    return Response(200, {"status": "Association has been deleted."})


def _month_and_year(body):
    try:
        month, year = int(body.get("month")), int(body.get("year"))
    except (TypeError, ValueError):
        raise errors.bad_request({"month": ["A valid integer is required."]}) from None
    if not 1 <= month <= 12:
        raise errors.bad_request({"month": ["Ensure this value is less than or equal to 12."]})
    return month, year


@route("POST", REMOTE + "set_usage/")
def remote_set_usage(request, uuid):
    """Update-or-create per allocation, username and explicit month (row 10)."""
    store = request.store
    resource, _ = allocation_of(store, uuid)
    body = body_dict(request)
    username = _username(request)
    month, year = _month_and_year(body)
    if store.profile.remote_usage_strict:
        _strict_remote_usage(store, resource, body)
    amounts = {k: clean_amount(body.get(k, 0), k) for k in ("cpu_usage", "ram_usage", "gpu_usage")}
    existing = next((u for u in store.slurm_user_usages.values()
                     if u["resource_uuid"] == resource["uuid"] and u["username"] == username
                     and (u["month"], u["year"]) == (month, year)), None)
    if existing:
        store.touch(existing, user=body.get("user"), **amounts)
    else:
        store.new("slurm_user_usages", resource_uuid=resource["uuid"], username=username,
                  month=month, year=year, user=body.get("user"), **amounts)
    return Response(200, {"status": "Usage has been set."})


def _strict_remote_usage(store, resource, body):
    """Row 18, as a real 7.0.7 answered: integer fields (a decimal is a 400), ``user`` read with body["user"]
    (a KeyError, so a 500, without it), and a post-save hook reading ``<type>_usage`` for every component of
    the offering (a 500 for any type but cpu, ram and gpu): nothing is kept in either 500 case."""
    for field in ("cpu_usage", "ram_usage", "gpu_usage"):
        value = body.get(field, 0)
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise errors.bad_request({field: ["A valid integer is required."]})
    if "user" not in body:
        raise errors.server_error("KeyError: 'user'")
    offering = store.offerings[resource["offering_uuid"]]
    odd = [c["type"] for c in offering["components"] if c["type"] not in ("cpu", "ram", "gpu")]
    if odd:
        raise errors.server_error(f"'AllocationUserUsage' object has no attribute '{odd[0]}_usage'")


def _allocation_filter(request, get_resource_uuid):
    """``allocation_uuid`` names the allocation; the contract also passes the
    marketplace resource uuid there, so both are accepted."""
    wanted = filters.uuid_value(request.query, "allocation_uuid")
    if wanted is None:
        return None
    store = request.store
    def matches(record):
        resource = store.resources[get_resource_uuid(record)]
        return wanted in (resource["uuid"], (resource["allocation"] or {}).get("uuid"))
    return matches


def _list_slurm(request, table, render):
    store = request.store
    records = list(getattr(store, table).values())
    matches = _allocation_filter(request, lambda r: r["resource_uuid"])
    if matches:
        records = [r for r in records if matches(r)]
    username = filters.first(request.query, "username")
    if username:
        records = [r for r in records if r["username"] == username]
    return list_response(request, records, render)


@route("GET", "slurm-associations/")
def list_associations(request):
    return _list_slurm(request, "associations", serializers.association)


@route("GET", "slurm-allocation-user-usages/")
def list_slurm_user_usages(request):
    return _list_slurm(request, "slurm_user_usages", serializers.slurm_user_usage)


@route("GET", "version/")
def version(request):
    """Staff-only on Waldur (row 16): a provider token cannot read it."""
    raise errors.forbidden()
