"""Each order's own Waldur steps in a batch: approve, finish (backend_id, allocation report, done), err, defer.

A transient Waldur error on one of these defers that order alone (result "deferred": the task takes it
up again) and the batch goes on; a wrong-state answer is settled by reading the order back. The orders
of a batch take each step together (:meth:`OrderSteps._each_all`: as many at a time as
SLURM_SYNC_WALDUR_CONCURRENCY lets through); one order's own calls stay in their order.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Sequence

from slurm_sync.domain.approval import left_for_a_person
from slurm_sync.domain.desired import AllocationSpec
from slurm_sync.waldur.allocation_report import report_allocation
from slurm_sync.waldur.api import WaldurHTTPError, WaldurUnavailable, transient

log = logging.getLogger(__name__)
_UUID = re.compile(r"[0-9a-f]{32}")


class OrderDeferred(Exception):
    """An order's own step met a transient Waldur error: the order waits, the batch goes on."""


@dataclass
class OrderOutcome:
    order_uuid: str
    result: str  # done | erred | skipped | deferred
    account: str = ""
    message: str = ""


@dataclass
class BatchResult:
    outcomes: List[OrderOutcome] = field(default_factory=list)
    commits: int = 0
    seconds: float = 0.0

    def by_result(self, result: str) -> List[str]:
        return [o.order_uuid for o in self.outcomes if o.result == result]


class OrderSteps:
    """The Waldur half of :class:`~slurm_sync.sync.pull.OrderProcessor` (``self.waldur``, ``self.components``,
    ``self.approve``)."""

    approve = "auto"

    def _step(self, order: Mapping[str, Any], call: Callable[..., Any], *args: Any) -> Any:
        """One Waldur call of this order's own; a transient failure defers the order (:class:`OrderDeferred`)."""
        try:
            return call(*args)
        except (WaldurHTTPError, WaldurUnavailable) as error:
            if transient(error):
                raise OrderDeferred(str(error)) from error
            raise

    def _each(self, order: Mapping[str, Any], step: Callable[[Mapping[str, Any], BatchResult], Any],
              result: BatchResult) -> Any:
        """Run one order's step; a transient Waldur failure defers this order and the batch goes on."""
        try:
            return step(order, result)
        except OrderDeferred as error:
            self._defer(order, str(error), result)
        except (WaldurHTTPError, WaldurUnavailable) as error:
            if not transient(error):
                raise
            self._defer(order, str(error), result)
        return None

    def _say_why_inactive(self, missing: Sequence[str]) -> None:
        """Queued orders Waldur no longer lists as active: say what became of the first few (one GET each; a rare
        path: rejected or canceled by staff, or done, while the message waited), and warn of the rest as messages
        naming nothing of this offering (stale or forged). Nothing is done for any of them."""
        told = set()
        for uuid in [u for u in missing if _UUID.fullmatch(u.replace("-", ""))][:5]:
            try:
                order = self.waldur.get_order(uuid)
            except (WaldurHTTPError, WaldurUnavailable):
                continue
            if str(order.get("offering_uuid", "")).replace("-", "") != self.waldur.offering_uuid.replace("-", ""):
                continue
            log.info("order %s (%s) became %s in Waldur while it was queued; nothing is done for it", uuid,
                     order.get("type"), order.get("state"))
            told.add(uuid)
        rest = [u for u in missing if u not in told]
        if rest:
            log.warning("%d queued order(s) are not orders of offering %s in Waldur (stale or forged messages); "
                        "nothing is done for them: %s", len(rest), self.waldur.offering_uuid,
                        ", ".join(m[:40] for m in rest[:20]))

    def _each_all(self, orders: Sequence[Mapping[str, Any]], step: Callable[..., Any], result: BatchResult) -> list:
        """:meth:`_each` over many orders, concurrently between orders; values and outcomes in the orders' order."""
        parts = [BatchResult() for _ in orders]
        values = self.waldur.each(lambda pair: self._each(pair[0], step, pair[1]), list(zip(orders, parts)))
        result.outcomes.extend(outcome for part in parts for outcome in part.outcomes)
        return values

    @staticmethod
    def _defer(order: Mapping[str, Any], why: str, result: BatchResult) -> None:
        log.warning("order %s (%s) deferred: Waldur did not answer (%s); it is taken up again", order.get("uuid"),
                    order.get("type"), why[:300])
        result.outcomes.append(OrderOutcome(order["uuid"], "deferred", message=why[:300]))

    def _still_executing(self, orders: Sequence[Mapping[str, Any]], result: BatchResult) -> List[Mapping[str, Any]]:
        """After approvals, what Waldur made of them (one listing): a server may err an order inside the
        approve call that answered 200 (a 7.0 Update whose allocation is not OK); nothing is written for it."""
        active = {o["uuid"]: o for o in self.waldur.active_orders()}
        kept = []
        for order in orders:
            now = active.get(order["uuid"])
            if now is not None and now.get("state") == "executing":
                kept.append(now)
                continue
            try:
                state = (now or self._step(order, self.waldur.get_order, order["uuid"])).get("state")
            except OrderDeferred as error:
                self._defer(order, str(error), result)
                continue
            log.warning("order %s (%s) is %s after its approval; nothing is written for it", order["uuid"],
                        order.get("type"), state)
            result.outcomes.append(OrderOutcome(order["uuid"], "skipped", message=f"order is {state}"))
        return kept

    def _approved(self, order: Mapping[str, Any], result: BatchResult) -> Optional[Mapping[str, Any]]:
        """The order once executing (approving it when pending), or None when it is not ours to do (a pending
        order SLURM_SYNC_APPROVE leaves for a person included)."""
        waits = left_for_a_person(order, self.components, self.approve)
        if waits:
            result.outcomes.append(OrderOutcome(order["uuid"], "skipped", message=waits))
            return None
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
                users_before: frozenset, resource_record: Mapping[str, Any]) -> None:
        resource = order.get("marketplace_resource_uuid")
        if not spec.remove and resource and account and resource_record.get("backend_id") != account:
            self.waldur.set_backend_id(resource, account)
        completed = False
        if resource:
            completed = report_allocation(self.waldur, self.components, order, spec.limits, users_before,
                                          () if spec.remove else spec.users)
        if not completed:
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
