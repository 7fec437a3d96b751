"""The Waldur marketplace calls slurm-sync makes, as intents (approve an order, report usage, ...).

Which endpoint and body an intent takes on each server generation is decided here and nowhere
else (:mod:`slurm_sync.waldur.generation`); the HTTP underneath is :mod:`slurm_sync.waldur.http`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional

import waldur_client

from slurm_sync.domain.desired import DEPARTED_USER_STATES
from slurm_sync.waldur.concurrency import Limiter, limiter_for, run_each
from slurm_sync.waldur.generation import CURRENT, V7_0, Generation, GenerationCache, GenerationTracker
from slurm_sync.waldur.http import (  # noqa: F401 - the errors callers catch are re-exported here
    SessionClient, WaldurError, WaldurHTTPError, WaldurUnavailable, transient, unavailable_when_transient)

log = logging.getLogger(__name__)

ACTIVE_ORDER_STATES = ("pending-provider", "executing")
LIVE_RESOURCE_STATES = ("Creating", "OK", "Erred", "Updating", "Terminating")
ORDER_FIELDS = ("uuid", "type", "state", "marketplace_resource_uuid", "resource_name", "limits", "attributes",
                "project_uuid", "project_name", "project_slug", "customer_uuid", "customer_name", "customer_slug",
                "backend_id", "error_message", "created", "modified", "offering_uuid")


class WaldurAPI:
    """The offering-scoped calls; each method is one request unless it pages.

    Methods whose path differs between server generations (see waldur_generation) pick
    the path of the generation learnt from the server; a current-line action answering
    404 teaches that the server is on the 7.0 line, and the call is made again its way.
    """

    def __init__(self, api_url: str, token: str, offering_uuid: str, verify_ssl: bool = True, timeout: float = 30.0,
                 compat: str = "auto", generation_cache: Optional[GenerationCache] = None, retries: int = 3,
                 concurrency: int = 8, limiter: Optional[Limiter] = None):
        waldur_client.verify_ssl = verify_ssl
        self.limiter = limiter or limiter_for(api_url, concurrency)
        self.client = SessionClient(api_url, token, verify_ssl, timeout, retries, self.limiter)
        self.offering_uuid = offering_uuid
        self.tracker = GenerationTracker(api_url, compat, generation_cache)
        self.associations_supported = True
        self._provider_uuid: Optional[str] = None

    # -- the server's generation --

    @property
    def generation(self) -> Generation:
        return self.tracker.get(self._probe_generation)

    def _probe_generation(self) -> Generation:
        """One read: the offering's order list exists on the current line and is absent on 7.0 (404)."""
        url = self.client._build_url(f"marketplace-provider-offerings/{self.offering_uuid}/orders/")
        try:
            self.client._make_request("get", url, valid_states=[200], params={"page_size": 1, "field": "uuid"})
        except WaldurHTTPError as error:
            if error.route_absent:
                return Generation(V7_0, "marketplace-provider-offerings/<uuid>/orders/ answered 404")
            if error.status == 403:  # not this token's to read: the actions' own 404s will tell
                return Generation(CURRENT, "marketplace-provider-offerings/<uuid>/orders/ answered 403; "
                                           "assumed current until an action answers 404")
            raise
        return Generation(CURRENT, "marketplace-provider-offerings/<uuid>/orders/ answered 200")

    def _on_current(self, action: str, call, fallback):
        """Run ``call`` on a current-line server, ``fallback`` on 7.0; a 404 from ``call`` means 7.0."""
        if self.generation.is_7_0:
            return fallback()
        try:
            return call()
        except WaldurHTTPError as error:
            if not error.route_absent:
                raise
            self.tracker.learn(Generation(V7_0, f"{action} answered 404"))
            return fallback()

    def _remote(self, resource_uuid: str, action: str, body: Dict[str, Any], valid=(200, 201)) -> Any:
        url = self.client._build_url(f"marketplace-slurm-remote/{resource_uuid}/{action}/")
        return self.client._post(url, valid_states=list(valid), json=body)

    @property
    def request_count(self) -> int:
        return self.client.request_count

    def each(self, function: Callable[[Any], Any], items: Iterable[Any]) -> List[Any]:
        """``function`` (intents of this API) over ``items``, as many at a time as the deployment's limiter lets
        through, results in the items' order; the first error is raised once all have finished. The calls of one
        item stay in their order: concurrency is between items, never inside one."""
        return run_each(self.limiter.maximum, function, items)

    # -- what the server can do, as intents (callers never ask which generation it is) --

    @property
    def files_usage_by_date(self) -> bool:
        """set_usage files a post under the month of its date (a 7.0-line server files it under its own
        current month, so a closed month can no longer be reported there)."""
        return self.generation.usage_date_honoured

    @property
    def hides_allocation_state(self) -> bool:
        """The allocation state slurm-sync reports cannot be read back (7.0: it lives behind slurm-remote)."""
        return self.generation.is_7_0

    @property
    def takes_allocation_reports(self) -> bool:
        """The server learns a SLURM allocation's state, limits and associations only from the provider's
        marketplace-slurm-remote reports (7.0); the current line takes the order's own limits when it is done."""
        return self.generation.is_7_0

    # -- orders --

    def active_orders(self, page_size: int = 300) -> List[Dict[str, Any]]:
        return self.client.list_orders({"offering_uuid": self.offering_uuid, "state": list(ACTIVE_ORDER_STATES),
                                        "page_size": page_size, "o": "created"})

    def get_order(self, order_uuid: str) -> Dict[str, Any]:
        url = self.client._build_resource_url(waldur_client.Endpoints.MarketplaceOrder, order_uuid)
        return self.client._get(url, valid_states=[200])

    def approve_order(self, order_uuid: str) -> None:
        self.client.marketplace_order_approve_by_provider(order_uuid)

    def set_order_done(self, order_uuid: str) -> None:
        self.client.marketplace_order_set_state_done(order_uuid)

    def set_order_erred(self, order_uuid: str, message: str, traceback: str = "") -> None:
        """Always sends both fields: a 7.0-line server answers 500 when either is missing."""
        self.client.marketplace_order_set_state_erred(order_uuid, message[:1000] or "failed", traceback or message)

    # -- resources --

    def resource_team(self, resource_uuid: str) -> List[Dict[str, Any]]:
        return self.client.marketplace_provider_resource_get_team(resource_uuid)

    def set_backend_id(self, resource_uuid: str, backend_id: str) -> None:
        self.client.marketplace_provider_resource_set_backend_id(resource_uuid, backend_id)

    def resources(self, states: Iterable[str] = ("OK", "Erred")) -> List[Dict[str, Any]]:
        return self.client._query_resource_list(waldur_client.Endpoints.MarketplaceProviderResources, {
            "offering_uuid": self.offering_uuid, "state": list(states), "page_size": 300})

    def live_resources(self) -> List[Dict[str, Any]]:
        """Every resource of the offering that is not Terminated (``adopt`` proves each one's account)."""
        return self.resources(LIVE_RESOURCE_STATES)

    def resource(self, resource_uuid: str) -> Dict[str, Any]:
        url = self.client._build_resource_url(waldur_client.Endpoints.MarketplaceProviderResources, resource_uuid)
        return self.client._get(url, valid_states=[200])

    # -- who may use an allocation: project members and their offering-user logins --

    def offering_logins(self) -> Dict[str, str]:
        """{user uuid: SLURM login} of this offering's users with a username (one paged listing).
        Offering users being deleted (a state only the current line shows) have none."""
        rows = self.client._get_all(self.client._build_url("marketplace-offering-users/"), params={
            "offering_uuid": self.offering_uuid, "page_size": 300, "field": ["user_uuid", "username", "state"]})
        return {row["user_uuid"]: row["username"] for row in rows
                if row.get("username") and row.get("user_uuid") and row.get("state") not in DEPARTED_USER_STATES}

    def project_members(self) -> Optional[Dict[str, set]]:
        """{project uuid: user uuids} of every project holding this provider's resources, from one paged
        listing (the service provider's project permissions). None when this token may not read it
        (it is for the provider's owners): the caller then reads each resource's team."""
        provider = self._service_provider_uuid()
        if not provider:
            return None
        url = self.client._build_url(f"marketplace-service-providers/{provider}/project_permissions/")
        try:
            rows = self.client._get_all(url, params={"page_size": 300})
        except WaldurHTTPError as error:
            if error.status not in (403, 404):
                raise
            log.warning("%s answered %d: teams are read per resource instead", url, error.status)
            self._provider_uuid = ""
            return None
        members: Dict[str, set] = {}
        for row in rows:
            if row.get("project_uuid") and row.get("user_uuid"):
                members.setdefault(row["project_uuid"], set()).add(row["user_uuid"])
        return members

    def _service_provider_uuid(self) -> str:
        """The offering owner's service-provider record (two reads, once per process)."""
        if self._provider_uuid is None:
            customer = self.offering().get("customer_uuid") or ""
            url = self.client._build_url("marketplace-service-providers/")
            rows = self.client._get_all(url, params={"customer_uuid": customer, "field": ["uuid"]}) if customer else []
            self._provider_uuid = rows[0]["uuid"] if rows else ""
        return self._provider_uuid

    def set_resource_erred(self, resource_uuid: str, message: str) -> None:
        """7.0: set_as_erred is staff-only (403) there, so the allocation is set erred through SLURM-remote."""
        if self.generation.is_7_0:
            self.set_allocation_state(resource_uuid, "erred")
            return
        self.client.marketplace_provider_resource_set_as_erred(
            resource_uuid, {"error_message": message[:1000], "error_traceback": message})

    def set_resource_ok(self, resource_uuid: str) -> bool:
        """Bring an Erred resource back to OK; returns whether the resource is OK now. A 7.0-line server has
        no provider call for it (set_as_ok is absent): its allocation is set ok, the resource stays Erred."""
        def current() -> bool:
            self.client.marketplace_provider_resource_set_as_ok(resource_uuid)
            return True

        def line_7_0() -> bool:
            self.set_allocation_state(resource_uuid, "ok")
            return False

        return self._on_current("set_as_ok", current, line_7_0)

    def set_resource_limits(self, resource_uuid: str, limits: Dict[str, int]) -> None:
        """Limits in Waldur units: the provider-resource call, or SLURM-remote's on 7.0 (the dict is the body)."""
        url = self.client._build_resource_url(waldur_client.Endpoints.MarketplaceProviderResources,
                                              resource_uuid, "set_limits")
        self._on_current("set_limits", lambda: self.client._post(url, valid_states=[200], json={"limits": limits}),
                         lambda: self._remote(resource_uuid, "set_limits", limits, valid=(200,)))

    # -- the SLURM allocation (marketplace-slurm-remote; the 7.0 line needs it, current servers keep it) --

    def set_allocation_state(self, resource_uuid: str, state: str) -> bool:
        """state: creating | ok | erred. False when the allocation cannot take that state from the one it is in
        (a 7.0 server answers 409, TransitionNotAllowed; 400 elsewhere): it is past it."""
        try:
            self._remote(resource_uuid, "set_state", {"state": state}, valid=(200,))
        except WaldurHTTPError as error:
            if not error.wrong_state:
                raise
            return False
        return True

    def report_allocation_ok(self, resource_uuid: str) -> bool:
        """creating then ok, as the seed's agent did after creating the account; without it a 7.0 server
        errs every later Update order at its approval ("Can't switch from state ..."). Returns True when the allocation went
        Creating -> OK in this call: on a 7.0 server that completes the resource's Create order (order
        done, resource OK), so the order needs no set_state_done."""
        created = self.set_allocation_state(resource_uuid, "creating")
        return self.set_allocation_state(resource_uuid, "ok") and created

    def create_association(self, resource_uuid: str, username: str) -> None:
        """201 created, 200 already there."""
        self._remote(resource_uuid, "create_association", {"username": username})

    def delete_association(self, resource_uuid: str, username: str) -> None:
        """400 when there is none: already in the wanted state."""
        try:
            self._remote(resource_uuid, "delete_association", {"username": username}, valid=(200, 204))
        except WaldurHTTPError as error:
            if error.status != 400:
                raise

    def associations(self) -> Optional[Dict[str, set]]:
        """{allocation uuid: usernames} as Waldur shows them (one paged read), None when the server takes no
        association reports: the current line has no marketplace-slurm-remote calls to write them with (its
        OpenAPI schema, waldur-api-client 8.x, lists none), so only a 7.0-line server is told."""
        if not self.associations_supported or not self.generation.is_7_0:
            return None
        try:
            rows = self.client._get_all(self.client._build_url("slurm-associations/"), params={"page_size": 300})
        except WaldurHTTPError as error:
            if error.status not in (403, 404):
                raise
            log.info("slurm-associations/ answered %d: associations are not reported to this server", error.status)
            self.associations_supported = False
            return None
        shown: Dict[str, set] = {}
        for row in rows:
            allocation = row.get("allocation_uuid") or str(row.get("allocation") or "").rstrip("/").rsplit("/", 1)[-1]
            if allocation and row.get("username"):
                shown.setdefault(allocation, set()).add(row["username"])
        return shown

    # -- usage --

    def set_usage(self, resource_uuid: str, date: str, usages: Dict[str, str]) -> None:
        """One POST carrying every component's amount (decimal strings) for the month of ``date``."""
        url = self.client._build_url(f"{waldur_client.Endpoints.MarketplaceComponentUsage}/set_usage/")
        self.client._post(url, valid_states=[200, 201], json={
            "resource": resource_uuid, "date": date,
            "usages": [{"type": t, "amount": a, "description": ""} for t, a in sorted(usages.items())]})

    def component_usage_ids(self, billing_period: str) -> Dict[str, Dict[str, str]]:
        """{resource uuid: {component type: component usage uuid}} of this offering for one month: one paged
        listing (``offering_uuid`` and ``billing_period`` filter it on both lines) instead of a read per
        resource. ``field`` trims the rows where the server honours it (the current line); 7.0 sends whole rows."""
        rows = self.client._get_all(self.client._build_url("marketplace-component-usages/"), params={
            "offering_uuid": self.offering_uuid, "billing_period": billing_period, "page_size": 300,
            "field": ["uuid", "type", "resource_uuid"]})
        ids: Dict[str, Dict[str, str]] = {}
        for row in rows:
            if row.get("resource_uuid") and row.get("type") and row.get("uuid"):
                ids.setdefault(str(row["resource_uuid"]).replace("-", ""), {})[row["type"]] = row["uuid"]
        return ids

    def set_user_usages(self, component_usage_uuid: str, usages: Dict[str, str]) -> int:
        """Per-user amounts of one component usage; returns the number of requests made.

        The current line replaces the whole list in one call; 7.0 has only the singular
        set_user_usage (one user per call, a second post for a user replaces it)."""
        def plural():
            url = self.client._build_resource_url(waldur_client.Endpoints.MarketplaceComponentUsage,
                                                  component_usage_uuid, "set_user_usages")
            self.client._post(url, valid_states=[200, 201], json={
                "usages": [{"username": u, "usage": a} for u, a in sorted(usages.items())]})
            return 1

        def singular():
            url = self.client._build_resource_url(waldur_client.Endpoints.MarketplaceComponentUsage,
                                                  component_usage_uuid, "set_user_usage")
            for username, amount in sorted(usages.items()):
                self.client._post(url, valid_states=[200, 201], json={"username": username, "usage": amount})
            return len(usages)

        return self._on_current("set_user_usages", plural, singular)

    # -- offering --

    def create_offering_component(self, component: Dict[str, Any]) -> None:
        self.client.create_offering_component(self.offering_uuid, component)

    def update_offering_component(self, component: Dict[str, Any]) -> None:
        self.client.update_offering_component(self.offering_uuid, component)

    def offering(self) -> Dict[str, Any]:
        return self.client.get_marketplace_provider_offering(self.offering_uuid)
