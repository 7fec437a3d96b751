"""``WaldurEmulator``: the facade tests and the standalone runner use.

Seeding methods return plain dicts rendered as the API (for the active profile)
would show them; inspection methods read the state directly, without HTTP.
"""
from datetime import datetime, timezone

from testkit.waldur_emulator import serializers
from testkit.waldur_emulator.faults import Faults
from testkit.waldur_emulator.profiles import get_profile
from testkit.waldur_emulator.requestlog import RequestLog
from testkit.waldur_emulator.server import serve_in_thread
from testkit.waldur_emulator.store import Store, utc_now

LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


class WaldurEmulator:
    def __init__(self, token="secret-token", profile="current", host="127.0.0.1", port=0):
        self.token = token
        self.host, self.port = host, port
        self.store = Store(get_profile(profile))
        self.faults = Faults()
        self.log = RequestLog()
        self._server = self._thread = None

    # ------------------------------------------------------------ lifecycle
    def start(self):
        if self._server is None:
            self._server, self._thread = serve_in_thread(self, self.host, self.port)
            self.port = self._server.server_address[1]
            self.store.base_url = self.url
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    def reset(self):
        """Forget all state, requests, faults and clock overrides; keep server and profile."""
        self.store.reset()
        self.store.now = utc_now
        self.faults.clear()
        self.log.clear()

    # ------------------------------------------------------------ settings
    @property
    def profile(self) -> str:
        return self.store.profile.name

    @property
    def profile_flags(self):
        return self.store.profile

    def set_profile(self, name):
        with self.store.lock:
            self.store.profile = get_profile(name)

    @property
    def now(self):
        """The clock (a callable returning a datetime; naive means UTC). Assign to override."""
        return self.store.now

    @now.setter
    def now(self, clock):
        self.store.now = clock

    @property
    def provider_permissions_loaded(self) -> bool:
        """False plays a fresh server without role permissions: 403 to every call (row 15)."""
        return self.store.provider_permissions_loaded

    @provider_permissions_loaded.setter
    def provider_permissions_loaded(self, value):
        self.store.provider_permissions_loaded = bool(value)

    # ------------------------------------------------------------ seeding
    def _render(self, render, record):
        with self.store.lock:
            return render(self.store, record)

    def add_customer(self, name, slug=None) -> dict:
        return self._render(serializers.customer, self.store.add_customer(name, slug))

    def add_project(self, customer_uuid, name, slug=None) -> dict:
        return self._render(serializers.project, self.store.add_project(customer_uuid, name, slug))

    def add_user(self, username, full_name="", email="") -> dict:
        return self._render(serializers.user, self.store.add_user(username, full_name, email))

    def add_offering(self, name="SLURM", type="Marketplace.Slurm", components=None,
                     customer_uuid=None, plugin_options=None) -> dict:
        """``components``: dicts like {"type": "cpu", "name": "CPU", "measured_unit":
        "k-Hours", "billing_type": "usage", "limit_period": None, "limit_amount": None,
        "unit_factor": 1}; None gives cpu, mem and gpu usage components."""
        record = self.store.add_offering(name, type, components, customer_uuid, plugin_options)
        return self._render(serializers.offering, record)

    def add_offering_component(self, offering_uuid, component: dict) -> dict:
        return self._render(serializers.component, self.store.add_component(offering_uuid, component))

    def add_offering_user(self, offering_uuid, user_uuid, username="", state="OK",
                          is_restricted=False) -> dict:
        record = self.store.add_offering_user(offering_uuid, user_uuid, username, state, is_restricted)
        return self._render(serializers.offering_user, record)

    def add_resource(self, offering_uuid, project_uuid, name, limits=None, attributes=None,
                     state="OK", backend_id="", allocation_state="OK", created=LONG_AGO, uuid=None) -> dict:
        """A resource whose Create is long done (not part of Waldur's API, a shortcut): created in 2000
        unless ``created`` says otherwise, so jobs a test injects anywhere are the resource's; ``uuid`` chosen
        by the caller (a benchmark that writes the SLURM tree, marks included, before Waldur has it)."""
        record = self.store.add_resource(offering_uuid, project_uuid, name, limits, attributes,
                                         state, backend_id, allocation_state, created, uuid)
        return self._render(serializers.resource, record)

    def create_order(self, offering_uuid, project_uuid, type="Create", limits=None,
                     attributes=None, resource_uuid=None, state="pending-provider") -> dict:
        record = self.store.add_order(offering_uuid, project_uuid, type, limits, attributes,
                                      resource_uuid, state)
        return self._render(serializers.order, record)

    def add_team_member(self, resource_uuid, user_uuid, role="member", expiration_time=None):
        self.store.add_team_member(resource_uuid, user_uuid, role, expiration_time)

    def remove_team_member(self, resource_uuid, user_uuid):
        self.store.remove_team_member(resource_uuid, user_uuid)

    def set_offering_username(self, offering_user_uuid, username):
        self.store.set_offering_username(offering_user_uuid, username)

    @property
    def token_is_provider_owner(self) -> bool:
        """False plays a token of the provider's service manager: project_permissions answers 403."""
        return self.store.token_is_provider_owner

    @token_is_provider_owner.setter
    def token_is_provider_owner(self, value):
        self.store.token_is_provider_owner = bool(value)

    def set_resource_state(self, resource_uuid, state):
        with self.store.lock:
            self.store.touch(self.store.get("resources", resource_uuid), state=state)

    # ------------------------------------------------------------ inspection
    def _get(self, table, render, uuid) -> dict:
        with self.store.lock:
            return render(self.store, self.store.get(table, uuid))

    def _list(self, table, render, keep) -> list:
        with self.store.lock:
            records = sorted(getattr(self.store, table).values(), key=lambda r: r["seq"])
            return [render(self.store, r) for r in records if keep(r)]

    def get_order(self, uuid) -> dict:
        return self._get("orders", serializers.order, uuid)

    def get_resource(self, uuid) -> dict:
        return self._get("resources", serializers.resource, uuid)

    def get_offering(self, uuid) -> dict:
        return self._get("offerings", serializers.offering, uuid)

    def get_offering_user(self, uuid) -> dict:
        return self._get("offering_users", serializers.offering_user, uuid)

    def orders(self, **equal) -> list:
        """Orders (oldest first) whose rendered fields equal the given values."""
        return [o for o in self._list("orders", serializers.order, lambda r: True)
                if all(o.get(k) == v for k, v in equal.items())]

    def resources(self, **equal) -> list:
        return [r for r in self._list("resources", serializers.resource, lambda r: True)
                if all(r.get(k) == v for k, v in equal.items())]

    def resource_limits(self, resource_uuid) -> dict:
        return dict(self.get_resource(resource_uuid)["limits"])

    def component_usages(self, resource_uuid, billing_period=None) -> list:
        """Usages of a resource (oldest first); ``billing_period`` "YYYY-MM-01" narrows."""
        return [u for u in self._list("component_usages", serializers.component_usage,
                                      lambda r: r["resource_uuid"] == resource_uuid)
                if billing_period is None or u["billing_period"] == str(billing_period)]

    def user_usages(self, resource_uuid=None, component_usage_uuid=None) -> list:
        store = self.store
        def keep(record):
            parent = store.component_usages[record["component_usage_uuid"]]
            return ((resource_uuid is None or parent["resource_uuid"] == resource_uuid)
                    and (component_usage_uuid is None or parent["uuid"] == component_usage_uuid))
        return self._list("user_usages", serializers.user_usage, keep)

    def slurm_associations(self, resource_uuid) -> list:
        """Usernames associated through marketplace-slurm-remote (sorted)."""
        with self.store.lock:
            return sorted(a["username"] for a in self.store.associations.values()
                          if a["resource_uuid"] == resource_uuid)

    def slurm_user_usages(self, resource_uuid) -> list:
        return self._list("slurm_user_usages", serializers.slurm_user_usage,
                          lambda r: r["resource_uuid"] == resource_uuid)

    def allocation_state(self, resource_uuid):
        """State of the SLURM allocation behind a resource (None before approval)."""
        with self.store.lock:
            allocation = self.store.get("resources", resource_uuid)["allocation"]
            return allocation["state"] if allocation else None

    def team(self, resource_uuid) -> list:
        with self.store.lock:
            resource = self.store.get("resources", resource_uuid)
            return [serializers.team_member(self.store, resource, u, m)
                    for u, m in self.store.team_of(resource)]

    # ------------------------------------------------------------ request log
    @property
    def requests(self) -> list:
        return self.log.snapshot()

    def count(self, method=None, path_contains=None) -> int:
        return self.log.count(method, path_contains)
