"""Push: SLURM usage, limits, associations and account state go back to Waldur, once, and only what changed.

One cycle: list the offering's resources (one paged read), read the SLURM tree (one
``sacctmgr`` read) to report vanished or returned accounts and, against one paged read of
Waldur's associations, the limits and associations that differ; then for each billing month
to report compute usage per component and per user (:mod:`slurm_sync.sync.month_usage`: the
month's settled jobs are kept in a ledger, so sacct reads only the jobs since the last cycle,
in ONE call for all allocations), and post only the amounts that differ from the last ones
reported (kept in a :class:`ReportedStore`): every changed total first, then one listing of the
month's component usages, then the changed per-user amounts. Amounts are rounded to 2 places
only here, when sent.

On a 7.0-line server ``set_usage`` files every post under the server's current month, so a
closed month's totals are never sent there (they would overwrite this month's): late usage
for a closed month is logged as unreportable, with its amount. Per-user usage hangs on the
month's component usage (``set_user_usages``, one user per call on 7.0), which names its
month, on both lines. A resource Waldur will not take a report for (refused, or a server
error) is logged and tried again next cycle; the others are reported all the same.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.months import months_to_report
from slurm_sync.domain.components import Components
from slurm_sync.domain.names import NamingError, check_account_name
from slurm_sync.domain.drift import differences
from slurm_sync.slurm.sdiag import accounting_complete_at
from slurm_sync.sync.month_usage import LedgerStore, MonthUsage
from slurm_sync.sync.ownership import owned_resources
from slurm_sync.sync.push_result import PushResult
from slurm_sync.sync.reported_store import ReportedStore
from slurm_sync.sync.usage_posts import Month, UsagePosts
from slurm_sync.waldur.api import WaldurAPI, WaldurHTTPError, WaldurUnavailable

log = logging.getLogger(__name__)


class UsageReporter(UsagePosts):
    """One push cycle (:meth:`run`). With a ``ledger`` each month's settled jobs are kept and only the jobs since
    are read (:mod:`slurm_sync.sync.month_usage`); ``complete_at`` says up to when SLURM's accounting is complete
    (default: ``sdiag`` through the sacctmgr client's runner, :mod:`slurm_sync.slurm.sdiag`, minus ``margin``)."""

    def __init__(self, waldur: WaldurAPI, sacctmgr: Any, components: Components, store: ReportedStore, *,
                 tz: str = "UTC", closing_day: int = 3, tres_source: str = "alloc",
                 lines: Optional[Callable[[List[str]], Iterable[str]]] = None,
                 ledger: Optional[LedgerStore] = None, recount_every: timedelta = timedelta(hours=24),
                 margin: timedelta = timedelta(minutes=5),
                 complete_at: Optional[Callable[[], Optional[datetime]]] = None):
        self.waldur = waldur
        self.sacctmgr = sacctmgr
        self.components = components
        self.store = store
        self.tz = tz
        self.closing_day = closing_day
        self.usage_types = [c.type for c in components if c.accounting_type == "usage"]
        self.months = MonthUsage(components, tres_source=tres_source, tz=tz, lines=lines, ledger=ledger,
                                 recount_every=recount_every)
        self.complete_at = complete_at or (lambda: accounting_complete_at(sacctmgr.executor, margin))

    def run(self, now: Optional[datetime] = None, resource_uuids: Optional[Sequence[str]] = None,
            months: Optional[Sequence[Month]] = None) -> PushResult:
        now = now or datetime.now(timezone.utc)
        requests_before = self.waldur.request_count
        result = PushResult()
        resources = self._owned(self._resources(resource_uuids), result)
        actual = ActualState(self.sacctmgr.read_limits_and_users())
        present = self._report_state(resources, actual, result)
        self._reconcile(present, actual, result)
        current = months_to_report(now, 0, self.tz)[-1]
        result.months = list(months or months_to_report(now, self.closing_day, self.tz))
        # before the reads: every job that ended before it is in slurmdbd by the time sacct runs
        cutoff = self.complete_at() if present and self.usage_types and self.months.ledger is not None else None
        for month in result.months:
            self._report_month(month, month != current, present, now, result, cutoff,
                               mode="keep" if resource_uuids is None else "whole")
        result.waldur_requests = self.waldur.request_count - requests_before
        return result

    def report_final(self, leaving: Mapping[str, Mapping[str, Any]], now: Optional[datetime] = None) -> PushResult:
        """Usage up to ``now`` of allocations about to be removed ({account: resource}), for every month still
        reported; the last hours of a terminated allocation are billed before its account goes. The resources
        whose usage Waldur did not take are in ``not_accepted``: their accounts must stay (the caller holds
        their Terminate), since what was not billed now could never be read again."""
        now = now or datetime.now(timezone.utc)
        requests_before = self.waldur.request_count
        result = PushResult()
        present = {check_account_name(account): dict(resource) for account, resource in leaving.items()}
        current = months_to_report(now, 0, self.tz)[-1]
        result.months = list(months_to_report(now, self.closing_day, self.tz))
        try:
            for month in result.months:
                self._report_month(month, month != current, present, now, result, None, mode="use")
        except (WaldurHTTPError, WaldurUnavailable) as error:  # a listing the whole month's report hangs on
            transient = not isinstance(error, WaldurHTTPError) or error.transient
            for resource in present.values():
                result.not_accepted.setdefault(resource["uuid"], (transient, str(error)))
        result.waldur_requests = self.waldur.request_count - requests_before
        return result

    def bill_final(self, leaving: Mapping[str, Mapping[str, Any]]) -> Dict[str, Tuple[bool, str]]:
        """The pull side's ``before_remove``: :meth:`report_final` of the allocations Terminate orders are about to
        remove ({account: resource}); {account: (transient, Waldur's answer)} of those whose usage Waldur did not
        take, whose accounts must stay."""
        result = self.report_final(leaving)
        log.info("final usage of %d terminated allocation(s): %d usage posts, %d user-usage posts, %d not accepted",
                 len(leaving), result.usage_posts, result.user_usage_posts, len(result.not_accepted))
        return {account: result.not_accepted[resource["uuid"]] for account, resource in leaving.items()
                if resource["uuid"] in result.not_accepted}

    # -- state --

    def _resources(self, only: Optional[Sequence[str]]) -> Dict[str, Dict[str, Any]]:
        by_account: Dict[str, Dict[str, Any]] = {}
        for resource in self.waldur.resources():
            if only and resource["uuid"] not in only:
                continue
            if not resource.get("backend_id"):
                continue
            try:
                by_account[check_account_name(resource["backend_id"])] = resource
            except NamingError as error:
                log.warning("resource %s skipped: %s", resource["uuid"], error)
        return by_account

    def _owned(self, resources: Dict[str, Dict[str, Any]], result: PushResult) -> Dict[str, Dict[str, Any]]:
        if not resources:
            return resources
        kept, skipped = owned_resources(resources, self.sacctmgr.read_descriptions())
        result.skipped_foreign = len(skipped)
        for note in skipped:
            if self.store.first_time(note):
                log.warning(note)
                result.foreign.append(note)
        return kept

    def _report_state(self, resources: Dict[str, Dict[str, Any]], actual: ActualState,
                      result: PushResult) -> Dict[str, Dict[str, Any]]:
        """Err resources whose account vanished, recover those whose account is back; return the present ones."""
        present = {}
        # a 7.0-line server keeps the allocation's state where the provider cannot read it: go by what we reported
        reported = self.store.state if self.waldur.hides_allocation_state else (lambda uuid: None)
        for account, resource in resources.items():
            shown = "Erred" if resource.get("state") == "Erred" else reported(resource["uuid"]) or resource.get("state")
            if actual.has(account):
                present[account] = resource
                if shown == "Erred":
                    self._recover(resource, account, result)
            elif shown != "Erred":
                message = f"SLURM account {account!r} of this resource does not exist in the cluster"
                log.warning("resource %s: %s", resource["uuid"], message)
                if self._call(self.waldur.set_resource_erred, resource["uuid"], message):
                    self.store.put_state(resource["uuid"], "Erred")
                result.erred.append(resource["uuid"])
        return present

    def _recover(self, resource: Dict[str, Any], account: str, result: PushResult) -> None:
        """The account is back (or was never gone): bring the resource back to OK where the server lets the
        provider; where it does not, say so once (its usage cannot be reported while it is Erred)."""
        uuid = resource["uuid"]
        try:
            recovered = self.waldur.set_resource_ok(uuid)
        except WaldurHTTPError as error:
            if error.transient:
                raise
            log.warning("set_resource_ok refused: %s", error)
            return
        if recovered or resource.get("state") != "Erred":  # where only the allocation was set erred, it is back
            self.store.put_state(uuid, "OK")
            result.recovered.append(uuid)
            resource["state"] = "OK"
            return
        if self.store.state(uuid) != "Erred-stuck":
            note = (f"resource {uuid} (account {account}) is Erred in Waldur while its SLURM account exists; this "
                    "Waldur (7.0 line) has no provider call to bring it back to OK and takes no usage for it: a "
                    "Waldur staff user must set the resource OK (see docs/push.md, Erred resources)")
            log.error(note)
            result.unreportable.append(note)
            self.store.put_state(uuid, "Erred-stuck")

    # -- limits and associations --

    def _reconcile(self, present: Mapping[str, Dict[str, Any]], actual: ActualState, result: PushResult) -> None:
        shown = self.waldur.associations() if present else None
        diff = differences(present, actual, self.components, shown)
        for resource, limits in diff.limits.items():
            log.info("resource %s: limits in SLURM differ from Waldur's; sending %s", resource, limits)
        posts = [(self.waldur.set_resource_limits, resource, limits, "limit_posts")
                 for resource, limits in diff.limits.items()]
        posts += [(call, resource, user, "association_posts") for call, pairs in (
            (self.waldur.create_association, diff.add), (self.waldur.delete_association, diff.remove))
            for resource, user in pairs]
        # each post is one resource's, independent of the others: together, as many at a time as allowed
        for post, sent in zip(posts, self.waldur.each(lambda post: self._call(*post[:3]), posts)):
            result.add(post[3], sent)

    @staticmethod
    def _call(function, *args) -> bool:
        try:
            function(*args)
        except WaldurHTTPError as error:
            if error.transient:
                raise
            log.warning("%s refused: %s", function.__name__, error)
            return False
        return True
