"""Log formats (SLURM_SYNC_LOG_FORMAT=text|json, default text) and secret redaction in every record.

``json``: one JSON object per line with ``ts``, ``level``, ``logger``, ``process``, ``message`` and
the record's structured fields (``extra=``), e.g. a SLURM command::

    {"ts": "...", "level": "INFO", "logger": "slurm_sync.slurm.runner", "message": "slurm command ok ...",
     "event": "slurm_command", "argv": ["sacctmgr", "-i", "load", "file=/dev/stdin"], "result": "ok",
     "returncode": 0, "seconds": 0.412}

``text``: the usual one-line format; the message carries the same facts.

:class:`RedactingFilter`, put on every handler, blanks the Waldur token (and any Authorization
header value) in the message, its arguments, structured fields and the traceback, whatever logger
the record comes from.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Optional

from slurm_sync.observability.redaction import redact, redact_deep, secrets

FORMAT_ENV = "SLURM_SYNC_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the attributes every LogRecord has; anything else came from extra= and is a structured field
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def log_format(env=None) -> str:
    """SLURM_SYNC_LOG_FORMAT, ``text`` when unset or invalid (an invalid value is reported by the settings check)."""
    from slurm_sync.settings import env_setting
    return env_setting(FORMAT_ENV, env)


class RedactingFilter(logging.Filter):
    """Blank secrets in the record before any formatter sees it (the record is changed in place)."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = secrets()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad %-format: keep the record as logging would
            message = str(record.msg)
        clean = redact(message, values)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, values)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, values)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, (str, list, tuple, dict)):
                setattr(record, key, redact_deep(value, values))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields from ``extra=`` are kept as fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data and not key.startswith("_"):
                data[key] = value
        if "task_id" not in data:
            data.update(_current_task())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, default=str, ensure_ascii=False)


def _current_task() -> dict:
    """The Celery task this record was logged in (what Celery's own task format shows), if any."""
    try:
        from celery._state import get_current_task
        task = get_current_task()
    except Exception:  # noqa: BLE001 - no Celery: no task
        return {}
    request_id = getattr(getattr(task, "request", None), "id", None) if task else None
    return {"task_id": request_id, "task_name": task.name} if request_id else {}


def formatter(fmt: Optional[str] = None, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    return JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(text_format)


def apply_to_logger(logger: logging.Logger, fmt: Optional[str] = None) -> None:
    """Put the redacting filter on ``logger``'s handlers, and the JSON formatter when ``fmt`` is json."""
    fmt = fmt or log_format()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        if fmt == "json":
            handler.setFormatter(JsonFormatter())


def configure(level: int = logging.INFO, fmt: Optional[str] = None) -> None:
    """The CLI's logging: one stderr handler on the root logger in the chosen format, redacting."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    apply_to_logger(logging.getLogger(), fmt)
