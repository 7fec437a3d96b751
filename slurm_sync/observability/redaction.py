"""Secrets of this deployment and how they are blanked out of text.

The Waldur token and the Redis password (in CELERY_BROKER_URL / REDIS_URL, or compose's REDIS_PASSWORD)
are the secrets slurm-sync holds; the Sentry DSN carries a (public) key and is treated likewise. Values
shorter than 6 characters are not matched: blanking every "abc" in a log would make it unreadable and
protects nothing. The password part of any URL (``redis://:pw@host``, ``amqp://user:pw@host``) is blanked
whatever its length.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from slurm_sync.observability.masking import FILTERED, mask_url  # noqa: F401  (FILTERED: re-exported)
from slurm_sync.settings import environment

SECRET_VARIABLES = ("WALDUR_API_TOKEN", "SENTRY_DSN", "REDIS_PASSWORD")
URL_VARIABLES = ("CELERY_BROKER_URL", "REDIS_URL", "CELERY_RESULT_BACKEND")  # may carry a password
MIN_SECRET_LENGTH = 6
# "Authorization: Token abc", "Bearer abc" in free text
_AUTH_HEADER = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(token|bearer|basic)?\s*[^\s\"',}]+")
# "password=abc", "'api_token': 'abc'", "?token=abc" in free text (a dict's repr, a URL, a command line)
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\b[\w-]*(?:token|password|passwd|secret|dsn|api_?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[Filtered\]|\*\*\*\*)[^\s\"',}&]{3,}")  # a masked "****abcd" or a "-" is shown as it is

_extra: set = set()


def add_secret(value: Optional[str]) -> None:
    """Register one more value to blank (e.g. a token given on the command line)."""
    if value and len(value.strip()) >= MIN_SECRET_LENGTH:
        _extra.add(value.strip())


def secrets(env: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The secret values to blank, longest first (a token containing another is blanked whole): the
    variables' values and the passwords of the URL variables, as written and percent-decoded."""
    if env is None:
        env = environment()
    values = set(_extra)
    candidates = [(env.get(variable) or "").strip() for variable in SECRET_VARIABLES]
    for variable in URL_VARIABLES:
        try:
            password = urlsplit((env.get(variable) or "").strip()).password or ""
        except ValueError:  # an unparsable URL: settings report it (masked)
            password = ""
        candidates += [password, unquote(password)]
    values.update(value for value in candidates if len(value) >= MIN_SECRET_LENGTH)
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, values: Optional[Iterable[str]] = None) -> str:
    """``text`` with every secret value, every Authorization header value and every URL's password replaced
    by [Filtered]."""
    if not text:
        return text
    for value in (secrets() if values is None else values):
        if value in text:
            text = text.replace(value, FILTERED)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + FILTERED, text)
    if "=" in text or ":" in text:
        text = _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + FILTERED, text)
    return mask_url(text, FILTERED)


def redact_deep(data: Any, values: Optional[Iterable[str]] = None) -> Any:
    """A copy of ``data`` (dicts, lists, tuples, strings) with secrets blanked in every string, keys included."""
    values = tuple(secrets() if values is None else values)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return redact(item, values)
        if isinstance(item, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, tuple):
            return tuple(walk(v) for v in item)
        return item

    return walk(data)
