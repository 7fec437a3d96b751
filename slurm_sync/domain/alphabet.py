"""The safe alphabet of everything slurm-sync hands to sacctmgr, and the checks that enforce it.

The domain reduces names to this alphabet (:mod:`slurm_sync.domain.names`); the SLURM adapter checks
again before every command, as defence in depth: names with newlines, ``|``, backslashes or 200
characters were accepted by sacctmgr 22.05 and then crashed slurmdbd, so nothing else may pass.
"""
from __future__ import annotations

import re
from typing import Mapping

# The one name policy: naming (what slurm-sync derives or accepts from Waldur), the load-file
# writer and argv building all use these. ``fullmatch``, never ``$``: ``$`` matches before a
# trailing newline, and a newline in a name crashed slurmdbd 22.05.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
USER = re.compile(r"[a-z_][a-z0-9._-]{0,31}")  # a Linux login: useradd's rule, lower case, at most 32
TRES = re.compile(r"(gres/)?[a-z][a-z0-9_]*")
TEXT = re.compile(r"[A-Za-z0-9 _.-]*")
TEXT_MAX = 100
RESERVED_ACCOUNTS = frozenset({"root"})


def name(value: object, what: str = "name") -> str:
    """An account or cluster name."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(f"unsafe SLURM {what} {value!r}: must match {NAME.pattern}")
    return value


def user(value: object, what: str = "user") -> str:
    if not isinstance(value, str) or not USER.fullmatch(value) or value.endswith((".", "-")) or ".." in value:
        raise ValueError(f"unsafe SLURM {what} {value!r}: must match {USER.pattern}")
    return value


def owned_account(value: object, what: str = "account") -> str:
    """An account slurm-sync may create, change, remove or make a user's default: never root."""
    name(value, what)
    if value in RESERVED_ACCOUNTS:
        raise ValueError(f"refusing to use {value!r} as a {what}: it is outside any allocation tree")
    return value  # type: ignore[return-value]


def tres(value: object) -> str:
    if not isinstance(value, str) or not TRES.fullmatch(value) or len(value) > 64:
        raise ValueError(f"unsafe TRES name {value!r}: must match {TRES.pattern}")
    return value


def limit(value: object, what: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"invalid {what} {value!r}: must be an int >= -1")
    return value


def limits(values: Mapping[str, int]) -> dict:
    return {tres(key): limit(minutes, f"limit for {key}") for key, minutes in values.items()}


def text(value: object, what: str = "text") -> str:
    """Descriptions and organizations: short, and only ``[A-Za-z0-9 _.-]`` (no quotes, no ``|``)."""
    if not isinstance(value, str) or not TEXT.fullmatch(value) or len(value) > TEXT_MAX:
        raise ValueError(f"unsafe SLURM {what} {value!r}: must match {TEXT.pattern}, at most {TEXT_MAX} chars")
    return value
