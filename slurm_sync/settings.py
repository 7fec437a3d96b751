"""Settings from the environment, typed and validated once at start-up.

Every bad variable is reported, each on its own line naming the variable, the value
and what is expected, so an operator fixes them all in one go.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slurm_sync.observability.masking import mask_url
from slurm_sync.redis_tls import url_problem

TRUE_WORDS = {"1", "true", "yes", "on", "y", "t"}
FALSE_WORDS = {"0", "false", "no", "off", "n", "f", ""}
DIRECTIONS = ("pull", "push", "both")
DEPLOYMENT_TYPES = ("native", "docker")
USAGE_TRES_SOURCES = ("alloc", "req")
API_COMPAT = ("auto", "7.0", "current")
_PREFIX = re.compile(r"^[a-z0-9_-]{0,16}$")
_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UUID = re.compile(r"^[0-9a-f]{32}$")
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SettingsError(ValueError):
    """One or more environment variables are invalid; ``problems`` has one line per variable."""

    def __init__(self, problems: List[str]):
        self.problems = problems
        super().__init__("Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    waldur_api_url: str = ""
    waldur_api_token: str = field(default="", repr=False)
    waldur_sync_direction: str = "pull"
    waldur_offering_uuid: str = ""
    waldur_api_compat: str = "auto"
    requests_verify_ssl: bool = True
    slurm_tres_config_path: str = "config-components.yaml"
    slurm_deployment_type: str = "native"
    slurm_customer_prefix: str = "hpc_"
    slurm_project_prefix: str = "hpc_"
    slurm_allocation_prefix: str = "hpc_"
    slurm_allocation_name_max_len: int = 34
    slurm_default_account: str = "waldur"
    slurm_container_name: str = ""
    slurm_command_timeout: float = 120.0
    slurm_usage_tres: str = "alloc"
    sentry_dsn: str = field(default="", repr=False)
    enable_user_homedir_account_creation: bool = False
    celery_broker_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may carry a password
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    celery_result_backend: str = field(default="", repr=False)  # "": results are not stored
    poll_interval: float = 60.0
    usage_interval: float = 900.0
    usage_timezone: str = "UTC"
    usage_closing_day: int = 3
    usage_recount_hours: int = 24  # a month's ledger is read whole again after this; 0: every cycle
    usage_settle_seconds: int = 300  # jobs that ended this long before sdiag's answer are settled
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_addr: str = "127.0.0.1"  # the address /metrics binds to
    log_format: str = "text"
    batch_size: int = 5000
    waldur_concurrency: int = 8  # Waldur calls of a batch or push cycle in flight at once, per process
    order_lock_ttl: int = 40
    visibility_timeout: int = 3600
    restore_interval: int = 10
    restore_throttle: int = 10
    min_uid: int = 1000  # logins below this uid on the head node are system accounts; 0: no check
    approve: str = "auto"  # auto | manual | below-max: which pending orders slurm-sync approves itself

    @property
    def pulls(self) -> bool:
        return self.waldur_sync_direction in ("pull", "both")

    @property
    def pushes(self) -> bool:
        return self.waldur_sync_direction in ("push", "both")

    def masked(self) -> Dict[str, str]:
        """Settings for display: secrets shown only by their last 4 characters, URL passwords as ****."""
        shown = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("waldur_api_token", "sentry_dsn") and value:
                value = "****" + str(value)[-4:]
            elif name in ("celery_broker_url", "redis_url", "celery_result_backend"):
                value = mask_url(value)
            shown[name.upper()] = str(value)
        return shown


# ---- parsers: each returns the typed value or raises ValueError with "what is expected" ----

def _text(value: str) -> str:
    return value.strip()


def _boolean(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected a boolean (true/false, yes/no, on/off, 1/0)")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"expected one of {' | '.join(choices)}")
        return word
    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number
    return parse


def _positive_seconds(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("expected a positive number of seconds") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return number


def _http_url(value: str) -> str:
    url = value.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("expected an http(s) URL of the Waldur API, such as https://waldur.example.com/api/")
    return url if url.endswith("/") else url + "/"


def _redis_url(value: str) -> str:
    url = value.strip()
    if urlparse(url).scheme not in ("redis", "rediss", "unix", "amqp", "amqps", "pyamqp", "memory"):
        raise ValueError("expected a broker URL such as redis://127.0.0.1:6379/0, redis://:PASSWORD@host:6379/0 "
                         "or rediss://:PASSWORD@host:6380/0 (TLS)")
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("expected an IP address, such as 127.0.0.1 (this host only) or 0.0.0.0 (every "
                         "interface)") from None


def _uuid(value: str) -> str:
    uuid = value.strip().lower().replace("-", "")
    if not _UUID.match(uuid):
        raise ValueError("expected a UUID (32 hexadecimal digits, dashes allowed)")
    return uuid


def _pattern(regex: "re.Pattern[str]", expected: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip()
        if not regex.match(text):
            raise ValueError(f"expected {expected}")
        return text
    return parse


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as UTC or Europe/Tallinn") from None
    return value.strip()


# variable -> (field, parser)
VARIABLES: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "WALDUR_API_URL": ("waldur_api_url", _http_url),
    "WALDUR_API_TOKEN": ("waldur_api_token", _text),
    "WALDUR_SYNC_DIRECTION": ("waldur_sync_direction", _choice(*DIRECTIONS)),
    "WALDUR_OFFERING_UUID": ("waldur_offering_uuid", _uuid),
    "WALDUR_API_COMPAT": ("waldur_api_compat", _choice(*API_COMPAT)),
    "REQUESTS_VERIFY_SSL": ("requests_verify_ssl", _boolean),
    "SLURM_TRES_CONFIG_PATH": ("slurm_tres_config_path", _text),
    "SLURM_DEPLOYMENT_TYPE": ("slurm_deployment_type", _choice(*DEPLOYMENT_TYPES)),
    "SLURM_CUSTOMER_PREFIX": ("slurm_customer_prefix", _pattern(_PREFIX, "at most 16 characters of a-z, 0-9, _ and -")),
    "SLURM_PROJECT_PREFIX": ("slurm_project_prefix", _pattern(_PREFIX, "at most 16 characters of a-z, 0-9, _ and -")),
    "SLURM_ALLOCATION_PREFIX": ("slurm_allocation_prefix", _pattern(_PREFIX, "at most 16 characters of a-z, 0-9, _ and -")),
    "SLURM_ALLOCATION_NAME_MAX_LEN": ("slurm_allocation_name_max_len", _int_between(8, 64)),
    "SLURM_DEFAULT_ACCOUNT": ("slurm_default_account", _pattern(_ACCOUNT, "a SLURM account name: a-z, 0-9, _ and -, at most 64 characters")),
    "SLURM_CONTAINER_NAME": ("slurm_container_name", _pattern(_CONTAINER, "a Docker container name")),
    "SLURM_COMMAND_TIMEOUT": ("slurm_command_timeout", _positive_seconds),
    "SLURM_USAGE_TRES": ("slurm_usage_tres", _choice(*USAGE_TRES_SOURCES)),
    "SENTRY_DSN": ("sentry_dsn", _text),
    "ENABLE_USER_HOMEDIR_ACCOUNT_CREATION": ("enable_user_homedir_account_creation", _boolean),
    "CELERY_BROKER_URL": ("celery_broker_url", _redis_url),
    "REDIS_URL": ("redis_url", _redis_url),
    "CELERY_RESULT_BACKEND": ("celery_result_backend", _text),
    "SLURM_SYNC_POLL_INTERVAL": ("poll_interval", _positive_seconds),
    "SLURM_SYNC_USAGE_INTERVAL": ("usage_interval", _positive_seconds),
    "SLURM_SYNC_USAGE_TIMEZONE": ("usage_timezone", _timezone),
    "SLURM_SYNC_USAGE_CLOSING_DAY": ("usage_closing_day", _int_between(1, 28)),
    "SLURM_SYNC_USAGE_RECOUNT_HOURS": ("usage_recount_hours", _int_between(0, 24 * 31)),
    "SLURM_SYNC_USAGE_SETTLE_SECONDS": ("usage_settle_seconds", _int_between(0, 86400)),
    "SLURM_SYNC_METRICS_PORT": ("metrics_port", _int_between(0, 65535)),
    "SLURM_SYNC_METRICS_ADDR": ("metrics_addr", _ip_address),
    "SLURM_SYNC_LOG_FORMAT": ("log_format", _choice("text", "json")),
    "SLURM_SYNC_BATCH_SIZE": ("batch_size", _int_between(1, 10000)),
    "SLURM_SYNC_WALDUR_CONCURRENCY": ("waldur_concurrency", _int_between(1, 64)),
    "SLURM_SYNC_ORDER_LOCK_TTL": ("order_lock_ttl", _int_between(1, 86400)),
    "SLURM_SYNC_VISIBILITY_TIMEOUT": ("visibility_timeout", _int_between(1, 7 * 86400)),
    "SLURM_SYNC_RESTORE_INTERVAL": ("restore_interval", _int_between(1, 3600)),
    "SLURM_SYNC_RESTORE_THROTTLE": ("restore_throttle", _int_between(1, 3600)),
    "SLURM_SYNC_MIN_UID": ("min_uid", _int_between(0, 2**31 - 1)),
    "SLURM_SYNC_APPROVE": ("approve", _choice("auto", "manual", "below-max")),
}


def environment() -> Mapping[str, str]:
    """The process environment. Every module gets settings from here; none reads ``os.environ`` itself
    (tests/test_layout.py checks it)."""
    return os.environ


def env_int(name: str, env: Optional[Mapping[str, str]] = None) -> int:
    """One integer setting read at import time (celeryconfig, task modules), before the start-up check:
    empty or unset is the default, a bad value the default too — the start-up check then stops the
    process with the variable, its value and what is expected."""
    return env_setting(name, env)


def env_setting(name: str, env: Optional[Mapping[str, str]] = None):
    """One setting of any type, read as :func:`env_int` reads one."""
    attribute, parse = VARIABLES[name]
    raw = (os.environ if env is None else env).get(name, "")
    try:
        return parse(raw) if raw.strip() else getattr(Settings, attribute)
    except ValueError:
        return getattr(Settings, attribute)


def load_settings(env: Optional[Mapping[str, str]] = None, *, require_waldur: bool = True) -> Settings:
    """Read and validate the settings; raise SettingsError listing every bad variable.

    ``require_waldur`` is off for commands that never talk to Waldur (testbed, plan of a file).
    """
    env = os.environ if env is None else env
    values: Dict[str, object] = {}
    problems: List[str] = []
    for variable, (name, parse) in VARIABLES.items():
        raw = env.get(variable)
        if raw is None or (raw.strip() == "" and parse is not _boolean):
            continue
        try:
            values[name] = parse(raw)
        except ValueError as error:
            problems.append(f"{variable}={_shown(variable, raw)}: {error}")
    if "redis_url" not in values and "celery_broker_url" in values and str(values["celery_broker_url"]).startswith("redis"):
        values["redis_url"] = values["celery_broker_url"]
    settings = Settings(**values)  # type: ignore[arg-type]
    problems.extend(_cross_checks(settings, require_waldur, env))
    if problems:
        raise SettingsError(problems)
    return settings


def _shown(variable: str, raw: str) -> str:
    if variable in ("WALDUR_API_TOKEN", "SENTRY_DSN"):
        return "****"
    if variable in ("CELERY_BROKER_URL", "REDIS_URL", "CELERY_RESULT_BACKEND"):
        masked = mask_url(raw)
        raw = masked if masked != raw or "@" not in raw else "****@" + raw.rsplit("@", 1)[1]  # an unparsable one
    text = raw if len(raw) <= 80 else raw[:77] + "..."
    return repr(text)


def _cross_checks(settings: Settings, require_waldur: bool, env: Mapping[str, str]) -> List[str]:
    problems = []
    if settings.slurm_deployment_type == "docker" and not settings.slurm_container_name:
        problems.append("SLURM_CONTAINER_NAME is not set: it is required when SLURM_DEPLOYMENT_TYPE=docker "
                        "(the name of the container that runs sacctmgr/sacct)")
    if require_waldur:
        for variable, value in (("WALDUR_API_URL", settings.waldur_api_url),
                                ("WALDUR_API_TOKEN", settings.waldur_api_token),
                                ("WALDUR_OFFERING_UUID", settings.waldur_offering_uuid)):
            if not value and variable not in _already_reported(env):
                problems.append(f"{variable} is not set: it is required to talk to Waldur")
    path = Path(settings.slurm_tres_config_path)
    if not path.is_file():
        problems.append(f"SLURM_TRES_CONFIG_PATH={settings.slurm_tres_config_path!r}: no such file "
                        "(expected the path of config-components.yaml)")
    return problems


def _already_reported(env: Mapping[str, str]) -> set:
    """Variables that are set (possibly to a bad value, already reported by their parser)."""
    return {name for name in ("WALDUR_API_URL", "WALDUR_API_TOKEN", "WALDUR_OFFERING_UUID")
            if (env.get(name) or "").strip()}
