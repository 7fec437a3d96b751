"""Thread-safe in-memory state of the emulated marketplace, and its seeding API.

Records are plain dicts holding the raw values (datetimes, Decimals); what a
client sees is rendered by ``serializers`` for the active profile. Every
mutation happens under ``self.lock`` (an RLock: the server holds it for a whole
request, seeding methods take it themselves).
"""
import copy
import threading
from datetime import datetime, timezone

from testkit.waldur_emulator import errors
from testkit.waldur_emulator.formats import as_utc, new_uuid, normalize_uuid, unique_slug
from testkit.waldur_emulator.profiles import BILLING_TYPES, CURRENT, Profile

DEFAULT_COMPONENTS = (
    {"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
    {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
    {"type": "gpu", "name": "GPU", "measured_unit": "gpu-Hours", "billing_type": "usage"},
)
COMPONENT_DEFAULTS = {
    "description": "", "billing_type": "usage", "limit_period": None, "limit_amount": None,
    "unit_factor": 1, "article_code": "", "max_value": None, "min_value": None,
    "is_boolean": False, "default_limit": None,
}
# The model names in Waldur's 404 bodies ("No Order matches the given query.").
MODEL_NAMES = {
    "orders": "Order", "resources": "Resource", "offerings": "Offering",
    "offering_users": "OfferingUser", "component_usages": "ComponentUsage",
    "customers": "Customer", "projects": "Project", "users": "User", "service_providers": "ServiceProvider",
}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    def __init__(self, profile: Profile = CURRENT):
        self.lock = threading.RLock()
        self.profile = profile
        self.now = utc_now
        self.base_url = "http://127.0.0.1/api/"  # the server sets its real address
        self.provider_permissions_loaded = True
        self.reset()

    def reset(self):
        with self.lock:
            self.customers, self.projects, self.users = {}, {}, {}
            self.offerings, self.offering_users = {}, {}
            self.resources, self.orders = {}, {}
            self.team = {}  # project uuid -> {user uuid: {"role", "expiration_time"}}
            self.component_usages, self.user_usages = {}, {}
            # lookups a set_usage / set_user_usage makes (usages are never deleted): a benchmark's thousands of
            # posts must measure the client, not the emulator's scans
            self.usage_by_key, self.user_usage_by_key = {}, {}  # (resource, type, period) / (usage, username)
            self.associations, self.slurm_user_usages = {}, {}
            self.service_providers = {}
            self.provider_permissions_loaded = True
            self.token_is_provider_owner = True  # False: a service manager's token (no project permissions)
            self._seq = 0

    # ----------------------------------------------------------------- helpers
    def clock(self) -> datetime:
        return as_utc(self.now())

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def get(self, table: str, uuid) -> dict:
        """The record or a 404 ApiError naming the model like Waldur does."""
        record = getattr(self, table).get(normalize_uuid(uuid))
        if record is None:
            raise errors.not_found(MODEL_NAMES.get(table, "object"))
        return record

    def touch(self, record: dict, **changes):
        record.update(changes)
        record["modified"] = self.clock()

    def new(self, table: str, **fields) -> dict:
        now = self.clock()
        record = {"uuid": new_uuid(), "seq": self.next_seq(), "created": now, "modified": now}
        record.update(fields)
        getattr(self, table)[record["uuid"]] = record
        return record

    def _slug(self, table, name, slug):
        return slug or unique_slug(name, {r["slug"] for r in getattr(self, table).values()})

    # ----------------------------------------------------------------- seeding
    def add_customer(self, name, slug=None) -> dict:
        with self.lock:
            return self.new("customers", name=name, slug=self._slug("customers", name, slug))

    def add_project(self, customer_uuid, name, slug=None) -> dict:
        with self.lock:
            customer = self.get("customers", customer_uuid)
            return self.new("projects", name=name, slug=self._slug("projects", name, slug),
                             customer_uuid=customer["uuid"])

    def add_user(self, username, full_name="", email="") -> dict:
        with self.lock:
            return self.new("users", username=username, full_name=full_name, email=email)

    def add_offering(self, name="SLURM", type="Marketplace.Slurm", components=None,
                     customer_uuid=None, plugin_options=None) -> dict:
        with self.lock:
            if customer_uuid is None:
                customer_uuid = self.add_customer(f"{name} provider")["uuid"]
            options = {"service_provider_can_create_offering_user": True}
            options.update(plugin_options or {})
            offering = self.new(
                "offerings", name=name, type=type, customer_uuid=customer_uuid,
                plugin_options=options, components=[],
                plan={"uuid": new_uuid(), "name": "Default"},
            )
            for component in DEFAULT_COMPONENTS if components is None else components:
                self.add_component(offering["uuid"], component)
            if not any(p["customer_uuid"] == customer_uuid for p in self.service_providers.values()):
                self.new("service_providers", customer_uuid=customer_uuid)
            return offering

    def add_component(self, offering_uuid, component: dict) -> dict:
        with self.lock:
            offering = self.get("offerings", offering_uuid)
            record = dict(COMPONENT_DEFAULTS, uuid=new_uuid(), name=component.get("type", ""))
            record.update({k: v for k, v in component.items() if k != "factor"})
            if "factor" in component:
                record["unit_factor"] = component["factor"]
            if record["billing_type"] not in BILLING_TYPES:
                raise ValueError(f"unknown billing_type {record['billing_type']!r}")
            offering["components"].append(record)
            self.touch(offering)
            return record

    def component(self, offering: dict, type_: str):
        return next((c for c in offering["components"] if c["type"] == type_), None)

    def add_offering_user(self, offering_uuid, user_uuid, username="", state="OK",
                          is_restricted=False) -> dict:
        with self.lock:
            offering = self.get("offerings", offering_uuid)
            user = self.get("users", user_uuid)
            return self.new("offering_users", offering_uuid=offering["uuid"],
                             user_uuid=user["uuid"], username=username or "",
                             state=state, is_restricted=is_restricted)

    def add_resource(self, offering_uuid, project_uuid, name, limits=None, attributes=None,
                     state="OK", backend_id="", allocation_state="OK", created=None, uuid=None) -> dict:
        """A resource as if its Create order was long done (``allocation_state`` None: no
        SLURM allocation yet, as before approval); ``created`` backdates it."""
        with self.lock:
            offering = self.get("offerings", offering_uuid)
            project = self.get("projects", project_uuid)
            if state not in ("Creating", "OK", "Erred", "Updating", "Terminating", "Terminated"):
                raise ValueError(f"unknown resource state {state!r}")
            resource = self.new(
                "resources", name=name, slug=self._slug("resources", name, None),
                offering_uuid=offering["uuid"], project_uuid=project["uuid"],
                plan_uuid=offering["plan"]["uuid"], backend_id=backend_id or "", state=state,
                limits=dict(limits or {}), attributes=dict(attributes or {"name": name}),
                backend_metadata={}, error_message="", error_traceback="", paused=False,
                downscaled=False, restrict_member_access=False, end_date=None, last_sync=None,
                plan_period_uuid=new_uuid(), allocation=None, **({"uuid": uuid} if uuid else {}),
            )
            if created is not None:
                resource["created"] = created
            if allocation_state:
                self.create_allocation(resource, allocation_state)
            return resource

    def create_allocation(self, resource: dict, state: str):
        """The SLURM allocation Waldur creates behind a resource when its Create is approved."""
        if resource["allocation"] is None:
            resource["allocation"] = {"uuid": new_uuid(), "state": state}
        return resource["allocation"]

    def add_order(self, offering_uuid, project_uuid, type="Create", limits=None, attributes=None,
                  resource_uuid=None, state="pending-provider") -> dict:
        with self.lock:
            offering = self.get("offerings", offering_uuid)
            project = self.get("projects", project_uuid)
            if type not in self.profile.order_types:
                raise ValueError(f"order type {type!r} does not exist on profile {self.profile.name}")
            if state not in self.profile.order_states:
                raise ValueError(f"order state {state!r} does not exist on profile {self.profile.name}")
            attributes = dict(attributes or {})
            if type in ("Create", "Update") and self.profile.limit_amount_is_offering_cap:
                self._check_offering_cap(offering, limits or {}, resource_uuid)
            if type == "Create":
                name = attributes.get("name") or f"resource-{self._seq + 1}"
                attributes.setdefault("name", name)
                resource = self.add_resource(offering["uuid"], project["uuid"], name, limits,
                                             attributes, state="Creating", allocation_state=None)
                if state in ("executing", "done"):
                    self.create_allocation(resource, "Creation Scheduled")
                if state == "done":
                    self.touch(resource, state="OK")
            else:
                if not resource_uuid:
                    raise ValueError(f"a {type} order needs resource_uuid")
                resource = self.get("resources", resource_uuid)
                if type == "Update":
                    attributes.setdefault("old_limits", dict(resource["limits"]))
            return self.new(
                "orders", type=type, state=state, resource_uuid=resource["uuid"],
                offering_uuid=offering["uuid"], project_uuid=project["uuid"],
                limits=dict(limits if limits is not None else resource["limits"]),
                attributes=attributes, plan_uuid=offering["plan"]["uuid"], error_message="", backend_id="",
                error_traceback="", provider_rejection_comment="", completed_at=None,
            )

    def _check_offering_cap(self, offering, limits, replacing=None):
        """Row 24: a consumer's Create or update_limits is refused (400 on the consumer's API, a ValueError
        here) when a ``limit`` component's limit_amount is below the sum of every resource's limits."""
        for component in offering["components"]:
            cap = component.get("limit_amount")
            if component["billing_type"] != "limit" or cap is None or component["type"] not in limits:
                continue
            total = sum(int(r["limits"].get(component["type"], 0)) for r in self.resources.values()
                        if r["offering_uuid"] == offering["uuid"] and r["uuid"] != replacing)
            if total + int(limits[component["type"]]) > int(cap):
                raise ValueError(f"Total limit exceeds threshold {cap}.")

    def add_team_member(self, resource_uuid, user_uuid, role="member", expiration_time=None):
        """Team membership is kept per project, as in Waldur, and shown per resource."""
        with self.lock:
            resource = self.get("resources", resource_uuid)
            user = self.get("users", user_uuid)
            members = self.team.setdefault(resource["project_uuid"], {})
            members[user["uuid"]] = {"role": role, "expiration_time": expiration_time}

    def remove_team_member(self, resource_uuid, user_uuid):
        with self.lock:
            resource = self.get("resources", resource_uuid)
            self.team.get(resource["project_uuid"], {}).pop(normalize_uuid(user_uuid), None)

    def set_offering_username(self, offering_user_uuid, username):
        """What the provider's PATCH (or Waldur's username generator) does: no order comes of it."""
        with self.lock:
            self.touch(self.get("offering_users", offering_user_uuid), username=username or "")

    # ----------------------------------------------------------------- queries
    def snapshot(self, table: str, uuid) -> dict:
        with self.lock:
            return copy.deepcopy(self.get(table, uuid))

    def team_of(self, resource: dict) -> list:
        members = self.team.get(resource["project_uuid"], {})
        return [(self.users[user_uuid], membership) for user_uuid, membership in members.items()]

    def offering_user_for(self, offering_uuid, user_uuid):
        return next((ou for ou in self.offering_users.values()
                     if ou["offering_uuid"] == offering_uuid and ou["user_uuid"] == user_uuid), None)
