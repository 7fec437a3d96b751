"""Every settings error path: one line per bad variable naming the variable, value and what is expected."""
import pytest

from slurm_sync.settings import SettingsError, load_settings

GOOD = {
    "WALDUR_API_URL": "https://waldur.example.com/api",
    "WALDUR_API_TOKEN": "abcdef0123456789",
    "WALDUR_OFFERING_UUID": "0123456789abcdef0123456789abcdef",
    "SLURM_TRES_CONFIG_PATH": "config-components.yaml",
}


def settings(**changes):
    env = dict(GOOD)
    env.update(changes)
    return load_settings({k: v for k, v in env.items() if v is not None})


def problems(**changes):
    with pytest.raises(SettingsError) as caught:
        settings(**changes)
    return caught.value.problems


def test_defaults_and_types():
    s = settings()
    assert s.waldur_api_url == "https://waldur.example.com/api/"
    assert s.waldur_sync_direction == "pull" and s.pulls and not s.pushes
    assert s.slurm_deployment_type == "native"
    assert s.requests_verify_ssl is True
    assert isinstance(s.slurm_allocation_name_max_len, int)
    assert s.waldur_concurrency == 8 and settings(SLURM_SYNC_WALDUR_CONCURRENCY="3").waldur_concurrency == 3


@pytest.mark.parametrize("word,value", [("yes", True), ("TRUE", True), ("1", True), ("on", True),
                                        ("no", False), ("False", False), ("0", False), ("off", False)])
def test_booleans_accept_usual_spellings(word, value):
    assert settings(REQUESTS_VERIFY_SSL=word).requests_verify_ssl is value
    assert settings(ENABLE_USER_HOMEDIR_ACCOUNT_CREATION=word).enable_user_homedir_account_creation is value


@pytest.mark.parametrize("variable,value,expected", [
    ("WALDUR_API_URL", "ftp://x", "http(s) URL"),
    ("WALDUR_SYNC_DIRECTION", "sideways", "pull | push | both"),
    ("WALDUR_OFFERING_UUID", "not-a-uuid", "UUID"),
    ("REQUESTS_VERIFY_SSL", "maybe", "boolean"),
    ("ENABLE_USER_HOMEDIR_ACCOUNT_CREATION", "sure", "boolean"),
    ("SLURM_DEPLOYMENT_TYPE", "k8s", "native | docker"),
    ("SLURM_ALLOCATION_NAME_MAX_LEN", "twenty", "whole number"),
    ("SLURM_ALLOCATION_NAME_MAX_LEN", "3", "whole number from 8 to 64"),
    ("SLURM_SYNC_WALDUR_CONCURRENCY", "0", "whole number from 1 to 64"),
    ("SLURM_SYNC_WALDUR_CONCURRENCY", "eight", "whole number from 1 to 64"),
    ("SLURM_CUSTOMER_PREFIX", "Bad;Prefix", "a-z, 0-9"),
    ("SLURM_PROJECT_PREFIX", "$(x)", "a-z, 0-9"),
    ("SLURM_ALLOCATION_PREFIX", "a b", "a-z, 0-9"),
    ("SLURM_DEFAULT_ACCOUNT", "Root|x", "SLURM account name"),
    ("SLURM_CONTAINER_NAME", "-rm", "container name"),
    ("SLURM_TRES_CONFIG_PATH", "/nonexistent.yaml", "no such file"),
    ("CELERY_BROKER_URL", "localhost:6379", "broker URL"),
    ("SLURM_SYNC_USAGE_TIMEZONE", "Mars/Olympus", "time zone"),
])
def test_each_bad_variable_is_named_with_value_and_expectation(variable, value, expected):
    found = problems(**{variable: value})
    assert len(found) == 1, found
    assert found[0].startswith(variable) and expected in found[0]
    if variable != "SLURM_TRES_CONFIG_PATH":
        assert repr(value) in found[0]


def test_docker_needs_container_name():
    found = problems(SLURM_DEPLOYMENT_TYPE="docker")
    assert any(p.startswith("SLURM_CONTAINER_NAME") and "required" in p for p in found)
    assert settings(SLURM_DEPLOYMENT_TYPE="docker", SLURM_CONTAINER_NAME="slurmctld").slurm_container_name == "slurmctld"


def test_missing_waldur_variables_are_each_reported():
    found = problems(WALDUR_API_URL=None, WALDUR_API_TOKEN=None, WALDUR_OFFERING_UUID=None)
    assert sorted(p.split(" ")[0] for p in found) == ["WALDUR_API_TOKEN", "WALDUR_API_URL", "WALDUR_OFFERING_UUID"]
    load_settings({"SLURM_TRES_CONFIG_PATH": "config-components.yaml"}, require_waldur=False)


def test_all_bad_variables_reported_at_once_and_token_never_shown():
    with pytest.raises(SettingsError) as caught:
        settings(WALDUR_API_URL="nope", SLURM_DEPLOYMENT_TYPE="x", SLURM_ALLOCATION_NAME_MAX_LEN="y",
                 WALDUR_API_TOKEN="supersecret")
    text = str(caught.value)
    assert len(caught.value.problems) == 3
    assert "supersecret" not in text
    assert "supersecret" not in repr(settings(WALDUR_API_TOKEN="supersecret"))
    assert settings(WALDUR_API_TOKEN="supersecret").masked()["WALDUR_API_TOKEN"] == "****cret"


def test_dashed_uuid_is_normalised():
    s = settings(WALDUR_OFFERING_UUID="01234567-89ab-cdef-0123-456789ABCDEF")
    assert s.waldur_offering_uuid == "0123456789abcdef0123456789abcdef"


# ---- Redis with a password and TLS; secrets masked wherever settings are printed -------------------------

PASSWORD = "s3cret-Redis-pw"
REDIS = f"redis://:{PASSWORD}@redis.example.org:6379/0"
REDISS = f"rediss://:{PASSWORD}@redis.example.org:6380/0"


@pytest.mark.parametrize("url", [REDIS, REDISS, f"redis://slurm-sync:{PASSWORD}@redis.example.org:6379/2",
                                 REDISS + "?ssl_cert_reqs=optional&ssl_ca_certs=/etc/slurm-sync/ca.pem",
                                 "redis://:p%40ss%2Fword@redis.example.org:6379/0"])
def test_redis_urls_with_a_password_and_tls_are_accepted(url):
    s = settings(CELERY_BROKER_URL=url)
    assert s.celery_broker_url == url and s.redis_url == url  # REDIS_URL follows the broker, password included
    assert settings(REDIS_URL=url).redis_url == url


@pytest.mark.parametrize("url,expected", [
    ("redis://:pa/ss@redis.example.org:6379/0", "percent-encode the password"),
    (REDISS + "?ssl_cert_reqs=CERT_REQUIRED", "ssl_cert_reqs must be required, optional or none"),
    (REDIS + "?ssl_cert_reqs=required", "ssl_* options need a rediss:// URL"),
    (f"redis://:{PASSWORD}@:6379/0", "expected a host"),
])
def test_bad_redis_urls_are_named_without_their_password(url, expected):
    for variable in ("CELERY_BROKER_URL", "REDIS_URL"):
        (problem,) = problems(**{variable: url})
        assert problem.startswith(variable) and expected in problem, problem
        assert PASSWORD not in problem and "pa/ss" not in problem and "****" in problem


def test_an_unparsable_url_is_shown_without_what_may_be_its_password():
    (problem,) = problems(CELERY_BROKER_URL=f"redis//:{PASSWORD}@redis.example.org")
    assert PASSWORD not in problem and "'****@redis.example.org'" in problem


def test_masked_and_repr_hide_the_redis_password():
    s = settings(CELERY_BROKER_URL=REDISS, REDIS_URL=REDIS)
    shown = s.masked()
    assert shown["CELERY_BROKER_URL"] == "rediss://:****@redis.example.org:6380/0"
    assert shown["REDIS_URL"] == "redis://:****@redis.example.org:6379/0"
    assert PASSWORD not in repr(s) and PASSWORD not in str(shown)


def test_check_config_prints_no_secret(monkeypatch, capsys):
    import slurm_sync.cli as cli
    for key, value in {**GOOD, "CELERY_BROKER_URL": REDISS, "REDIS_URL": REDIS}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "CELERY_BROKER_URL=rediss://:****@redis.example.org:6380/0" in out
    assert "REDIS_URL=redis://:****@redis.example.org:6379/0" in out
    assert PASSWORD not in out and "WALDUR_API_TOKEN=****6789\n" in out

    monkeypatch.setenv("REDIS_URL", REDIS + "?ssl_cert_reqs=none")
    assert cli.main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "REDIS_URL='redis://:****@redis.example.org:6379/0?ssl_cert_reqs=none'" in err and PASSWORD not in err


def test_diagnostics_lines_hide_the_redis_password(monkeypatch):
    """The settings, Redis and broker lines of `slurm-sync diagnostics` (a port nothing listens on: no Redis
    is contacted, and the failure lines show the URL too)."""
    import socket

    import slurm_sync.cli.diagnostics as diagnostics
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    for key, value in {**GOOD, "CELERY_BROKER_URL": url}.items():
        monkeypatch.setenv(key, value)
    ctx = diagnostics.Context()
    lines = [check.line() for check in (diagnostics.check_settings(ctx), diagnostics.check_redis(ctx),
                                        diagnostics.check_broker(ctx))]
    assert lines[0].startswith("OK   settings:") and lines[1].startswith("FAIL redis: redis://:****@127.0.0.1:")
    assert lines[2].startswith("FAIL broker: redis://:****@127.0.0.1:")
    assert not any(PASSWORD in line for line in lines), lines


def test_celery_verifies_the_certificate_of_a_rediss_broker_and_backend():
    """celeryconfig passes the URL's TLS options to kombu (which alone would not verify) and to the Redis result
    backend (which alone refuses a rediss:// URL without ssl_cert_reqs); redis-py verifies by default. Nothing
    connects: the objects are only built."""
    import json
    import subprocess
    import sys
    probe = """
import json, ssl
import redis
from celery import Celery
from celery.backends.redis import RedisBackend
app = Celery("probe")
app.config_from_object("celeryconfig")
connection = app.connection_for_write()
backend = RedisBackend(app=app, url=app.conf.result_backend)
client = redis.Redis.from_url(app.conf.broker_url).connection_pool.make_connection()
print(json.dumps({"broker": int(connection.ssl["ssl_cert_reqs"]), "password": connection.password,
                  "backend": int(backend.connparams["ssl_cert_reqs"]), "ca": backend.connparams.get("ssl_ca_certs"),
                  "redis_py": int(client.cert_reqs)}))
"""
    env = {"PATH": "/usr/bin:/bin", "CELERY_BROKER_URL": REDISS,
           "CELERY_RESULT_BACKEND": REDISS.replace("/0", "/1") + "?ssl_ca_certs=/etc/slurm-sync/ca.pem"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"broker": 2, "password": PASSWORD, "backend": 2, "ca": "/etc/slurm-sync/ca.pem", "redis_py": 2}


def test_rediss_tls_options_from_the_url():
    import ssl

    from slurm_sync.redis_tls import ssl_options
    assert ssl_options(REDIS) is None and ssl_options("memory://") is None and ssl_options("") is None
    assert ssl_options(REDISS) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert ssl_options(REDISS + "?ssl_cert_reqs=none&ssl_certfile=/c.pem&ssl_keyfile=/k.pem") == {
        "ssl_cert_reqs": ssl.CERT_NONE, "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}


# ---- the metrics endpoint's address ----------------------------------------------------------------------

def test_metrics_address_defaults_to_loopback():
    assert settings().metrics_addr == "127.0.0.1"
    assert settings(SLURM_SYNC_METRICS_ADDR="0.0.0.0").metrics_addr == "0.0.0.0"
    assert settings(SLURM_SYNC_METRICS_ADDR=" ::1 ").metrics_addr == "::1"
    (problem,) = problems(SLURM_SYNC_METRICS_ADDR="everywhere")
    assert problem.startswith("SLURM_SYNC_METRICS_ADDR='everywhere': expected an IP address")


@pytest.mark.parametrize("addr,expected", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("bad", "127.0.0.1")])
def test_worker_serves_metrics_on_the_configured_address(monkeypatch, addr, expected):
    """celeryd_init binds /metrics to SLURM_SYNC_METRICS_ADDR (an invalid one: loopback, and the start-up check
    stops the worker naming it)."""
    from slurm_sync.observability import metrics_server as metrics
    from tasks import signals
    bound = []
    monkeypatch.setattr(metrics, "prepare_multiprocess", lambda: "/nonexistent")
    monkeypatch.setattr(metrics, "start_server", lambda port, addr: bound.append((port, addr)))
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.setenv("SLURM_SYNC_METRICS_PORT", "9808")
    if addr is None:
        monkeypatch.delenv("SLURM_SYNC_METRICS_ADDR", raising=False)
    else:
        monkeypatch.setenv("SLURM_SYNC_METRICS_ADDR", addr)
    signals.start_worker_observability()
    assert bound == [(9808, expected)]


def test_metrics_url_reaches_the_bound_address():
    from slurm_sync.observability.metrics_server import url
    assert url("127.0.0.1", 9808) == "http://127.0.0.1:9808/metrics"
    assert url("0.0.0.0", 9808) == "http://127.0.0.1:9808/metrics"
    assert url("10.1.2.3", 9808) == "http://10.1.2.3:9808/metrics"
    assert url("::", 9808) == "http://[::1]:9808/metrics"
