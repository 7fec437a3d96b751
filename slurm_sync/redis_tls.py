"""Redis URLs with a password and TLS, as Celery (kombu), redis-py and slurm-sync read them.

``redis://:PASSWORD@host:6379/0`` sends ``AUTH`` (``redis://USER:PASSWORD@...`` an ACL user);
``rediss://:PASSWORD@host:6380/0`` speaks TLS. redis-py verifies the server's certificate on a
``rediss://`` URL unless the URL says otherwise, but kombu (Celery's broker) then falls back to
*no* verification with only a warning, and Celery's Redis result backend refuses to start: so
``celeryconfig`` passes :func:`ssl_options` as ``broker_use_ssl`` / ``redis_backend_use_ssl``,
and all three verify the certificate the same way. The URL's query may say how:

- ``ssl_cert_reqs=required`` (the default) | ``optional`` | ``none`` (no check: testing only);
- ``ssl_ca_certs=/path/ca.pem`` a private CA; ``ssl_certfile=`` / ``ssl_keyfile=`` a client certificate.

A password with characters other than letters, digits and ``-._~`` must be percent-encoded in the URL.
"""
from __future__ import annotations

import ssl
from typing import Dict, Optional, Union
from urllib.parse import parse_qsl, unquote, urlsplit

CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def _query(url: str) -> Dict[str, str]:
    return {key: unquote(value) for key, value in parse_qsl(urlsplit(url).query)}


def ssl_options(url: str) -> Optional[Dict[str, Union[str, int]]]:
    """Celery's ``broker_use_ssl`` / ``redis_backend_use_ssl`` for a ``rediss://`` URL; None for any other."""
    if not url or urlsplit(url).scheme != "rediss":
        return None
    query = _query(url)
    options: Dict[str, Union[str, int]] = {"ssl_cert_reqs": CERT_REQS[query.get("ssl_cert_reqs", "required")]}
    options.update({key: query[key] for key in FILE_OPTIONS if query.get(key)})
    return options


def url_problem(url: str) -> Optional[str]:
    """What is wrong with a redis:// or rediss:// URL (None when nothing; other schemes are not looked at)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    try:
        parts.port  # noqa: B018 - raises on a password that is not percent-encoded ("a/b", "a:b@c")
    except ValueError:
        return "the URL does not parse: percent-encode the password (e.g. / as %2F, @ as %40)"
    if not parts.hostname:
        return "expected a host, such as redis://:PASSWORD@redis.example.org:6379/0"
    query = _query(url)
    if parts.scheme == "redis" and any(key.startswith("ssl_") for key in query):
        return "ssl_* options need a rediss:// URL (TLS)"
    if query.get("ssl_cert_reqs", "required") not in CERT_REQS:
        return "ssl_cert_reqs must be required, optional or none"
    return None
