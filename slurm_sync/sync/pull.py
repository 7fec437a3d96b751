"""Pull: a task's Waldur orders become SLURM plans, applied in a few commits, then reported.

The flow for a task: read the orders from Waldur (a queued message only names them); approve
what is pending and re-read what Waldur made of it; read the orders' resources (the SLURM
account of an existing resource is the RESOURCE's backend_id, cross-checked with the account's
ownership mark); validate each order (a bad one is erred alone); read SLURM once; plan each
part (SLURM_SYNC_BATCH_SIZE Creates/Updates, then all removals: :func:`write_parts`); post the
final usage of allocations about to be removed; apply it; report its orders done. The tree a
part leaves is known without reading SLURM again when the part only added (:func:`after_additions`),
so a big batch of Creates reads the tree once, not once per write: the read grows with the tree.
A transient Waldur error on one order's own step (approve, team, backend_id, done, erred) defers
that order alone (result "deferred": the task takes it up again) and the rest go on to their SLURM
commit; an order's progress is where the truth is: Waldur's order state says whether it is
approved or done, the SLURM tree whether it is written, so a retry repeats no step. If a part's apply
fails, each order is retried alone against a fresh read so the failure lands on the order that
caused it, and a Create that still fails is rolled back (its accounts removed) before it is
erred: no half tree is left without a record. Correctness never depends on Redis: every step
re-reads the real state (SLURM tree, order state) before it writes.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from slurm_sync.domain.real_tree import ActualState, after_additions
from slurm_sync.domain.load_cost import part_length
from slurm_sync.domain.desired import ENSURE_TYPES, AllocationSpec, NamingPolicy, OrderRejected, allocation_spec
from slurm_sync.domain.components import Components
from slurm_sync.domain.plan import BatchPlan, plan_batch
from slurm_sync.slurm.runner import SlurmCommandError
from slurm_sync.domain.slurm_objects import AddAccounts, AddUsers, Association, Operation
from slurm_sync.observability import metrics
from slurm_sync.waldur.api import WaldurAPI, WaldurHTTPError, WaldurUnavailable, transient
from slurm_sync.waldur.orders import order_input, team_of
from slurm_sync.sync.order_steps import BatchResult, OrderDeferred, OrderSteps

log = logging.getLogger(__name__)
# the states an order's resource can be in while the order is active (a Restore's is Terminated)
LIVE_RESOURCE_STATES = ("Creating", "OK", "Erred", "Updating", "Terminating")
LISTED_TEAM_TYPES = ("Create", "Update")  # orders whose teams a batch may read from the permissions listing


class OrderProcessor(OrderSteps):
    """Waldur <-> domain <-> SLURM for batches of orders. ``slurm`` is a SacctmgrClient.

    ``before_remove`` gets {account: resource} of the allocations a batch is about to remove,
    so their usage up to now is billed before the account goes; it returns {account: (transient, answer)} of
    those whose usage Waldur did not take, and their accounts are not removed.
    """

    def __init__(self, waldur: WaldurAPI, slurm: Any, components: Components, policy: NamingPolicy,
                 on_new_users: Optional[Callable[[Iterable[str]], None]] = None,
                 before_remove: Optional[Callable[[Dict[str, Mapping[str, Any]]],
                                                  Optional[Mapping[str, Tuple[bool, str]]]]] = None,
                 write_size: int = 5000, approve: str = "auto"):
        self.waldur = waldur
        self.approve = approve  # SLURM_SYNC_APPROVE (slurm_sync.domain.approval)
        self.slurm = slurm
        self.components = components
        self.policy = policy
        self.on_new_users = on_new_users
        self.before_remove = before_remove
        self.write_size = write_size  # orders planned and written together (SLURM_SYNC_BATCH_SIZE)
        self._tres: Optional[set] = None

    def cluster_tres(self) -> set:
        if self._tres is None:
            self._tres = set(self.slurm.read_tres())
        return self._tres

    # -- what a queued message names, as Waldur has it --

    def load(self, order_uuids: Sequence[str]) -> List[Dict[str, Any]]:
        """The named orders, read from Waldur (one listing of this offering's active orders): a uuid that is
        not an active order of this offering (forged, stale, already final) yields nothing, with a warning."""
        wanted = list(dict.fromkeys(str(u) for u in order_uuids))
        active = {o["uuid"]: o for o in self.waldur.active_orders()}
        found = [active[u] for u in wanted if u in active]
        missing = [u for u in wanted if u not in active]
        if missing:
            self._say_why_inactive(missing)
        return found

    # -- the read-only half, shared by `slurm-sync plan` --

    def resources_of(self, orders: Sequence[Mapping[str, Any]],
                     unanswered: Optional[set] = None) -> Dict[str, Dict[str, Any]]:
        """{resource uuid: resource} for the orders, read by listing where that is fewer requests; a resource
        Waldur could not answer for now goes in ``unanswered`` when given (raised otherwise)."""
        wanted = {o.get("marketplace_resource_uuid") for o in orders} - {None, ""}
        if not wanted:
            return {}
        found: Dict[str, Dict[str, Any]] = {}
        if len(wanted) > 2:  # one listing of the offering's live resources serves a batch
            found = {r["uuid"]: r for r in self.waldur.resources(LIVE_RESOURCE_STATES) if r["uuid"] in wanted}
        for uuid in sorted(wanted - set(found)):  # a Restore's resource is Terminated, so not listed
            try:
                found[uuid] = self.waldur.resource(uuid)
            except (WaldurHTTPError, WaldurUnavailable) as error:
                if transient(error):
                    if unanswered is None:
                        raise
                    unanswered.add(uuid)
                    continue
                log.warning("resource %s of an order could not be read: %s", uuid, error)
        return found

    def specs(self, orders: Sequence[Mapping[str, Any]], result: BatchResult, dry_run: bool = False,
              resources: Optional[Mapping[str, Mapping[str, Any]]] = None,
              unanswered: Iterable[str] = ()) -> Dict[str, AllocationSpec]:
        if resources is None:
            resources = self.resources_of(orders)
        specs: Dict[str, AllocationSpec] = {}
        teams = self._teams(orders)
        for order in orders:
            resource_uuid = order.get("marketplace_resource_uuid") or ""
            try:
                if resource_uuid in unanswered:
                    raise OrderDeferred(f"resource {resource_uuid}: Waldur did not answer")
                if resource_uuid not in resources and order.get("type") != "Create":
                    raise OrderRejected(f"the order's resource {resource_uuid[:40]!r} could not be read from Waldur")
                team = None
                if order.get("type") in ENSURE_TYPES and resource_uuid:
                    listed = teams is not None and order.get("type") in LISTED_TEAM_TYPES
                    team = teams(order) if listed else self._step(order, self.waldur.resource_team, resource_uuid)
                spec = allocation_spec(order_input(order, resources.get(resource_uuid), team), self.policy,
                                       self.components, self.cluster_tres(), self.approve != "auto")
                for member, why in spec.skipped_users:
                    log.warning("order %s: team member %r gets no SLURM association: %s", order["uuid"], member, why)
                    metrics.observe_skipped_user()
                specs[order["uuid"]] = spec
            except OrderRejected as error:
                self._fail(order, str(error), result, dry_run)
            except OrderDeferred as error:
                self._defer(order, str(error), result)
        return specs

    def _teams(self, orders: Sequence[Mapping[str, Any]]) -> Optional[Callable[[Mapping[str, Any]], list]]:
        """For a batch of more than two Create/Update orders: their teams from two listings (the provider's
        project permissions and the offering users' logins: the members Waldur's team/ endpoint serves), not
        one read per resource. None when teams are read per resource (few orders, or a token that may not
        read the permissions). A Restore's team is always read per resource: the permissions list only
        projects with a resource that is not Terminated, and a Restore's project may have none."""
        if sum(1 for o in orders if o.get("type") in LISTED_TEAM_TYPES and o.get("marketplace_resource_uuid")) <= 2:
            return None
        members = self.waldur.project_members()
        if members is None:
            return None
        logins = self.waldur.offering_logins()
        return lambda order: team_of(order, members, logins)

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
        picked = _one_per_resource(orders)
        live = [o for o in self._each_all(picked, self._approved, result) if o]
        if any(o.get("state") == "pending-provider" for o in picked):
            live = self._still_executing(live, result)
        unanswered: set = set()
        resources = self.resources_of(live, unanswered)
        specs = self.specs(live, result, resources=resources, unanswered=unanswered)
        by_uuid = {o["uuid"]: o for o in live}
        tree: Optional[List[Association]] = None

        def tree_rows() -> int:
            nonlocal tree
            if tree is None:
                tree = self.slurm.read_associations()  # once per task while the parts only add
            return len(tree)

        budget = getattr(self.slurm, "write_timeout", 900.0) / 2  # the estimate errs long: well inside the timeout
        for part in write_parts(specs, self.write_size, tree_rows, budget):
            if tree is None or any(spec.remove for spec in part.values()):
                tree = self.slurm.read_associations()
            tree = self._write_part(part, tree, by_uuid, resources, result)
        result.seconds = time.monotonic() - started
        return result

    def _write_part(self, specs: Mapping[str, AllocationSpec], tree: List[Association],
                    by_uuid: Mapping[str, Mapping[str, Any]], resources: Mapping[str, Mapping[str, Any]],
                    result: BatchResult) -> Optional[List[Association]]:
        """Plan ``specs`` against ``tree``, apply, report each order; the tree after it when that is known
        without reading SLURM again (the plan only added), else None."""
        before = ActualState(tree)
        plan = plan_batch(list(specs.values()), before, self.policy)
        self._each_all([by_uuid[uuid] for uuid in plan.errors],
                       lambda order, r: self._fail(order, plan.errors[order["uuid"]], r), result)
        applied = {uuid: account for uuid, account in plan.accounts.items()}
        held = self._bill_before_removal(applied, specs, resources, before)
        if held:  # their accounts stay: planned again without them (the same tree; nothing was written yet)
            for uuid, (is_transient, answer) in held.items():
                self._hold(by_uuid[uuid], applied[uuid], is_transient, answer, result)
            plan = plan_batch([spec for uuid, spec in specs.items() if uuid not in held], before, self.policy)
            applied = {uuid: account for uuid, account in plan.accounts.items() if uuid not in held}
        after = after_additions(tree, plan.operations)
        try:
            result.commits += self._apply(plan.operations)
        except SlurmCommandError as error:
            log.warning("a part of %d orders failed in SLURM (%s); retrying one order at a time", len(applied), error)
            applied = self._apply_one_by_one({u: specs[u] for u in applied}, by_uuid, result)
            after = None
        def finish(order: Mapping[str, Any], part: BatchResult) -> None:
            spec, account = specs[order["uuid"]], applied[order["uuid"]]
            self._finish(order, account, part, spec, frozenset(before.users.get(account, ())),
                         resources.get(spec.resource_uuid) or {})
        self._each_all([by_uuid[uuid] for uuid in applied], finish, result)
        return after

    def _bill_before_removal(self, accounts: Mapping[str, str], specs: Mapping[str, AllocationSpec],
                             resources: Mapping[str, Mapping[str, Any]],
                             before: ActualState) -> Dict[str, Tuple[bool, str]]:
        """Bill the final usage of the accounts these orders remove; {order uuid: (transient, Waldur's answer)}
        of those whose usage Waldur did not take."""
        if not self.before_remove:
            return {}
        order_of = {account: uuid for uuid, account in accounts.items()
                    if specs[uuid].remove and account and before.has(account)
                    and specs[uuid].resource_uuid in resources}
        if not order_of:
            return {}
        leaving = {account: {**resources[specs[uuid].resource_uuid], "backend_id": account}
                   for account, uuid in order_of.items()}
        not_taken = self.before_remove(leaving) or {}
        return {order_of[account]: why for account, why in not_taken.items() if account in order_of}

    def _hold(self, order: Mapping[str, Any], account: str, is_transient: bool, answer: str,
              result: BatchResult) -> None:
        """A Terminate whose final usage Waldur did not take: the account is not removed. A failure that may pass
        defers the order (taken up again); a refusal errs it with the server's answer."""
        if is_transient:
            self._defer(order, f"the final usage of {account} was not accepted by Waldur ({answer}); the account "
                               "is kept until it is", result)
        else:
            self._fail(order, f"the final usage of SLURM account {account} was refused by Waldur, so the account "
                              f"was not removed: {answer}", result)

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
                message, tb = f"SLURM refused the change: {error}", traceback.format_exc()
                self._each(orders[uuid], lambda order, r: self._fail(order, message, r, tb=tb), result)
        return applied

    def _roll_back(self, spec: AllocationSpec, account: str) -> None:
        """Remove what a failed Create made, so no half tree is left without a record."""
        undo = AllocationSpec(order_uuid=spec.order_uuid, remove=True, customer=spec.customer, project=spec.project,
                              allocation=account, allocation_source="", resource_uuid=spec.resource_uuid,
                              limits={}, users=None, kind="Terminate")
        try:
            plan = plan_batch([undo], ActualState(self.slurm.read_associations()), self.policy)
            self._apply(plan.operations)
        except SlurmCommandError as error:
            log.error("roll-back of %s for order %s failed: %s", account, spec.order_uuid, error)


def write_parts(specs: Mapping[str, AllocationSpec], size: int, tree_rows: Callable[[], int] = lambda: 0,
                budget: float = 300.0) -> Iterator[Dict[str, AllocationSpec]]:
    """A task's orders in the parts that are each planned and written together: the Creates and Updates in runs
    of at most ``size``, each as many as one ``load`` takes in an estimated ``budget`` seconds into the tree as it
    is then (``tree_rows()``, asked before each part; :mod:`slurm_sync.domain.load_cost`: a part's cost grows with
    the tree, and two loads cost more than one of both), then every removal in one part (the adapter bounds each
    removal write itself) planned against a fresh read that shows the new children."""
    ensure = [(uuid, spec) for uuid, spec in specs.items() if not spec.remove]
    start = 0
    while start < len(ensure):
        run = ensure[start:start + max(1, size)]
        length = part_length([len(spec.users or ()) for _, spec in run], tree_rows(), budget)
        yield dict(run[:length])
        start += length
    removals = {uuid: spec for uuid, spec in specs.items() if spec.remove}
    if removals:
        yield removals


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
