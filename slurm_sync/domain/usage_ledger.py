"""A month's settled usage, kept between cycles, so a cycle reads only the jobs that can still change.

A job that ended before the *watermark* is settled: slurmdbd has its final record and its seconds inside the
month never change again. The ledger keeps, per account, the TRES-seconds of its settled jobs of the month
(:class:`~slurm_sync.domain.usage.UsageSeconds`) and the watermark they are complete up to. A cycle then asks
sacct only for ``--starttime=<watermark>``: slurmdbd selects ``time_end >= start || time_end = 0`` (22.05,
``as_mysql_jobacct_process.c``), which is exactly the jobs the ledger does NOT hold, so the month's usage is

    the ledger's settled seconds + everything that read returns, clipped to the month as before

and no job is counted twice or missed. The jobs of that read that ended before the new cutoff are folded into
the ledger and the watermark moves to the cutoff. The cutoff is a moment the accounting is proved complete up to
(:func:`slurm_sync.slurm.sdiag.accounting_complete_at`: slurmctld's queue to slurmdbd empty, minus a margin);
when that cannot be proved, nothing new is folded and the watermark stays.

A month is read whole again (a *recount*) when its ledger is missing, was made for other components or another
TRES source (the fingerprint), or is older than the recount interval: what can change a settled job's record
afterwards (``sacctmgr`` fixing runaway jobs, an archive loaded back) is then counted again within a day.
An account whose resource is not the one its entry was made for (a name reused) starts again from the month's
first second; so does an account new to the ledger (one extra sacct call, for those accounts only).

The watermark never passes the month's end: only jobs that ended inside the month are settled in its ledger. A
job still running at the month's end, or ending after it, is read again every cycle the month is reported (in
the closing days: ``--starttime`` = ``--endtime`` = the month's end, which sacct answers with exactly the jobs
that ran across it). A cutoff past the month's end therefore never asks sacct for a start after the end, and a
job that ended in the next month is never settled twice. An entry whose watermark lies outside its month (a
ledger written before this rule) is read again from the month's first second.

The ledger decides what is billed, and it lives in a Redis other programs may reach, so nothing in it is taken
as read (:meth:`MonthLedger.load`, :func:`plan_reads`): each entry carries an HMAC made with the deployment's
key (derived from its Waldur token: who can write Redis but holds no token cannot forge one), its amounts must be
finite, non-negative Decimals whose per-user sums make its totals, its watermark must lie in its month and not
after now. An entry that fails any check is dropped, said (``problems``), and its account read again from the
month's first second; a meta that fails makes the month a recount.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional, Tuple

from slurm_sync.domain.components import Components
from slurm_sync.domain.months import aware
from slurm_sync.domain.usage import Tally, UsageSeconds


def fingerprint(components: Components, tres_source: str) -> str:
    """What the kept seconds depend on: which TRES feed which component type, and the TRES source. (Unit factors
    are applied after, so changing one needs no recount.)"""
    return json.dumps([tres_source, sorted((c.type, c.tres) for c in components if c.accounting_type == "usage")])


@dataclass
class Entry:
    """One account's settled jobs of the month: complete up to ``watermark``, for resource ``resource``."""

    resource: str
    watermark: datetime


@dataclass
class MonthLedger:
    fingerprint: str
    counted_at: datetime  # when the month was last read whole
    entries: Dict[str, Entry] = field(default_factory=dict)
    seconds: UsageSeconds = field(default_factory=UsageSeconds)

    problems: List[str] = field(default_factory=list)  # what loading it dropped, said by the caller

    # -- as stored: one text per account and one for the month, so a store can keep them as a hash, each signed --

    def dump(self, key: bytes = b"") -> Dict[str, str]:
        fields = {"meta": _signed({"fingerprint": self.fingerprint, "counted_at": self.counted_at.isoformat()}, key)}
        for account, entry in self.entries.items():
            fields[f"a:{account}"] = _signed({"r": entry.resource, "w": entry.watermark.isoformat(),
                                              **self.seconds.of(account)}, key, account)
        return fields

    @classmethod
    def load(cls, fields: Mapping[str, str], key: bytes = b"") -> Optional["MonthLedger"]:
        """The ledger :meth:`dump` wrote; None when there is none or its meta cannot be trusted (the month is
        recounted). An entry that cannot be trusted is left out and named in ``problems``."""
        try:
            meta = _verified(fields["meta"], key)
            ledger = cls(str(meta["fingerprint"]), aware(datetime.fromisoformat(meta["counted_at"])))
        except (KeyError, ValueError, TypeError, AttributeError):
            return None
        for name, text in fields.items():
            if not name.startswith("a:"):
                continue
            account = name[2:]
            try:
                data = _verified(text, key, account)
                entry = Entry(str(data["r"]), aware(datetime.fromisoformat(data["w"])))
                _check_amounts(data)
            except (KeyError, ValueError, TypeError, AttributeError, ArithmeticError) as error:
                ledger.problems.append(f"usage ledger entry of account {account!r} dropped ({error}): its month is "
                                       "read again from sacct")
                continue
            ledger.entries[account] = entry
            ledger.seconds.put(account, data)
        return ledger


def ledger_key(secret: str) -> bytes:
    """The HMAC key of a deployment's ledger entries, derived from a secret only the deployment holds."""
    return hashlib.sha256(b"slurm-sync usage ledger\0" + secret.encode()).digest()


def _mac(body: str, key: bytes, account: str) -> str:
    return hmac.new(key, f"{account}\0{body}".encode(), hashlib.sha256).hexdigest()


def _signed(data: Dict[str, Any], key: bytes, account: str = "") -> str:
    body = json.dumps(data, sort_keys=True)
    return json.dumps({"d": body, "mac": _mac(body, key, account)})


def _verified(text: str, key: bytes, account: str = "") -> Dict[str, Any]:
    stored = json.loads(text)
    if not isinstance(stored, dict) or not hmac.compare_digest(str(stored.get("mac", "")),
                                                               _mac(str(stored.get("d", "")), key, account)):
        raise ValueError("its signature does not match: not written by this deployment")
    data = json.loads(stored["d"])
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def _amount(text: Any) -> Decimal:
    value = Decimal(str(text))
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount {text!r} is not a finite, non-negative number")
    return value


def _check_amounts(data: Mapping[str, Any]) -> None:
    """Totals and per-user amounts are finite and non-negative, and the users' amounts add up to the totals."""
    try:
        totals = {str(k): _amount(v) for k, v in (data.get("t") or {}).items()}
        sums: Dict[str, Decimal] = {}
        for by_type in (data.get("u") or {}).values():
            for type_, amount in by_type.items():
                sums[str(type_)] = sums.get(str(type_), Decimal(0)) + _amount(amount)
    except InvalidOperation as error:
        raise ValueError(f"an amount is not a number ({error})") from None
    if {k: v for k, v in sums.items() if v} != {k: v for k, v in totals.items() if v}:
        raise ValueError("its users' amounts do not add up to its totals")


@dataclass
class ReadPlan:
    """The sacct reads one cycle makes for a month: ``(start, accounts)`` each, and the ledger they continue."""

    reads: List[Tuple[datetime, List[str]]]
    ledger: MonthLedger
    recount: bool
    problems: List[str] = field(default_factory=list)  # entries of the stored ledger that were not trusted
    previous: Optional[MonthLedger] = None  # on a recount: the stored ledger its fresh sums are compared with


def settled_until(cutoff: Optional[datetime], month_end: datetime) -> Optional[datetime]:
    """Jobs that ended before this are settled in the month's ledger: the proved cutoff, never past the month."""
    return None if cutoff is None else min(aware(cutoff), aware(month_end))


def plan_reads(ledger: Optional[MonthLedger], resources: Mapping[str, str], month_start: datetime,
               now: datetime, fingerprint_now: str, recount_every: timedelta,
               month_end: Optional[datetime] = None) -> ReadPlan:
    """Which jobs to read for the accounts in ``resources`` ({account: resource uuid}): accounts whose entry
    is valid from their watermark (one read per distinct watermark, normally one), the others from the month's
    start. ``recount_every`` 0 reads the whole month every cycle."""
    month_start, now = aware(month_start), aware(now)
    month_end = aware(month_end) if month_end is not None else None
    problems = list(ledger.problems) if ledger is not None else []
    if ledger is not None:
        for account, entry in ledger.entries.items():
            if entry.watermark > now:
                problems.append(f"usage ledger entry of account {account!r} dropped (its watermark "
                                f"{entry.watermark.isoformat()} is in the future): its month is read again from sacct")
    recount = (ledger is None or ledger.fingerprint != fingerprint_now or not recount_every
               or now - ledger.counted_at >= recount_every or ledger.counted_at > now)
    if recount:
        fresh = MonthLedger(fingerprint_now, now)
        same = ledger is not None and ledger.fingerprint == fingerprint_now
        return ReadPlan([(month_start, sorted(resources))] if resources else [], fresh, True, problems,
                        ledger if same else None)
    kept = MonthLedger(ledger.fingerprint, ledger.counted_at)
    groups: Dict[datetime, List[str]] = {}
    for account in sorted(resources):
        entry = ledger.entries.get(account)
        if (entry is not None and entry.resource == resources[account] and month_start <= entry.watermark <= now
                and (month_end is None or entry.watermark <= month_end)):
            kept.entries[account] = entry
            kept.seconds.put(account, ledger.seconds.of(account))
            groups.setdefault(entry.watermark, []).append(account)
        else:
            groups.setdefault(month_start, []).append(account)
    return ReadPlan(sorted(groups.items()), kept, False, problems)


def compare_recount(previous: MonthLedger, checked: UsageSeconds, resources: Mapping[str, str]) -> List[str]:
    """A recount's fresh sums against the ledger it replaces, per account still of the same resource: ``checked``
    holds the jobs that ended before each account's stored watermark (what the stored entry claimed to hold). A
    difference is a late record (slurmdbd took a job after its time was settled) or a ledger changed by hand."""
    notes = []
    for account, entry in sorted(previous.entries.items()):
        if resources.get(account) != entry.resource:
            continue
        kept, fresh = previous.seconds.of(account), checked.of(account)
        if _decimals(kept) != _decimals(fresh):
            notes.append(f"usage ledger of account {account!r} (resource {entry.resource}) differed from sacct up to "
                         f"{entry.watermark.isoformat()}: kept {kept['t']} TRES-seconds, sacct {fresh['t']}; replaced "
                         "by the recount")
    return notes


def _decimals(sums: Mapping[str, Any]) -> Tuple[Dict[str, Decimal], Dict[str, Dict[str, Decimal]]]:
    return ({k: Decimal(v) for k, v in sums["t"].items() if Decimal(v)},
            {u: {k: Decimal(v) for k, v in by.items() if Decimal(v)} for u, by in sums["u"].items()
             if any(Decimal(v) for v in by.values())})


def fold(plan: ReadPlan, resources: Mapping[str, str], summed: Tally, cutoff: Optional[datetime],
         month_start: datetime) -> MonthLedger:
    """The ledger after this cycle: every read account's settled jobs added, its watermark at ``cutoff`` (never
    back: the jobs between were not read). ``cutoff`` is :func:`settled_until` (never past the month's end) and
    ``summed`` must be tallied with ``settled_before=cutoff``; a ``cutoff`` of None (completeness not proved)
    folds nothing and keeps every watermark."""
    ledger = plan.ledger
    ledger.seconds.add_all(summed.settled)
    for start, accounts in plan.reads:
        for account in accounts:
            watermark = max(aware(start), aware(cutoff)) if cutoff is not None else aware(start)
            ledger.entries[account] = Entry(resources[account], max(watermark, aware(month_start)))
    return ledger
