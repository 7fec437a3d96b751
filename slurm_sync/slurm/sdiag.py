"""Up to when is SLURM's accounting complete? ``sdiag``'s "DBD Agent queue size" answers it.

slurmctld sends every job's start and end to slurmdbd through one queue; while slurmdbd is down or slow the
records wait there (the queue's size is what sdiag prints) and reach the job table later, with their real,
past end times. A usage cycle may only treat a job as settled (:mod:`slurm_sync.domain.usage_ledger`) when no
such record can still arrive: when sdiag shows that queue empty, every job that ended before sdiag answered is
in slurmdbd. A ``margin`` before that moment leaves slurmdbd time to commit what it has just received.
Both lines read here ("sdiag output at <date> (<epoch>)", "DBD Agent queue size: <n>") are printed alike from
22.05 to SLURM's current master (src/sdiag/sdiag.c).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

from slurm_sync.slurm.runner import NativeExecutor, SlurmCommandError

log = logging.getLogger(__name__)

_AT = re.compile(r"^sdiag output at .*\((\d+)\)\s*$", re.M)
_QUEUE = re.compile(r"^DBD Agent queue size:\s*(\d+)\s*$", re.M)


def complete_at(text: str, margin: timedelta) -> Optional[datetime]:
    """From sdiag's output: the moment the accounting is complete up to, or None when records are still
    queued for slurmdbd or the output does not show both lines."""
    at, queue = _AT.search(text), _QUEUE.search(text)
    if not at or not queue:
        return None
    if int(queue.group(1)) != 0:
        return None
    return datetime.fromtimestamp(int(at.group(1)), timezone.utc) - margin


def accounting_complete_at(executor: NativeExecutor, margin: timedelta, timeout: float = 30) -> Optional[datetime]:
    """Run ``sdiag`` (argument list, with a timeout) and read :func:`complete_at`; None when it cannot tell."""
    try:
        result = executor.run(["sdiag"], timeout=timeout)
    except SlurmCommandError as error:
        log.warning("sdiag failed (%s): no job is taken as settled this cycle, the next reads them again", error)
        return None
    moment = complete_at(result.stdout, margin)
    if moment is None:
        queued = _QUEUE.search(result.stdout)
        log.info("slurmctld still holds %s record(s) for slurmdbd: no job is taken as settled this cycle",
                 queued.group(1) if queued else "an unknown number of")
    return moment
