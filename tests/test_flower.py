"""Flower (the `ops` extra) against slurm-sync's app and a real worker: `celery -A tasks flower`.

Flower lists the worker through its HTTP API behind basic auth and sees the tasks it runs (the
worker sends task events: celeryconfig.worker_send_task_events).
"""
import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.request

import pytest

from testkit.celery_procs import CeleryProcess, sync_environment
from tests.plugins.celery_worker import wait_until

from tests.pull_scenario import Scenario

pytest.importorskip("flower")
USER, PASSWORD = "ops", "flower-test-pw-7d1e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, auth: bool = True):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read().decode()


@pytest.fixture
def flower(sync_env, waldur, tmp_path):
    port = free_port()
    env = sync_environment(os.environ, WALDUR_OFFERING_UUID="0" * 32, **sync_env)
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1", f"--port={port}",
            f"--basic-auth={USER}:{PASSWORD}", "--inspect-timeout=3000"]
    process = CeleryProcess(argv, env, tmp_path / "flower.log")
    try:
        process.wait_for("Visit me at", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def test_flower_lists_the_worker_and_its_tasks_behind_basic_auth(waldur, start_worker, send, flower):
    scenario = Scenario(waldur)
    worker = start_worker(scenario.offering["uuid"], name="flowered")
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"{flower}/api/workers", auth=False)
    assert refused.value.code == 401

    def listed():
        status, body = get(f"{flower}/api/workers?refresh=1")
        return status == 200 and any(name.startswith("flowered@") for name in json.loads(body))
    wait_until(listed, timeout=60, what="the worker listed by flower")
    workers = json.loads(get(f"{flower}/api/workers")[1])
    name = next(n for n in workers if n.startswith("flowered@"))
    queues = {q["name"] for q in workers[name].get("active_queues") or []}
    assert queues == {"headnode", "celery"}
    registered = set(workers[name].get("registered") or [])
    assert {"tasks.pull.poll_orders", "tasks.pull.process_orders", "tasks.push.report_usage"} <= registered

    result = send("tasks.pull.poll_orders")

    def seen():
        status, body = get(f"{flower}/api/tasks")
        task = json.loads(body).get(result.id)
        return task is not None and task.get("state") == "SUCCESS"
    wait_until(seen, timeout=60, what="the poll task seen by flower")
    task = json.loads(get(f"{flower}/api/task/info/{result.id}")[1])
    assert task["name"] == "tasks.pull.poll_orders" and task["worker"].startswith("flowered@")
    assert worker.proc.poll() is None
