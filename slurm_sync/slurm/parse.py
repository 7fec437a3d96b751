"""Parse ``sacctmgr -P -n`` output (``|``-separated, no header) defensively.

A row with the wrong number of fields (a free-text field holding ``|`` or a newline, a
different SLURM version) is logged and skipped rather than trusted.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Iterator, List, Mapping, Set

from slurm_sync.domain.slurm_objects import Association

logger = logging.getLogger(__name__)

# Memory-like TRES are counted in MB; SLURM prints them with a unit suffix (mem=1200G).
_MB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2, "P": 1024 ** 3}
_TRES_VALUE = re.compile(r"^(\d+)([KMGTP]?)$")

# ``show account withassoc`` gives account rows and user rows with the account's Description;
# Description is free text, so it goes last and may keep a stray ``|``.
ASSOC_FIELDS = ("Cluster", "Account", "User", "ParentName", "Partition", "GrpTRESMins", "Description")
USER_FIELDS = ("User", "DefaultAccount")


def rows(output: str, width: int, what: str, free_last: bool = False) -> Iterator[List[str]]:
    """Split ``-P`` lines into ``width`` fields; with ``free_last`` the last field may contain ``|``."""
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|", width - 1) if free_last else line.split("|")
        if len(fields) != width:
            logger.warning("skipping %s line %d: %d fields, expected %d: %r", what, number, len(fields), width,
                           line[:200])
            continue
        yield fields


def parse_tres_minutes(text: str) -> Dict[str, int]:
    """``cpu=600,mem=1200G,gres/gpu=5`` -> {tres: minutes}; memory suffixes become MB.

    A malformed item is logged and dropped; the others are kept.
    """
    result: Dict[str, int] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        match = _TRES_VALUE.match(value.strip())
        if not sep or not key or not match:
            logger.warning("ignoring malformed TRES item %r in %r", item, text)
            continue
        number, unit = int(match.group(1)), match.group(2)
        result[key.strip()] = int(number * _MB_PER_UNIT[unit]) if unit else number
    return result


def parse_default_accounts(output: str) -> Dict[str, str]:
    """``show user format=User,DefaultAccount`` -> {user: default account}."""
    return {user: default for user, default in rows(output, len(USER_FIELDS), "user") if user}


def parse_associations(output: str, defaults: Mapping[str, str]) -> List[Association]:
    """``show account withassoc format=<ASSOC_FIELDS>`` -> associations.

    Partition-specific user rows are kept with their partition (a user who has only those elsewhere still has
    associations there); partition rows of accounts and accounts without an association on a cluster are skipped.
    """
    result: List[Association] = []
    for cluster, account, user, parent, partition, grp, description in rows(
            output, len(ASSOC_FIELDS), "association", free_last=True):
        if not cluster:
            continue
        if not account:
            logger.warning("skipping association without an account (user %r)", user)
            continue
        if partition and not user:
            logger.debug("skipping partition association %s/%s", account, partition)
            continue
        result.append(Association(
            account=account,
            user=user,
            parent="" if user else parent,
            grp_tres_mins=parse_tres_minutes(grp),
            is_default=bool(user) and defaults.get(user) == account,
            description="" if user else description,
            partition=partition,
        ))
    return result


def parse_tres(output: str) -> Set[str]:
    """``show tres format=Type,Name`` -> {"cpu", "mem", "gres/gpu", ...}."""
    return {f"{kind}/{name}" if name else kind for kind, name in rows(output, 2, "tres") if kind}
