"""Sentry for the worker and beat: errors of tasks (CeleryIntegration) and ERROR log records.

Enabled by SENTRY_DSN. Every event and breadcrumb is scrubbed before it leaves the process:

1. sentry-sdk's own :class:`EventScrubber`, recursive, with its default denylist plus ours
   (keys such as ``token``, ``password``, ``secret``, ``dsn``, ``authorization``): the value of
   such a key in request headers, extra, user, breadcrumbs' data, frames' locals becomes
   ``[Filtered]``;
2. ``before_send`` / ``before_breadcrumb``: the *value* of WALDUR_API_TOKEN (and the DSN, and the Redis
   password of CELERY_BROKER_URL / REDIS_URL) is blanked wherever it appears — messages, exception values,
   locals under any name, Celery task arguments, breadcrumb messages — as is the password part of any URL
   (``redis://:[Filtered]@redis:6379/0``), and denylisted keys are blanked at any depth.

Personal data collection stays at sentry-sdk's default (off).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from slurm_sync.observability.redaction import FILTERED, add_secret, redact_deep, secrets

log = logging.getLogger(__name__)

EXTRA_DENYLIST = ["dsn", "sentry_dsn", "waldur_api_token", "api_token", "access_token", "refresh_token", "pass",
                  "pwd", "secret_key", "client_secret", "x-api-key", "proxy_authorization"]


def denylist() -> list:
    from sentry_sdk.scrubber import DEFAULT_DENYLIST
    return [*DEFAULT_DENYLIST, *EXTRA_DENYLIST]


def _denied(key: str, keys: set) -> bool:
    lowered = key.lower().replace("-", "_")
    return lowered in keys or any(word in lowered for word in ("token", "password", "secret", "dsn"))


def _blank_keys(data: Any, keys: set) -> Any:
    """Values under a denylisted key (or a key containing token/password/secret/dsn) at any depth."""
    if isinstance(data, dict):
        return {k: (FILTERED if isinstance(k, str) and _denied(k, keys) and v not in (None, "")
                    else _blank_keys(v, keys)) for k, v in data.items()}
    if isinstance(data, list):
        return [_blank_keys(v, keys) for v in data]
    return data


def scrub(data: Dict[str, Any]) -> Dict[str, Any]:
    """An event or a breadcrumb with secret values and denylisted keys blanked."""
    keys = {k.lower().replace("-", "_") for k in denylist()}
    return _blank_keys(redact_deep(data, secrets()), keys)


def before_send(event: Dict[str, Any], hint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return scrub(event)


def before_breadcrumb(crumb: Dict[str, Any], hint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return scrub(crumb)


def init_sentry(dsn: str, *, token: str = "", environment: Optional[str] = None, release: Optional[str] = None,
                transport: Any = None, celery: bool = True, **options: Any) -> bool:
    """Start sentry-sdk when ``dsn`` is set; return whether it was started.

    ``token`` is registered as a secret in addition to WALDUR_API_TOKEN from the environment.
    ``transport`` replaces the network transport (tests capture envelopes in memory).
    """
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.scrubber import EventScrubber

    add_secret(token)
    add_secret(dsn)
    integrations = [LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)]
    if celery:
        from sentry_sdk.integrations.celery import CeleryIntegration
        integrations.append(CeleryIntegration())
    settings = dict(
        dsn=dsn, integrations=integrations, environment=environment, release=release,
        event_scrubber=EventScrubber(denylist=denylist(), recursive=True),
        before_send=before_send, before_breadcrumb=before_breadcrumb, before_send_transaction=before_send,
    )
    if transport is not None:
        settings["transport"] = transport
    settings.update(options)
    sentry_sdk.init(**settings)
    log.info("Sentry enabled (environment %s)", environment or "default")
    return True
