"""Metrics, health and structured logs of a real worker running a real pull cycle on the bed.

The worker serves /metrics on SLURM_SYNC_METRICS_PORT from its main process while the tasks run in
prefork children (Prometheus multiprocess mode); `slurm-sync health` reads the last-success marks
the worker's signal handler leaves in Redis; with SLURM_SYNC_LOG_FORMAT=json every SLURM command is
one JSON line and the token appears nowhere in the log.
"""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from slurm_sync.cli.health import POLL_TASK
from slurm_sync.redis_keys import RedisKeys
from slurm_sync.observability import metrics as m
from testkit.celery_procs import start_worker as start_celery_worker, sync_environment
from tests.plugins.celery_worker import wait_until

from tests.pull_scenario import Scenario, slurm_tree

CLI = [sys.executable, "-m", "slurm_sync"]


@pytest.fixture(autouse=True)
def counted():
    """The metrics count what the adapters report through their hooks (as wiring.build_runtime sets up)."""
    from slurm_sync.wiring import observe_adapters
    observe_adapters()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict:
    """{'name{label="v",...}': value} of every sample line, labels in the exposition's order."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def value(text: str, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for key, number in samples(text).items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += number
    return total


def all_done(emu, orders):
    return lambda: all(emu.get_order(o["uuid"])["state"] in ("done", "erred") for o in orders)


def cli(env, *args):
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_pull_cycle_counted_served_and_marked_healthy(waldur, start_worker, send, sync_env, tmp_path, test_redis):
    # users of this test alone: suites running side by side on the bed never share an association
    tag = sync_env["SLURM_ALLOCATION_PREFIX"].strip("_")
    ann, ben, cid = f"{tag}ann", f"{tag}ben", f"{tag}cid"
    scenario = Scenario(waldur, users=(ann, ben, cid))
    port = free_port()
    worker = start_worker(scenario.offering["uuid"], SLURM_SYNC_METRICS_PORT=str(port), SLURM_SYNC_LOG_FORMAT="json")
    before = scrape(port)  # served before any task ran
    assert "# TYPE slurm_sync_sacctmgr_commits_total counter" in before or "slurm_sync" not in before
    orders = [scenario.create("acme", "physics", "m-one", team=(ann, ben)),
              scenario.create("acme", "physics", "m-two", team=(cid,))]
    send("tasks.pull.poll_orders")
    wait_until(all_done(waldur, orders), what="orders done")
    assert [waldur.get_order(o["uuid"])["state"] for o in orders] == ["done", "done"]
    wait_until(lambda: value(scrape(port), "slurm_sync_orders_total", result="done") >= 2, timeout=20,
               what="orders counted")
    text = scrape(port)

    assert value(text, "slurm_sync_orders_total", result="done") == 2
    assert value(text, "slurm_sync_orders_total", result="erred") == 0
    assert value(text, "slurm_sync_sacctmgr_commits_total") >= 1
    assert value(text, "slurm_sync_sacctmgr_commit_seconds_total") > 0
    assert value(text, "slurm_sync_slurm_commands_total", command="sacctmgr", result="ok") >= 3  # reads + load
    assert value(text, "slurm_sync_slurm_command_seconds_count", command="sacctmgr") >= 3
    assert value(text, "slurm_sync_waldur_requests_total") >= 6  # list, approve x2, team x2, done x2, ...
    assert value(text, "slurm_sync_waldur_requests_total", method="POST", status="200") >= 2
    assert value(text, "slurm_sync_waldur_requests_total", method="GET",
                 endpoint="/api/marketplace-provider-resources/{id}/team/") >= 2
    assert value(text, "slurm_sync_waldur_request_errors_total") == 0
    assert value(text, "slurm_sync_task_runs_total", task=POLL_TASK, state="success") == 1
    assert value(text, "slurm_sync_task_runs_total", task="tasks.pull.process_orders", state="success") == 1
    assert value(text, "slurm_sync_task_seconds_count", task="tasks.pull.process_orders") == 1
    assert value(text, "slurm_sync_last_success_timestamp_seconds", task=POLL_TASK) > 1.7e9
    assert {a for a in slurm_tree(sync_env["SLURM_DEFAULT_ACCOUNT"])[0]} >= {
        sync_env["SLURM_ALLOCATION_PREFIX"] + "m-one", sync_env["SLURM_ALLOCATION_PREFIX"] + "m-two"}

    # a failing task: Waldur's 404 is a request error, the task a failure named by its exception
    send("tasks.pull.process_order", "0" * 32)
    wait_until(lambda: value(scrape(port), "slurm_sync_task_failures_total", task="tasks.pull.process_order") == 1,
               timeout=30, what="the failure counted")
    text = scrape(port)
    assert value(text, "slurm_sync_task_failures_total", task="tasks.pull.process_order",
                 exception="WaldurHTTPError") == 1
    assert value(text, "slurm_sync_task_runs_total", task="tasks.pull.process_order", state="failure") == 1
    assert value(text, "slurm_sync_waldur_request_errors_total", method="GET", status="404",
                 endpoint="/api/marketplace-orders/{id}/") == 1

    # a transient Waldur error that outlasts the retries close to the call (1 + 3 answers): the poll retries
    # (counted by the exception that caused it) and succeeds
    waldur.faults.fail_next(4, status=503, path_contains="marketplace-orders")
    send("tasks.pull.poll_orders")
    wait_until(lambda: value(scrape(port), "slurm_sync_task_runs_total", task=POLL_TASK, state="success") == 2,
               timeout=60, what="the retried poll succeeded")
    text = scrape(port)
    assert value(text, "slurm_sync_task_retries_total", task=POLL_TASK, exception="WaldurUnavailable") == 1
    assert value(text, "slurm_sync_task_runs_total", task=POLL_TASK, state="retry") == 1
    assert value(text, "slurm_sync_waldur_request_errors_total", status="503") == 1
    assert value(text, "slurm_sync_waldur_retries_total", status="503") == 3

    # `slurm-sync metrics` prints the same endpoint
    env = sync_environment(os.environ, WALDUR_OFFERING_UUID=scenario.offering["uuid"], **sync_env,
                           SLURM_SYNC_METRICS_PORT=str(port))
    printed = cli(env, "metrics")
    assert printed.returncode == 0, printed.stderr
    assert value(printed.stdout, "slurm_sync_orders_total", result="done") == 2

    # health: the poll's success mark is in Redis
    assert test_redis.get(RedisKeys(scenario.offering["uuid"]).last_success(POLL_TASK))
    healthy = cli(env, "health")
    assert healthy.returncode == 0 and healthy.stdout.startswith("OK "), healthy.stdout + healthy.stderr
    assert f"{POLL_TASK} succeeded" in healthy.stdout and len(healthy.stdout.splitlines()) == 1
    stale = cli(env, "health", "--max-age", "0")
    assert stale.returncode == 1 and stale.stdout.startswith(f"FAIL {POLL_TASK} last succeeded")
    test_redis.delete(RedisKeys(scenario.offering["uuid"]).last_success(POLL_TASK))
    never = cli(env, "health")
    assert never.returncode == 1 and "has not succeeded yet" in never.stdout
    assert cli(env, "health", "--no-cycle").returncode == 0
    down = cli({**env, "REDIS_URL": "redis://127.0.0.1:1/0", "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}, "health")
    assert down.returncode == 1 and down.stdout.startswith("FAIL redis redis://127.0.0.1:1/0 unreachable")

    # the JSON log: one line per SLURM command, with argv, result and seconds; the token nowhere
    log_text = worker.log_path.read_text()
    assert waldur.token not in log_text
    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    commands = [r for r in records if r.get("event") == "slurm_command"]
    load = [r for r in commands if r["argv"][:4] == ["sacctmgr", "-i", "load", "file=/dev/stdin"]]
    assert len(load) == 1 and load[0]["result"] == "ok" and load[0]["returncode"] == 0
    assert load[0]["seconds"] > 0 and load[0]["level"] == "INFO" and load[0]["ts"]
    assert load[0]["message"].startswith("slurm command ok rc=0 in ")
    assert load[0]["task_name"] == "tasks.pull.process_orders" and load[0]["task_id"]
    assert all({"argv", "result", "returncode", "seconds"} <= set(r) for r in commands)
    assert any("process_orders" in r["message"] for r in records if r["logger"] == "tasks.pull")


def test_prefork_children_are_summed_and_private_dir_removed(waldur, start_worker, sync_env, send, tmp_path):
    """-c 2: tasks run in two children; the main process serves their sum; SIGTERM removes the directory."""
    scenario = Scenario(waldur)
    port = free_port()
    env = sync_environment(os.environ, WALDUR_OFFERING_UUID=scenario.offering["uuid"], **sync_env,
                           SLURM_SYNC_METRICS_PORT=str(port))
    worker = start_celery_worker(env, tmp_path, name="pair", concurrency=2)
    try:
        # SLURM_SYNC_METRICS_ADDR's default: this host only
        served = re.search(r"metrics served on http://127\.0\.0\.1:(\d+)/metrics \(multiprocess, (\S+)\)",
                           worker.log_path.read_text())
        assert served and int(served.group(1)) == port, worker.tail()
        directory = Path(served.group(2))
        assert directory.is_dir() and (directory / "owner.pid").read_text() == str(worker.proc.pid)
        polls = 6
        for _ in range(polls):
            send("tasks.pull.poll_orders")
        wait_until(lambda: value(scrape(port), "slurm_sync_task_runs_total", task=POLL_TASK) >= polls,
                   what="all polls counted")
        text = scrape(port)
        assert value(text, "slurm_sync_task_runs_total", task=POLL_TASK, state="success") == polls
        assert list(directory.glob("counter_*.db"))
        worker.stop()  # SIGTERM: warm shutdown
        assert not directory.exists()
    finally:
        worker.kill()


def test_executor_logs_one_line_per_command_and_counts_it(caplog):
    from slurm_sync.slurm.runner import NativeExecutor, SlurmCommandError
    caplog.set_level("INFO", logger="slurm_sync.slurm.runner")
    executor = NativeExecutor()
    before = value(m.render().decode(), "slurm_sync_slurm_commands_total", command="sh")
    executor.run(["sh", "-c", "echo hi", "arg with space"])
    with pytest.raises(SlurmCommandError):
        executor.run(["sh", "-c", "echo broken >&2; exit 3"])
    with pytest.raises(SlurmCommandError):
        executor.run(["sh", "-c", "sleep 5"], timeout=0.2)
    records = [r for r in caplog.records if getattr(r, "event", None) == "slurm_command"]
    assert [(r.result, r.returncode) for r in records] == [("ok", 0), ("error", 3), ("timeout", None)]
    assert records[0].getMessage().endswith("sh -c 'echo hi' 'arg with space'")
    assert records[1].levelname == "WARNING" and records[1].getMessage().endswith(": broken")
    assert all(r.seconds >= 0 for r in records) and records[2].seconds >= 0.2
    text = m.render().decode()
    assert value(text, "slurm_sync_slurm_commands_total", command="sh") == before + 3
    assert value(text, "slurm_sync_slurm_commands_total", command="sh", result="timeout") >= 1


def test_sacct_runs_are_logged_and_counted_like_every_slurm_command(caplog, tmp_path):
    """sacct streams through its own runner (sacct.PopenLines): it logs and counts like the executor does."""
    from slurm_sync.slurm.sacct import PopenLines, SacctError
    fake = tmp_path / "sacct"
    fake.write_text('#!/bin/sh\n[ "$1" = "--fail" ] && { echo "slurmdbd down" >&2; exit 1; }\necho "1|a|u"\n')
    fake.chmod(0o755)
    caplog.set_level("INFO", logger="slurm_sync.slurm.runner")
    before = value(m.render().decode(), "slurm_sync_slurm_commands_total", command="sacct")
    assert list(PopenLines(timeout=30)([str(fake), "--ok"])) == ["1|a|u\n"]
    with pytest.raises(SacctError):
        list(PopenLines(timeout=30)([str(fake), "--fail"]))
    records = [r for r in caplog.records if getattr(r, "event", None) == "slurm_command"]
    assert [(r.result, r.returncode) for r in records] == [("ok", 0), ("error", 1)]
    assert records[1].getMessage().endswith(": slurmdbd down") and "TZ=UTC" in records[0].getMessage()
    text = m.render().decode()
    assert value(text, "slurm_sync_slurm_commands_total", command="sacct") == before + 2
    assert value(text, "slurm_sync_slurm_commands_total", command="sacct", result="error") >= 1


def test_sacctmgr_writes_commit_or_unchanged_on_the_bed(slurm_sandbox):
    from slurm_sync.slurm.runner import NativeExecutor
    executor = NativeExecutor()
    text = before = m.render().decode()
    commits = value(text, "slurm_sync_sacctmgr_commits_total")
    unchanged = value(text, "slurm_sync_sacctmgr_unchanged_total")
    argv = ["sacctmgr", "-i", "add", "account", f"{slurm_sandbox}m", f"parent={slurm_sandbox}", "description=metrics"]
    executor.run(argv, check=False)
    second = executor.run(argv, check=False)  # "Nothing new added.", exit 1: not an error
    assert second.returncode == 1
    executor.run(["sacctmgr", "-P", "-n", "show", "account", f"{slurm_sandbox}m"])  # a read is no commit
    text = m.render().decode()
    assert value(text, "slurm_sync_sacctmgr_commits_total") == commits + 1
    assert value(text, "slurm_sync_sacctmgr_unchanged_total") == unchanged + 1
    assert value(text, "slurm_sync_slurm_commands_total", command="sacctmgr", result="error") == \
        value(before, "slurm_sync_slurm_commands_total", command="sacctmgr", result="error")


def test_json_log_redacts_the_token(monkeypatch, capsys):
    import logging
    from slurm_sync.observability.logs import JsonFormatter, RedactingFilter
    token = "tok-0123456789abcdef"
    monkeypatch.setenv("WALDUR_API_TOKEN", token)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("slurm_sync.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("calling %s with %s", "https://waldur.example.com/api/", token, extra={"headers": {
            "Authorization": f"Token {token}"}, "argv": ["curl", f"--token={token}"]})
        try:
            raise RuntimeError(f"refused {token}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = capsys.readouterr().err
    assert token not in out
    first, second = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert first["message"] == "calling https://waldur.example.com/api/ with [Filtered]"
    assert first["headers"] == {"Authorization": "Token [Filtered]"} and first["argv"][1] == "--token=[Filtered]"
    assert second["level"] == "ERROR" and "RuntimeError: refused [Filtered]" in second["exception"]


def test_endpoint_templates_ids():
    assert m.endpoint("/api/marketplace-orders/0123456789abcdef0123456789abcdef/approve_by_provider/?x=1") == \
        "/api/marketplace-orders/{id}/approve_by_provider/"
    assert m.endpoint("/api/marketplace-provider-offerings/01234567-89ab-cdef-0123-456789abcdef/") == \
        "/api/marketplace-provider-offerings/{id}/"


def test_outcomes_counted_from_the_tasks_return_values():
    """process_orders' {"done": [...], ...} and the push tasks' asdict(PushResult) feed the counters."""
    from dataclasses import asdict

    from slurm_sync.sync.push import PushResult
    text = m.render().decode()
    done, erred = (value(text, "slurm_sync_orders_total", result=r) for r in ("done", "erred"))
    posts, user_posts = (value(text, "slurm_sync_usage_posts_total", kind=k) for k in ("component", "user"))
    problems = {k: value(text, "slurm_sync_usage_problems_total", kind=k) for k in ("refused", "anomaly", "unreportable")}
    m.observe_task("tasks.pull.process_orders", "SUCCESS", 1.5, {"done": ["a", "b"], "erred": ["c"], "skipped": []})
    m.observe_task("tasks.pull.process_order", "SUCCESS", 0.5, {"done": ["d"], "erred": [], "skipped": []})
    m.observe_task("tasks.pull.process_orders", "SUCCESS", 0.1, {})  # nothing was this worker's
    m.observe_task("tasks.push.report_usage", "SUCCESS", 2.0, asdict(PushResult(usage_posts=4, user_usage_posts=7)))
    m.observe_task("tasks.push.report_resource", "SUCCESS", 2.0, asdict(PushResult(usage_posts=1)))
    m.observe_task("tasks.push.report_usage", "SUCCESS", 1.0, asdict(PushResult(refused=["r1", "r2"], anomalies=["x"])))
    m.observe_task("tasks.push.report_usage", "RETRY", 0.2, None)
    text = m.render().decode()
    assert value(text, "slurm_sync_orders_total", result="done") == done + 3
    assert value(text, "slurm_sync_orders_total", result="erred") == erred + 1
    assert value(text, "slurm_sync_usage_posts_total", kind="component") == posts + 5
    assert value(text, "slurm_sync_usage_posts_total", kind="user") == user_posts + 7
    assert value(text, "slurm_sync_usage_problems_total", kind="refused") == problems["refused"] + 2
    assert value(text, "slurm_sync_usage_problems_total", kind="anomaly") == problems["anomaly"] + 1
    assert value(text, "slurm_sync_usage_problems_total", kind="unreportable") == problems["unreportable"]
    assert value(text, "slurm_sync_task_runs_total", task="tasks.push.report_usage", state="retry") >= 1


def test_unreachable_waldur_is_a_request_error():
    before = m.render().decode()
    m.observe_waldur_unreachable("get", "http://127.0.0.1:1/api/marketplace-orders/?state=executing")
    text = m.render().decode()
    labels = dict(method="GET", endpoint="/api/marketplace-orders/", status="unreachable")
    assert value(text, "slurm_sync_waldur_request_errors_total", **labels) == \
        value(before, "slurm_sync_waldur_request_errors_total", **labels) + 1


def test_health_without_an_offering_vouches_for_the_connections_only(test_redis):
    """Flower's container has the broker and no WALDUR_OFFERING_UUID: the last-success marks are kept per
    offering, so its health check says the cycles are not checked instead of failing for ever."""
    from slurm_sync.cli.health import check
    from slurm_sync.settings import Settings
    from tests.plugins.celery_worker import test_redis_url
    healthy, line = check(Settings(redis_url=test_redis_url(), celery_broker_url=test_redis_url()))
    assert healthy and "cycles not checked" in line
    offered = Settings(redis_url=test_redis_url(), celery_broker_url=test_redis_url(),
                       waldur_offering_uuid="5f0d1e8a0c7b4c6f9d2e3a4b5c6d7e8f")
    healthy, line = check(offered)
    assert not healthy and "has not succeeded yet" in line
