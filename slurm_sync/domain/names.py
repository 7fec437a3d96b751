"""SLURM names from Waldur data: safe, bounded, deterministic, unique.

Only names reduced to ``[a-z0-9_-]`` and a bounded length may reach sacctmgr: hostile names
passed as plain arguments crashed slurmdbd 22.05 on the test bed (:mod:`slurm_sync.domain.alphabet`).
Account names are derived, never taken raw; user names cannot be derived (they are logins), so
they are validated and refused when unsafe.
"""
from __future__ import annotations

import hashlib
import pwd
import re
import unicodedata
from typing import Callable, Collection, Optional

from slurm_sync.domain import alphabet as safety

ACCOUNT_NAME = safety.NAME
RESERVED_USERS = frozenset({"root", "slurm", "daemon", "bin", "sys", "nobody", "munge", "mysql"})
DEFAULT_MIN_UID = 1000  # Debian's FIRST_UID: logins below it are system accounts
SUFFIX_LEN = 6
MAX_SOURCE_CHARS = 256  # longer input is cut before any work: 10 kB slugs exist in the wild


class NamingError(ValueError):
    """A name that cannot be made safe; the message is meant for the order's error_message."""


def _clean(text: str) -> str:
    """Fold to ASCII lower case and replace every run of other characters by one '-'."""
    text = unicodedata.normalize("NFKD", str(text)[:MAX_SOURCE_CHARS])
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9_]+", "-", text)
    return text.strip("-_")


def stable_suffix(key: str) -> str:
    """A short suffix that is the same for the same key (a Waldur uuid) on every run."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:SUFFIX_LEN]


def account_name(prefix: str, source: str, uuid: str, max_len: int, *, force_suffix: bool = False) -> str:
    """``prefix`` + cleaned ``source``, cut to ``max_len``.

    When cleaning or cutting changed the source (or ``force_suffix``), a stable suffix from the
    object's uuid keeps two different objects from meeting on one name.
    """
    if not uuid:
        raise NamingError("cannot name a SLURM account for an object without a uuid")
    cleaned = _clean(source or "")
    base = prefix + cleaned
    changed = force_suffix or not cleaned or cleaned != str(source) or len(base) > max_len
    if not changed:
        return _leading_alnum(base)
    room = max_len - SUFFIX_LEN - 1
    head = base[:room].rstrip("-_") if room > 0 else ""
    name = f"{head}-{stable_suffix(uuid)}" if head else f"{prefix}{stable_suffix(uuid)}"[:max_len]
    return _leading_alnum(name)


def _leading_alnum(name: str) -> str:
    """sacctmgr names start with a letter or digit; a prefix may start with '_' or '-'."""
    return name if ACCOUNT_NAME.fullmatch(name) else "a" + name[1:]


def allocation_name(prefix: str, source: str, uuid: str, max_len: int, taken: Collection[str] = ()) -> str:
    """Like :func:`account_name`, plus the stable suffix when the name is taken by another allocation."""
    name = account_name(prefix, source, uuid, max_len)
    if name in taken:
        name = account_name(prefix, source, uuid, max_len, force_suffix=True)
    return name


def check_account_name(name: Optional[str]) -> str:
    """Validate a name read back from Waldur (a backend_id) before it is trusted."""
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name):
        raise NamingError(f"backend_id {_quoted(name)} is not a safe SLURM account name ([a-z0-9_-], at most 64)")
    return name


def check_user_name(name: Optional[str], min_uid: Optional[int] = None,
                    uid_of: Optional[Callable[[str], Optional[int]]] = None) -> str:
    """A team member's login must already be safe: it names a real user, so it is never rewritten.

    ``min_uid``: a login that exists on the cluster's head node with a uid below it is a system account
    (``_apt``, ``www-data``) and is refused; None skips the look-up. ``uid_of`` looks a login's uid up where
    SLURM runs (docker mode: ``getent`` inside the SLURM container); by default in this host's user database.
    Unknown logins pass: they may come from LDAP later.
    """
    try:
        safety.user(name)
    except ValueError:
        raise NamingError(
            f"offering user name {_quoted(name)} is not a valid SLURM user name (lower-case letters, digits, "
            "'.', '_' and '-', starting with a letter or '_', not ending in '.' or '-', at most 32)") from None
    if name in RESERVED_USERS:
        raise NamingError(f"offering user name {name!r} is a reserved system account")
    if min_uid is not None:
        uid = (uid_of or _local_uid)(name)  # type: ignore[arg-type]
        if uid is not None and uid < min_uid:
            raise NamingError(f"offering user name {name!r} is a system account on the head node "
                              f"(uid {uid} < {min_uid})")
    return name  # type: ignore[return-value]


def _local_uid(name: str) -> Optional[int]:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"
