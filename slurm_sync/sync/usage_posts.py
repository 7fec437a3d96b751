"""Push's usage posts: each month's changed totals, then its per-user amounts, hung on the month's component usages.

The resources of a cycle are posted concurrently (``WaldurAPI.each``: as many at a time as
SLURM_SYNC_WALDUR_CONCURRENCY lets through); each resource's own calls stay in their order (its totals
before its per-user amounts).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Tuple

from slurm_sync.domain.usage import to_wire
from slurm_sync.sync.push_result import Month, PushResult
from slurm_sync.waldur.api import WaldurHTTPError

log = logging.getLogger(__name__)


def billing_date(month: Month) -> str:
    """A moment inside the month in every time zone (the 15th, noon UTC)."""
    return datetime(month[0], month[1], 15, 12, tzinfo=timezone.utc).isoformat()


def _created(resource: Mapping[str, Any]) -> Optional[datetime]:
    """When Waldur created the resource (None when it does not say): no usage before it is the resource's."""
    text = str(resource.get("created") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None  # compute_usage makes it aware
    except ValueError:
        return None


class UsagePosts:
    """The usage half of :class:`~slurm_sync.sync.push.UsageReporter` (``self.waldur``, ``self.store``,
    ``self.months``, ``self.usage_types``)."""

    # -- usage --

    def _report_month(self, month: Month, closed: bool, present: Mapping[str, Dict[str, Any]], now: datetime,
                      result: PushResult, cutoff: Optional[datetime], mode: str) -> None:
        """Totals of every resource first (one post each where they changed), then ONE listing of the month's
        component usages, then the per-user amounts that changed, hung on them."""
        if not present or not self.usage_types:
            return
        read = self.months.read(month, {a: r["uuid"] for a, r in present.items()}, now,
                                {a: t for a, t in ((a, _created(r)) for a, r in present.items()) if t},
                                cutoff, mode)
        report = read.report
        result.sacct_calls += read.sacct_reads
        result.jobs += read.rows
        result.ledger += read.problems
        if read.recount:
            result.recounted.append(month)
        eligible = [a for a, r in sorted(present.items()) if r.get("state") in ("OK", "Updating", "Terminating")]

        def totals_of(account: str) -> Optional[tuple]:
            uuid = present[account]["uuid"]
            totals = {t: to_wire(report.totals.get(account, {}).get(t, Decimal(0))) for t in self.usage_types}
            users = {user: {t: to_wire(amounts.get(t, Decimal(0))) for t in self.usage_types}
                     for user, amounts in report.per_user.get(account, {}).items()}
            with self._refused(uuid, account, month, totals, result):
                changed_users, sent = self._send_totals(uuid, month, closed, totals, users, result)
                return (account, uuid, totals, users, changed_users, sent) if changed_users else None
            # refused (logged): None

        # each resource's calls in their order (totals before per-user amounts); the resources together
        pending = [waiting for waiting in self.waldur.each(totals_of, eligible) if waiting]
        if not pending:
            return
        ids = self.waldur.component_usage_ids(f"{month[0]}-{month[1]:02d}-01")

        def users_of(item: tuple) -> None:
            account, uuid, totals, users, changed_users, sent = item
            with self._refused(uuid, account, month, totals, result):
                self._send_users(uuid, month, closed, users, changed_users, ids.get(uuid.replace("-", ""), {}),
                                 sent, result)
        self.waldur.each(users_of, pending)

    @contextmanager
    def _refused(self, resource: str, account: str, month: Month, totals: Mapping[str, str], result: PushResult):
        # One resource Waldur will not take (usage over a component's limit_amount, a state that takes no
        # usage, a component it does not know, a server error on it) must not stop the others' billing. What
        # was not sent is not recorded as sent: the next cycle tries again.
        try:
            yield
        except WaldurHTTPError as error:
            note = (f"usage of resource {resource} (account {account}) for {month[0]}-{month[1]:02d} "
                    f"{'failed' if error.transient else 'refused'} in Waldur: {error}; amounts {dict(totals)}")
            log.error(note)
            result.refused.append(note)
            result.not_accepted.setdefault(resource, (error.transient, str(error)))

    def _send_totals(self, resource: str, month: Month, closed: bool, totals: Dict[str, str],
                     users: Dict[str, Dict[str, str]], result: PushResult) -> Tuple[Dict[str, Dict[str, str]], Any]:
        """Post the totals that changed; return {type: {user: amount}} of the per-user amounts that changed, and
        what is now recorded as sent (read once here, handed to :meth:`_send_users`)."""
        sent_totals, sent_users = self.store.get(resource, month)
        changed = {t: a for t, a in totals.items() if sent_totals.get(t) != a}
        for t, amount in list(changed.items()):
            before = sent_totals.get(t)
            if before is not None and Decimal(amount) < Decimal(before):
                note = (f"usage anomaly: resource {resource} {t} {month[0]}-{month[1]:02d} went down from {before} "
                        f"to {amount}{' (closed month: not sent)' if closed else ''}")
                log.warning(note)
                result.anomalies.append(note)
                if closed:
                    del changed[t]
        # a user's zero that was never sent is no news: Waldur shows no usage for them either way
        changed_users = {t: {u: v[t] for u, v in users.items() if sent_users.get(u, {}).get(t, "0.00") != v[t]}
                         for t in self.usage_types}
        changed_users = {t: v for t, v in changed_users.items() if v}
        if changed:
            if closed and not self.waldur.files_usage_by_date:
                self._unreportable(resource, month, changed, sent_totals, result)
            else:
                self.waldur.set_usage(resource, billing_date(month), changed)
                result.add("usage_posts", 1)
            sent_totals.update(changed)
            # recorded at once: a per-user post refused later must not make these totals look unsent
            self.store.put(resource, month, sent_totals, sent_users)
        return changed_users, (sent_totals, sent_users)

    def _send_users(self, resource: str, month: Month, closed: bool, users: Dict[str, Dict[str, str]],
                    changed_users: Dict[str, Dict[str, str]], by_type: Mapping[str, str], sent: Any,
                    result: PushResult) -> None:
        sent_totals, sent_users = sent
        for t, per_user in sorted(changed_users.items()):
            if t not in by_type:
                if closed:  # the month's total never reached Waldur (7.0): nothing to hang these on, ever
                    self._unreportable(resource, month, {f"{t} of {u}": a for u, a in per_user.items()}, {}, result)
                    for user in per_user:
                        sent_users.setdefault(user, {})[t] = per_user[user]
                    self.store.put(resource, month, sent_totals, sent_users)
                continue  # no component usage to hang user usage on yet (total never posted)
            # the current line replaces the whole list; 7.0 takes one user per call: only the changed ones
            send = {u: v[t] for u, v in users.items()} if self.waldur.files_usage_by_date else per_user
            result.add("user_usage_posts", self.waldur.set_user_usages(by_type[t], send))
            for user in per_user:
                sent_users.setdefault(user, {})[t] = per_user[user]
            self.store.put(resource, month, sent_totals, sent_users)

    @staticmethod
    def _unreportable(resource: str, month: Month, amounts: Mapping[str, str], before: Mapping[str, str],
                      result: PushResult) -> None:
        """A closed month's change a 7.0-line server cannot take: logged once, with its amount."""
        for what, amount in sorted(amounts.items()):
            if Decimal(amount) == Decimal(before.get(what, "0")):
                continue  # nothing is lost
            note = (f"unreportable late usage: resource {resource} {what} {month[0]}-{month[1]:02d} is {amount} "
                    f"in SLURM, {before.get(what, 'nothing')} was reported; this Waldur (7.0 line) files usage "
                    "under its current month only")
            log.warning(note)
            result.unreportable.append(note)
