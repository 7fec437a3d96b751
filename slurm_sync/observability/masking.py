"""The password part of a URL masked: the one text rule settings needs to show a value (``redis://:****@redis``).

Kept apart from :mod:`.redaction`, which reads the deployment's secrets through settings: settings imports this
module, and nothing here imports settings, so the two never import each other.
"""
from __future__ import annotations

import re

FILTERED = "[Filtered]"
MASK = "****"
# the password of a URL's user part: "redis://:pw@host:6379/0", "amqp://user:pw@host//"
URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/?#@:'\"]*:)([^\s/?#@'\"]+)@")


def mask_url(text: str, mask: str = MASK) -> str:
    """``text`` with the password of every URL in it replaced by ``mask`` (``redis://:****@redis:6379/0``);
    a password already masked (``****``, ``[Filtered]``) is left as it is."""
    if not text or "://" not in text:
        return text
    return URL_PASSWORD.sub(
        lambda m: m.group(1) + (m.group(2) if m.group(2) in (MASK, FILTERED) else mask) + "@", text)
