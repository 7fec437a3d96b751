"""Render stored records as the API shows them, per profile (row 12 of the table).

Each function takes the store and a record and returns a fresh JSON-ready dict.
"""
from testkit.waldur_emulator.formats import iso, render_decimal


def _url(store, endpoint, uuid):
    return f"{store.base_url}{endpoint}/{uuid}/"


def _owner_fields(store, project_uuid, slugs=True):
    project = store.projects[project_uuid]
    customer = store.customers[project["customer_uuid"]]
    fields = {
        "project_uuid": project["uuid"], "project_name": project["name"],
        "customer_uuid": customer["uuid"], "customer_name": customer["name"],
    }
    if slugs:
        fields.update(project_slug=project["slug"], customer_slug=customer["slug"])
    return fields


def _offering_fields(store, offering_uuid):
    offering = store.offerings[offering_uuid]
    return {"offering_uuid": offering["uuid"], "offering_name": offering["name"],
            "offering_type": offering["type"]}


def order(store, record):
    resource = store.resources[record["resource_uuid"]]
    allocation = resource["allocation"]
    data = {
        "uuid": record["uuid"], "url": _url(store, "marketplace-orders", record["uuid"]),
        "type": record["type"], "state": record["state"],
        "marketplace_resource_uuid": resource["uuid"],
        "resource_uuid": allocation["uuid"] if allocation else None,
        "resource_name": resource["name"], "resource_type": "SLURM.Allocation",
        "limits": dict(record["limits"]), "attributes": dict(record["attributes"]),
        "plan_uuid": record["plan_uuid"], "backend_id": record.get("backend_id", ""),
        "error_message": record["error_message"], "error_traceback": record["error_traceback"],
        "provider_rejection_comment": record["provider_rejection_comment"],
        "created": iso(record["created"]), "modified": iso(record["modified"]),
        "completed_at": iso(record["completed_at"]),
    }
    data.update(_offering_fields(store, record["offering_uuid"]))
    data.update(_owner_fields(store, record["project_uuid"]))
    return data


def resource(store, record):
    allocation = record["allocation"]
    data = {
        "uuid": record["uuid"], "url": _url(store, "marketplace-provider-resources", record["uuid"]),
        "name": record["name"], "backend_id": record["backend_id"], "state": record["state"],
        "limits": dict(record["limits"]), "attributes": dict(record["attributes"]),
        "plan_uuid": record["plan_uuid"], "paused": record["paused"],
        "downscaled": record["downscaled"], "restrict_member_access": record["restrict_member_access"],
        "end_date": record["end_date"], "backend_metadata": dict(record["backend_metadata"]),
        "error_message": record["error_message"], "error_traceback": record["error_traceback"],
        "resource_uuid": allocation["uuid"] if allocation else None,
        "resource_type": "SLURM.Allocation",
        "created": iso(record["created"]), "modified": iso(record["modified"]),
        # Waldur's default is the creation time; 7.0 rendering keeps null until synced
        "last_sync": iso(record["last_sync"] or (record["created"] if store.profile.schema_fields else None)),
    }
    if store.profile.resource_slugs:
        data["slug"] = record["slug"]
    data.update(_offering_fields(store, record["offering_uuid"]))
    data.update(_owner_fields(store, record["project_uuid"], slugs=store.profile.resource_slugs))
    return data


def team_member(store, resource_record, user, membership):
    offering_user = store.offering_user_for(resource_record["offering_uuid"], user["uuid"])
    data = {
        "url": _url(store, "users", user["uuid"]), "uuid": user["uuid"],
        "username": user["username"], "full_name": user["full_name"], "email": user["email"],
        "role": membership["role"], "expiration_time": membership["expiration_time"],
        "offering_user_username": offering_user["username"] if offering_user else None,
    }
    if store.profile.team_offering_user_state:
        data["offering_user_state"] = offering_user["state"] if offering_user else None
    return data


def offering_user(store, record):
    user = store.users[record["user_uuid"]]
    offering = store.offerings[record["offering_uuid"]]
    data = {
        "uuid": record["uuid"], "url": _url(store, "marketplace-offering-users", record["uuid"]),
        "username": record["username"], "user_uuid": user["uuid"],
        "user_username": user["username"], "user_full_name": user["full_name"],
        "offering_uuid": offering["uuid"], "offering_name": offering["name"],
        "is_restricted": record["is_restricted"],
        "created": iso(record["created"]), "modified": iso(record["modified"]),
    }
    if store.profile.offering_user_state_and_email:
        data.update(state=record["state"], user_email=user["email"])
    return data


def component(store, record):
    data = {k: v for k, v in record.items() if k != "unit_factor"}
    data[store.profile.component_factor_field] = record["unit_factor"]
    return data


def _legacy_modified(store, record):
    """``modified`` where the current schema has none (kept on the 7.0 profile, see profiles.schema_fields)."""
    return {} if store.profile.schema_fields else {"modified": iso(record["modified"])}


def offering(store, record):
    return {
        "uuid": record["uuid"], "url": _url(store, "marketplace-provider-offerings", record["uuid"]),
        "name": record["name"], "type": record["type"], "customer_uuid": record["customer_uuid"],
        "state": "Active", "plugin_options": dict(record["plugin_options"]),
        "components": [component(store, c) for c in record["components"]],
        "plans": [{"uuid": record["plan"]["uuid"], "name": record["plan"]["name"]}],
        "created": iso(record["created"]), **_legacy_modified(store, record),
    }


def component_usage(store, record):
    resource_record = store.resources[record["resource_uuid"]]
    offering_record = store.offerings[resource_record["offering_uuid"]]
    component_record = store.component(offering_record, record["type"]) or {}
    return {
        "uuid": record["uuid"], "type": record["type"],
        "name": component_record.get("name", record["type"]),
        "measured_unit": component_record.get("measured_unit", ""),
        "usage": render_decimal(record["usage"]), "description": record["description"],
        "date": iso(record["date"]), "billing_period": iso(record["billing_period"]),
        "resource_uuid": resource_record["uuid"], "resource_name": resource_record["name"],
        "offering_uuid": offering_record["uuid"], "recurring": False,
        "created": iso(record["created"]), **_legacy_modified(store, record),
    }


def user_usage(store, record):
    usage_record = store.component_usages[record["component_usage_uuid"]]
    return {
        "uuid": record["uuid"], "username": record["username"],
        "usage": render_decimal(record["usage"]), "user": record["user"],
        "component_usage": _url(store, "marketplace-component-usages", usage_record["uuid"]),
        "component_usage_uuid": usage_record["uuid"], "component_type": usage_record["type"],
        "date": iso(record["date"]), "billing_period": iso(usage_record["billing_period"]),
        "created": iso(record["created"]), "modified": iso(record["modified"]),
    }


def plan_period(store, record):
    offering_record = store.offerings[record["offering_uuid"]]
    month = store.clock().replace(day=1).date()
    usages = [component_usage(store, u) for u in store.component_usages.values()
              if u["resource_uuid"] == record["uuid"] and u["billing_period"] == month]
    return {
        "uuid": record["plan_period_uuid"], "plan_name": offering_record["plan"]["name"],
        "plan_uuid": offering_record["plan"]["uuid"], "start": iso(record["created"]),
        "end": None, "components": usages,
    }


def association(store, record):
    resource_record = store.resources[record["resource_uuid"]]
    data = {
        "uuid": record["uuid"], "username": record["username"],
        "allocation": _url(store, "slurm-allocations", resource_record["allocation"]["uuid"]),
    }
    if not store.profile.schema_fields:
        data.update(allocation_uuid=resource_record["allocation"]["uuid"],
                    marketplace_resource_uuid=resource_record["uuid"], created=iso(record["created"]))
    return data


def slurm_user_usage(store, record):
    data = {k: record[k] for k in ("uuid", "username", "month", "year", "user")}
    data.update({k: render_decimal(record[k]) for k in ("cpu_usage", "ram_usage", "gpu_usage")})
    data["allocation_uuid"] = store.resources[record["resource_uuid"]]["allocation"]["uuid"]
    data["marketplace_resource_uuid"] = record["resource_uuid"]
    return data


def customer(store, record):
    return {"uuid": record["uuid"], "url": _url(store, "customers", record["uuid"]),
            "name": record["name"], "slug": record["slug"]}


def project(store, record):
    owner = store.customers[record["customer_uuid"]]
    return {"uuid": record["uuid"], "url": _url(store, "projects", record["uuid"]),
            "name": record["name"], "slug": record["slug"], "customer_uuid": owner["uuid"],
            "customer_name": owner["name"], "customer_slug": owner["slug"]}


def user(store, record):
    return {"uuid": record["uuid"], "url": _url(store, "users", record["uuid"]),
            "username": record["username"], "full_name": record["full_name"],
            "email": record["email"]}
