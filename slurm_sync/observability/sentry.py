"""Sentry for the worker and beat: errors of tasks (CeleryIntegration) and ERROR log records.

Enabled by SENTRY_DSN. Every event and breadcrumb is scrubbed before it leaves the process:

1. sentry-sdk's own scrubbing, told our denylist: 2.x's recursive ``EventScrubber``, 3.x's
   ``data_collection`` (frames' locals by denylist, no user data);
2. ``before_send`` / ``before_breadcrumb``, the same on every sentry-sdk major: the *value* of WALDUR_API_TOKEN (and the DSN, and the Redis
   password of CELERY_BROKER_URL / REDIS_URL) is blanked wherever it appears — messages, exception values,
   locals under any name, Celery task arguments, breadcrumb messages — as is the password part of any URL
   (``redis://:[Filtered]@redis:6379/0``), and the value of a denylisted key (``token``, ``password``,
   ``secret``, ``dsn``, ``authorization``, ...) is blanked at any depth: request headers, extra, contexts,
   breadcrumbs' data, frames' locals.

Personal data collection is off on both majors (2.x's default; 3.x collects user data unless told not to).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from slurm_sync.observability.redaction import FILTERED, add_secret, redact_deep, secrets

log = logging.getLogger(__name__)

# sentry-sdk 2.x's DEFAULT_DENYLIST (3.x has none to import), then ours
DENYLIST = ("password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey",
            "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for",
            "set_cookie", "cookie", "authorization", "proxy-authorization", "x_api_key", "csrf_token", "csrf",
            "_csrf", "_csrf_token", "_session", "user_session", "_xsrf", "xsrf-token",
            "dsn", "sentry_dsn", "waldur_api_token", "api_token", "access_token", "refresh_token", "pass",
            "pwd", "secret_key", "client_secret", "x-api-key", "proxy_authorization")


def denylist() -> list:
    return list(DENYLIST)


def sdk_scrubbing() -> Dict[str, Any]:
    """The init options that make this sentry-sdk major scrub on its own side too and collect no personal data:
    2.x takes an ``EventScrubber``; 3.x removed it (and ``before_send_transaction``) for ``data_collection``."""
    try:
        from sentry_sdk.scrubber import EventScrubber
    except ImportError:  # 3.x
        return {"data_collection": {"user_info": False,
                                    "stack_frame_variables": {"mode": "denylist", "terms": denylist()}},
                "before_send_log": before_send_log}
    return {"event_scrubber": EventScrubber(denylist=denylist(), recursive=True),
            "before_send_transaction": before_send}


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


def before_send_log(log: Dict[str, Any], hint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return scrub(log)


def logging_integration() -> Any:
    """ERROR records become events, INFO and up breadcrumbs; no record is shipped as a Sentry log (the worker's
    log goes to its own sink). 3.x turned ``level`` into the Sentry-logs level and added ``breadcrumb_level``."""
    import inspect

    from sentry_sdk.integrations.logging import LoggingIntegration
    if "breadcrumb_level" in inspect.signature(LoggingIntegration).parameters:  # 3.x
        return LoggingIntegration(level=None, event_level=logging.ERROR, breadcrumb_level=logging.INFO)
    return LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)


def init_sentry(dsn: str, *, token: str = "", environment: Optional[str] = None, release: Optional[str] = None,
                transport: Any = None, celery: bool = True, **options: Any) -> bool:
    """Start sentry-sdk when ``dsn`` is set; return whether it was started.

    ``token`` is registered as a secret in addition to WALDUR_API_TOKEN from the environment.
    ``transport`` replaces the network transport (tests capture envelopes in memory).
    """
    if not dsn:
        return False
    import sentry_sdk

    add_secret(token)
    add_secret(dsn)
    integrations = [logging_integration()]
    if celery:
        from sentry_sdk.integrations.celery import CeleryIntegration
        integrations.append(CeleryIntegration())
    settings = dict(
        dsn=dsn, integrations=integrations, environment=environment, release=release,
        before_send=before_send, before_breadcrumb=before_breadcrumb, **sdk_scrubbing(),
    )
    if transport is not None:
        settings["transport"] = transport
    settings.update(options)
    sentry_sdk.init(**settings)
    log.info("Sentry enabled (environment %s)", environment or "default")
    return True
