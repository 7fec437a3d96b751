"""Pull: a batch of Waldur orders becomes one SLURM plan, applied in a few commits, then reported.

The flow for a batch: approve what is pending; validate each order (a bad one is erred alone);
read SLURM once; plan the whole batch; apply it; report each order done. If the batch's apply
fails, each order is retried alone against a fresh read so the failure lands on the order that
caused it, and a Create that still fails is rolled back (its accounts removed) before it is
erred: no half tree is left without a record. Correctness never depends on Redis: every step
re-reads the real state (SLURM tree, order state) before it writes.
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from .actual import ActualState
from .allocation_report import report_allocation
from .allocations import (ENSURE_TYPES, AllocationSpec, NamingPolicy, OrderInput, OrderRejected, allocation_spec)
from .components import Components
from .plan import BatchPlan, plan_batch
from .slurm.executor import SlurmCommandError
from .slurm.model import AddAccounts, AddUsers, Operation
from .waldur_api import WaldurAPI, WaldurHTTPError

log = logging.getLogger(__name__)
FINAL_ORDER_STATES = {"done", "erred", "canceled", "rejected"}


@dataclass
class OrderOutcome:
    order_uuid: str
    result: str  # done | erred | skipped
    account: str = ""
    message: str = ""


@dataclass
class BatchResult:
    outcomes: List[OrderOutcome] = field(default_factory=list)
    commits: int = 0
    seconds: float = 0.0

    def by_result(self, result: str) -> List[str]:
        return [o.order_uuid for o in self.outcomes if o.result == result]


def order_input(order: Mapping[str, Any], team: Optional[Sequence[Mapping[str, Any]]]) -> OrderInput:
    attributes = order.get("attributes") or {}
    return OrderInput(
        order_uuid=order["uuid"], type=order.get("type", ""),
        resource_uuid=order.get("marketplace_resource_uuid") or "",
        resource_name=str(order.get("resource_name") or attributes.get("name") or ""),
        backend_id=order.get("backend_id") or "",
        customer_uuid=order.get("customer_uuid") or "", customer_slug=order.get("customer_slug") or "",
        customer_name=order.get("customer_name") or "",
        project_uuid=order.get("project_uuid") or "", project_slug=order.get("project_slug") or "",
        project_name=order.get("project_name") or "",
        limits=order.get("limits") or {}, team=team)


class OrderProcessor:
    """Waldur <-> domain <-> SLURM for batches of orders. ``slurm`` is a SacctmgrClient."""

    def __init__(self, waldur: WaldurAPI, slurm: Any, components: Components, policy: NamingPolicy,
                 on_new_users: Optional[Callable[[Iterable[str]], None]] = None):
        self.waldur = waldur
        self.slurm = slurm
        self.components = components
        self.policy = policy
        self.on_new_users = on_new_users
        self._tres: Optional[set] = None

    def cluster_tres(self) -> set:
        if self._tres is None:
            self._tres = set(self.slurm.read_tres())
        return self._tres

    # -- the read-only half, shared by `slurm-sync plan` --

    def specs(self, orders: Sequence[Mapping[str, Any]], result: BatchResult, dry_run: bool = False) -> Dict[str, AllocationSpec]:
        specs: Dict[str, AllocationSpec] = {}
        for order in orders:
            try:
                team = None
                if order.get("type") in ENSURE_TYPES and order.get("marketplace_resource_uuid"):
                    team = self.waldur.resource_team(order["marketplace_resource_uuid"])
                specs[order["uuid"]] = allocation_spec(order_input(order, team), self.policy, self.components,
                                                       self.cluster_tres())
            except OrderRejected as error:
                self._fail(order, str(error), result, dry_run)
        return specs

    def plan(self, orders: Sequence[Mapping[str, Any]]) -> BatchPlan:
        """What the orders would change in SLURM, without approving or writing anything."""
        result = BatchResult()
        specs = self.specs(orders, result, dry_run=True)
        plan = plan_batch(list(specs.values()), ActualState(self.slurm.read_associations()), self.policy)
        plan.errors.update({o.order_uuid: o.message for o in result.outcomes})
        return plan

    # -- the whole cycle --

    def process(self, orders: Sequence[Mapping[str, Any]]) -> BatchResult:
        started = time.monotonic()
        result = BatchResult()
        live = [o for o in (self._approved(order, result) for order in _one_per_resource(orders)) if o]
        specs = self.specs(live, result)
        by_uuid = {o["uuid"]: o for o in live}
        before = ActualState(self.slurm.read_associations())
        plan = plan_batch(list(specs.values()), before, self.policy)
        for uuid, message in plan.errors.items():
            self._fail(by_uuid[uuid], message, result)
        applied = {uuid: account for uuid, account in plan.accounts.items()}
        try:
            result.commits += self._apply(plan.operations)
        except SlurmCommandError as error:
            log.warning("batch of %d orders failed in SLURM (%s); retrying one order at a time", len(applied), error)
            applied = self._apply_one_by_one({u: specs[u] for u in applied}, by_uuid, result)
        for uuid, account in applied.items():
            self._finish(by_uuid[uuid], account, result, specs[uuid], frozenset(before.users.get(account, ())))
        result.seconds = time.monotonic() - started
        return result

    def _apply(self, operations: Sequence[Operation]) -> int:
        if not operations:
            return 0
        report = self.slurm.apply(operations)
        if self.on_new_users:
            new_users = {u for op in operations if isinstance(op, (AddAccounts, AddUsers)) for u, _ in op.users}
            if new_users:
                self.on_new_users(sorted(new_users))
        return getattr(report, "commits", 0)

    def _apply_one_by_one(self, specs: Dict[str, AllocationSpec], orders: Mapping[str, Mapping[str, Any]],
                          result: BatchResult) -> Dict[str, str]:
        applied: Dict[str, str] = {}
        for uuid, spec in specs.items():
            plan = plan_batch([spec], ActualState(self.slurm.read_associations()), self.policy)
            try:
                if plan.errors:
                    raise OrderRejected(plan.errors[uuid])
                result.commits += self._apply(plan.operations)
                applied[uuid] = plan.accounts[uuid]
            except (SlurmCommandError, OrderRejected) as error:
                if not spec.remove and uuid in plan.accounts and orders[uuid].get("type") == "Create":
                    self._roll_back(spec, plan.accounts[uuid])
                self._fail(orders[uuid], f"SLURM refused the change: {error}", result, tb=traceback.format_exc())
        return applied

    def _roll_back(self, spec: AllocationSpec, account: str) -> None:
        """Remove what a failed Create made, so no half tree is left without a record."""
        undo = AllocationSpec(order_uuid=spec.order_uuid, remove=True, customer=spec.customer, project=spec.project,
                              allocation=account, allocation_source="", resource_uuid=spec.resource_uuid,
                              limits={}, users=None)
        try:
            plan = plan_batch([undo], ActualState(self.slurm.read_associations()), self.policy)
            self._apply(plan.operations)
        except SlurmCommandError as error:
            log.error("roll-back of %s for order %s failed: %s", account, spec.order_uuid, error)

    # -- Waldur side --

    def _approved(self, order: Mapping[str, Any], result: BatchResult) -> Optional[Mapping[str, Any]]:
        """The order once executing (approving it when pending), or None when it is not ours to do."""
        if order.get("state") == "pending-provider":
            try:
                self.waldur.approve_order(order["uuid"])
                return {**order, "state": "executing"}
            except WaldurHTTPError as error:
                if not error.wrong_state:
                    raise
                order = self.waldur.get_order(order["uuid"])
        if order.get("state") == "executing":
            return order
        result.outcomes.append(OrderOutcome(order["uuid"], "skipped", message=f"order is {order.get('state')}"))
        return None

    def _finish(self, order: Mapping[str, Any], account: str, result: BatchResult, spec: AllocationSpec,
                users_before: frozenset) -> None:
        resource = order.get("marketplace_resource_uuid")
        if order.get("type") in ("Create", "Restore") and resource and order.get("backend_id") != account:
            self.waldur.set_backend_id(resource, account)
        if resource:
            report_allocation(self.waldur, self.components, order, spec.limits, users_before,
                              () if spec.remove else spec.users)
        try:
            self.waldur.set_order_done(order["uuid"])
        except WaldurHTTPError as error:
            if not error.wrong_state:
                raise
            state = self.waldur.get_order(order["uuid"]).get("state")
            if state != "done":
                result.outcomes.append(OrderOutcome(order["uuid"], "skipped", account, f"order is {state}"))
                return
        log.info("order %s (%s) done: account %s", order["uuid"], order.get("type"), account)
        result.outcomes.append(OrderOutcome(order["uuid"], "done", account))

    def _fail(self, order: Mapping[str, Any], message: str, result: BatchResult, dry_run: bool = False,
              tb: str = "") -> None:
        log.warning("order %s (%s) erred: %s", order.get("uuid"), order.get("type"), message)
        result.outcomes.append(OrderOutcome(order["uuid"], "erred", message=message))
        if dry_run:
            return
        try:
            self.waldur.set_order_erred(order["uuid"], message, tb or message)
        except WaldurHTTPError as error:
            if not error.wrong_state:
                raise
            log.info("order %s was no longer executing when erring it", order.get("uuid"))


def _one_per_resource(orders: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The oldest order of each resource: a later one (Terminate after Create) waits for the next cycle."""
    seen = set()
    picked = []
    for order in sorted(orders, key=lambda o: str(o.get("created") or "")):
        resource = order.get("marketplace_resource_uuid") or order["uuid"]
        if resource in seen:
            continue
        seen.add(resource)
        picked.append(order)
    return picked
