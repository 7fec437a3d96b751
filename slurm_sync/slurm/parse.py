"""Parse ``sacctmgr -P -n`` output (``|``-separated, no header) defensively, and TRES values for sacctmgr
and sacct alike (one unit table: memory-like TRES are counted in MB).

A row with the wrong number of fields (a free-text field holding ``|`` or a newline, a
different SLURM version) is logged and skipped rather than trusted.
"""
from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Dict, Iterator, List, Mapping, Set, Tuple

from slurm_sync.domain.slurm_objects import Association

logger = logging.getLogger(__name__)

# Memory-like TRES are counted in MB; SLURM prints them with a unit suffix (mem=1200G).
MB_PER_UNIT = {"": Decimal(1), "K": Decimal(1) / 1024, "M": Decimal(1), "G": Decimal(1024),
               "T": Decimal(1024 ** 2), "P": Decimal(1024 ** 3)}
_WHOLE_LIMIT = re.compile(r"^\d+[KMGTP]?$")


class BadTRES(ValueError):
    """A TRES pair or value that cannot be trusted."""


def tres_pairs(text: str) -> Iterator[Tuple[str, str]]:
    """``cpu=2,mem=100M`` -> (name, value text) pairs; raises :class:`BadTRES` on a pair without both."""
    for pair in (text or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BadTRES(f"bad TRES {pair!r}")
        yield name.strip(), value.strip()


def tres_value(text: str) -> Decimal:
    """A TRES value as SLURM prints it (``2``, ``1200G``) -> a non-negative Decimal, memory units in MB."""
    unit = text[-1].upper() if text and text[-1].isalpha() else ""
    try:
        number = Decimal(text[:-1] if unit else text) * MB_PER_UNIT[unit]
    except (InvalidOperation, KeyError):
        raise BadTRES(f"bad TRES value {text!r}") from None
    if not number.is_finite() or number < 0:
        raise BadTRES(f"bad TRES value {text!r}")
    return number

# ``show account withassoc`` gives account rows and user rows with the account's Description;
# Description is free text, so it goes last and may keep a stray ``|``.
ASSOC_FIELDS = ("Cluster", "Account", "User", "ParentName", "Partition", "GrpTRESMins", "Description")
USER_FIELDS = ("User", "DefaultAccount")
# ``show assoc wopi wopl``: the associations with their limits, no parents, Descriptions or DefaultAccounts
LIMIT_FIELDS = ("Cluster", "Account", "User", "Partition", "GrpTRESMins")


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
        try:
            for key, value in tres_pairs(item):
                if not _WHOLE_LIMIT.match(value):
                    raise BadTRES(f"bad TRES value {value!r}")
                result[key] = int(tres_value(value))
        except BadTRES:
            logger.warning("ignoring malformed TRES item %r in %r", item.strip(), text)
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


def parse_limits_and_users(output: str) -> List[Association]:
    """``show assoc wopi wopl format=<LIMIT_FIELDS>`` -> associations without parent, Description or default (what
    a push cycle compares: which accounts exist, their limits, their users)."""
    joined = "\n".join(f"{c}|{a}|{u}||{p}|{g}|" for c, a, u, p, g in rows(output, len(LIMIT_FIELDS), "association"))
    return parse_associations(joined, {})


def parse_descriptions(output: str) -> Dict[str, str]:
    """``show account format=Account,Description`` -> {account: Description}."""
    return {account: description for account, description in rows(output, 2, "account", free_last=True) if account}


def parse_tres(output: str) -> Set[str]:
    """``show tres format=Type,Name`` -> {"cpu", "mem", "gres/gpu", ...}."""
    return {f"{kind}/{name}" if name else kind for kind, name in rows(output, 2, "tres") if kind}
