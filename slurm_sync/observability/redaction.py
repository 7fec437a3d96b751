"""Secrets of this deployment and how they are blanked out of text.

The Waldur token is the one secret slurm-sync holds; the Sentry DSN carries a (public) key and is
treated likewise. Values shorter than 6 characters are not matched: blanking every "abc" in a log
would make it unreadable and protects nothing.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, Optional, Tuple

FILTERED = "[Filtered]"
SECRET_VARIABLES = ("WALDUR_API_TOKEN", "SENTRY_DSN")
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
    """The secret values to blank, longest first (a token containing another is blanked whole)."""
    env = os.environ if env is None else env
    values = set(_extra)
    for variable in SECRET_VARIABLES:
        value = (env.get(variable) or "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            values.add(value)
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, values: Optional[Iterable[str]] = None) -> str:
    """``text`` with every secret value and every Authorization header value replaced by [Filtered]."""
    if not text:
        return text
    for value in (secrets() if values is None else values):
        if value in text:
            text = text.replace(value, FILTERED)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + FILTERED, text)
    if "=" in text or ":" in text:
        text = _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + FILTERED, text)
    return text


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
