"""Sentry: the Waldur token never leaves the process, whatever carries it.

In-process tests capture envelopes in memory (a Transport subclass, no network). The last test
runs a real worker with SENTRY_DSN pointing at a local stand-in for Sentry's envelope endpoint
and makes a task fail with the token in its error message.
"""
import gzip
import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from slurm_sync.observability import sentry as obs_sentry
from slurm_sync.observability.redaction import FILTERED
from tests.plugins.celery_worker import wait_until

pytestmark = pytest.mark.newest  # scripts/test --newest runs these, the real worker's too, on the newest releases

TOKEN = "wt-3f9a1c77e0b24d5f9e8a6b1c2d3e4f50"
DSN = "https://publickey@sentry.invalid/42"


class CaptureTransport(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)

    @property
    def raw(self) -> bytes:
        return b"".join(e.serialize() for e in self.envelopes)

    def events(self):
        return [e.get_event() for e in self.envelopes if e.get_event() is not None]


@pytest.fixture
def captured(monkeypatch):
    monkeypatch.setenv("WALDUR_API_TOKEN", TOKEN)
    transport = CaptureTransport()
    assert obs_sentry.init_sentry(DSN, token=TOKEN, transport=transport, celery=False)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: nothing is sent by later tests


def _fail_with_token_in_locals():
    token = TOKEN  # denylisted name
    note = f"calling Waldur with {TOKEN}"  # an innocent name: only value scrubbing finds it
    headers = {"Authorization": f"Token {TOKEN}", "Accept": "application/json"}
    settings = {"waldur_api_token": TOKEN, "sentry_dsn": DSN, "password": "hunter2-hunter2"}
    raise RuntimeError(f"Waldur refused token {TOKEN} ({len(token)} chars, {note}, {headers}, {settings})")


def test_exception_message_and_locals_are_scrubbed(captured):
    try:
        _fail_with_token_in_locals()
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    [event] = captured.events()
    assert TOKEN.encode() not in captured.raw
    assert b"hunter2-hunter2" not in captured.raw
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith(f"Waldur refused token {FILTERED}")
    frame = exception["stacktrace"]["frames"][-1]
    assert frame["function"] == "_fail_with_token_in_locals"
    variables = frame["vars"]
    assert variables["token"] == FILTERED
    assert TOKEN not in variables["note"] and FILTERED in variables["note"]
    assert FILTERED in str(variables["headers"]) and "application/json" in str(variables["headers"])


def _without_source(data):
    """``data`` less the source lines sentry-sdk attaches to stack frames."""
    if isinstance(data, dict):
        return {k: _without_source(v) for k, v in data.items() if k not in ("pre_context", "context_line",
                                                                            "post_context")}
    if isinstance(data, list):
        return [_without_source(v) for v in data]
    return data


def test_breadcrumbs_messages_data_and_log_records_are_scrubbed(captured, caplog):
    caplog.set_level(logging.INFO, logger="slurm_sync.test")
    sentry_sdk.add_breadcrumb(category="http", message=f"GET /api/?token={TOKEN}",
                              data={"url": f"https://waldur.example.com/api/?x={TOKEN}",
                                    "authorization": f"Token {TOKEN}", "note": f"with {TOKEN}"})
    logging.getLogger("slurm_sync.test").info("talking to Waldur with %s", TOKEN)  # a logging breadcrumb
    sentry_sdk.set_extra("waldur", {"api_token": TOKEN, "url": "https://waldur.example.com/api/"})
    sentry_sdk.set_context("deployment", {"dsn": DSN, "auth_note": f"Authorization: Token {TOKEN}"})
    logging.getLogger("slurm_sync.test").error("order failed; token %s", TOKEN)  # an event by logging
    sentry_sdk.flush()
    assert captured.events(), "the ERROR record made no event"
    assert TOKEN.encode() not in captured.raw
    # the DSN's key only in the envelope header (3.x attaches this file's source lines, which spell it, to log events)
    assert "publickey" not in json.dumps([_without_source(event) for event in captured.events()])
    event = captured.events()[-1]
    assert event["logentry"]["message"].startswith("order failed; token")
    crumbs = event["breadcrumbs"]["values"]
    http = next(c for c in crumbs if c.get("category") == "http")
    assert http["message"] == f"GET /api/?token={FILTERED}"
    assert http["data"]["authorization"] == FILTERED and http["data"]["note"] == f"with {FILTERED}"
    assert any(FILTERED in str(c.get("message")) for c in crumbs if c.get("category") == "slurm_sync.test")
    assert event["extra"]["waldur"]["api_token"] == FILTERED
    assert event["extra"]["waldur"]["url"] == "https://waldur.example.com/api/"


def test_before_breadcrumb_scrubs_before_the_breadcrumb_is_stored(captured):
    crumb = obs_sentry.before_breadcrumb({"message": f"x {TOKEN}", "data": {"secret_key": "abc123456",
                                                                             "count": 3}}, {})
    assert crumb == {"message": f"x {FILTERED}", "data": {"secret_key": FILTERED, "count": 3}}


REDIS_PASSWORD = "r3d1s-Pa55word"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis.example.org:6379/0"


def _fail_with_a_redis_url(url):
    broker_url = url  # an innocent name: only the URL's shape gives the password away
    options = {"broker": url, "hosts": [url.replace("/0", "/1")]}
    bare = REDIS_PASSWORD  # the password alone, as kombu/redis-py keep it
    raise ConnectionError(f"cannot reach {url} ({len(bare)}, {broker_url}, {options})")


def test_redis_url_password_is_scrubbed_from_messages_and_locals(captured, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", REDIS_URL)  # its password is a secret value wherever it shows
    try:
        _fail_with_a_redis_url(REDIS_URL)
    except ConnectionError:
        sentry_sdk.capture_exception()
    logging.getLogger("slurm_sync.test").error("broker %s refused", REDIS_URL.replace("redis.", "other."))
    sentry_sdk.flush()
    assert REDIS_PASSWORD.encode() not in captured.raw
    exception = captured.events()[0]["exception"]["values"][-1]
    assert exception["value"].startswith(f"cannot reach redis://:{FILTERED}@redis.example.org:6379/0")
    variables = exception["stacktrace"]["frames"][-1]["vars"]
    assert FILTERED in variables["broker_url"] and "redis.example.org" in variables["broker_url"]
    assert REDIS_PASSWORD not in str(variables["options"]) and FILTERED in variables["bare"]


def test_any_url_password_is_scrubbed_even_when_not_configured(captured, monkeypatch):
    """A URL no variable names (a result backend written in code, an AMQP broker): its password part goes."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    message = ("to amqp://sync:Amqp-Pw-77@mq.example.org:5672// and rediss://:pw@h:6380/0, "
               "not https://waldur.example.com:443/api/")
    crumb = obs_sentry.before_breadcrumb({"message": message}, {})
    assert crumb["message"] == (f"to amqp://sync:{FILTERED}@mq.example.org:5672// and rediss://:{FILTERED}@h:6380/0, "
                                "not https://waldur.example.com:443/api/")


def test_sentry_logs_are_scrubbed_too():
    """sentry-sdk 3 can ship log records as Sentry logs (we ask for none): one that goes is scrubbed all the same."""
    log = obs_sentry.before_send_log({"body": f"token {TOKEN}", "attributes": {
        "sentry.message.parameter.0": TOKEN, "api_token": "x-abcdef", "logger.name": "slurm_sync"}}, {})
    assert log["body"] == f"token {FILTERED}"
    assert log["attributes"] == {"sentry.message.parameter.0": FILTERED, "api_token": FILTERED,
                                 "logger.name": "slurm_sync"}


def test_no_dsn_means_no_sentry():
    assert obs_sentry.init_sentry("", token=TOKEN) is False


# ---- a real worker, a local stand-in for Sentry ----------------------------------------------------

class _SentryStandIn(BaseHTTPRequestHandler):
    bodies: list

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SentryStandIn)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_worker_reports_a_task_failure_without_the_token(waldur, start_worker, send, sentry_stand_in):
    from tests.pull_scenario import Scenario
    scenario = Scenario(waldur)
    port = sentry_stand_in.server_address[1]
    start_worker(scenario.offering["uuid"], SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/7")
    # an order "uuid" that is the token: Waldur's 404 error message carries it into the exception
    send("tasks.pull.process_order", waldur.token)
    wait_until(lambda: any(b'"exception"' in body for _, body in sentry_stand_in.bodies), timeout=60,
               what="the failure reported to Sentry")
    raw = b"".join(body for _, body in sentry_stand_in.bodies)
    assert waldur.token.encode() not in raw
    events = [json.loads(line) for _, body in sentry_stand_in.bodies for line in body.splitlines()
              if line.startswith(b"{") and b'"exception"' in line]
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "WaldurHTTPError"
    assert "404" in exception["value"] and FILTERED in exception["value"]
    assert events[0]["tags"]["celery_task_id"]
    assert all(path == "/api/7/envelope/" for path, _ in sentry_stand_in.bodies)


def test_a_malformed_dsn_stops_the_worker_with_one_line(waldur, start_worker):
    from tests.pull_scenario import Scenario
    with pytest.raises(RuntimeError) as stopped:
        start_worker(Scenario(waldur).offering["uuid"], name="baddsn", SENTRY_DSN="not-a-dsn")
    assert "slurm-sync cannot start: SENTRY_DSN=****: BadDsn" in str(stopped.value)
    assert "not-a-dsn" not in str(stopped.value)


def test_beat_starts_with_sentry(sync_env, waldur, tmp_path, sentry_stand_in):
    import os

    from testkit.celery_procs import start_beat, sync_environment
    port = sentry_stand_in.server_address[1]
    env = sync_environment(os.environ, WALDUR_OFFERING_UUID="0" * 32, **sync_env,
                           SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/7")
    beat = start_beat(env, tmp_path)
    try:
        beat.wait_for("Sentry enabled", timeout=20)
        assert "Traceback" not in beat.log_path.read_text()
    finally:
        beat.stop()
