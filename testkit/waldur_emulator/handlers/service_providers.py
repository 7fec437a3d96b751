"""marketplace-service-providers/: the provider record of an offering's owner and its project permissions.

``project_permissions`` lists the active project roles of every project that holds a
non-terminated resource of the provider's (shared) offerings, as Waldur's
ServiceProviderViewSet does; only the provider customer's owners may read it (403 otherwise,
played by ``store.token_is_provider_owner = False``).
"""
from testkit.waldur_emulator import errors, filters
from testkit.waldur_emulator.formats import iso
from testkit.waldur_emulator.routes import list_response, route

BASE = "marketplace-service-providers/"


def _provider(store, record):
    customer = store.customers[record["customer_uuid"]]
    return {"uuid": record["uuid"], "url": f"{store.base_url}{BASE}{record['uuid']}/",
            "customer": f"{store.base_url}customers/{customer['uuid']}/", "customer_uuid": customer["uuid"],
            "customer_name": customer["name"], "customer_abbreviation": "", "description": "",
            "enable_notifications": True, "image": None, "organization_groups": [],
            "created": iso(record["created"])}


@route("GET", BASE)
def list_providers(request):
    predicate = filters.Filter().equal(filters.uuid_value(request.query, "customer_uuid"),
                                       lambda r: r["customer_uuid"])
    return list_response(request, predicate.apply(request.store.service_providers.values()), _provider)


def _permission(store, row):
    return {k: v for k, v in row.items() if k != "seq"}


@route("GET", BASE + "{uuid}/project_permissions/")
def project_permissions(request, uuid):
    store = request.store
    provider = store.get("service_providers", uuid)
    if not store.token_is_provider_owner:
        raise errors.forbidden()
    offerings = {o["uuid"] for o in store.offerings.values() if o["customer_uuid"] == provider["customer_uuid"]}
    projects = sorted({r["project_uuid"] for r in store.resources.values()
                       if r["offering_uuid"] in offerings and r["state"] != "Terminated"})
    rows = []
    for project_uuid in projects:
        project = store.projects[project_uuid]
        customer = store.customers[project["customer_uuid"]]
        for user_uuid, membership in store.team.get(project_uuid, {}).items():
            user = store.users[user_uuid]
            rows.append({
                "seq": len(rows) + 1, "role": membership["role"], "created": iso(project["created"]),
                "expiration_time": membership["expiration_time"], "created_by": None,
                "created_by_full_name": None, "created_by_username": None,
                "project": f"{store.base_url}projects/{project_uuid}/", "project_uuid": project_uuid,
                "project_name": project["name"], "project_created": iso(project["created"]),
                "customer_uuid": customer["uuid"], "customer_name": customer["name"],
                "user": f"{store.base_url}users/{user_uuid}/", "user_full_name": user["full_name"],
                "user_native_name": "", "user_username": user["username"], "user_uuid": user_uuid,
                "user_email": user["email"],
            })
    return list_response(request, rows, _permission)
