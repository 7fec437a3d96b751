"""pytest plugin: slurm-sync's real Celery worker(s) against the bed, the emulator and a test Redis db.

``sync_env`` is the worker environment for this test (the emulator's URL and offering, a private
SLURM parent account, the session's own Redis flushed before the test); ``start_worker`` starts a real
`celery -A tasks worker -Q headnode,celery` with it and stops it after the test; ``send`` sends a
task by name through the same broker and returns its AsyncResult: the worker stores every task's result
in the test Redis, so a test waits for the task to have run (``result.get``), not for time to pass.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import redis

from testkit.celery_procs import start_worker as _start_worker, sync_environment
from testkit.redis_server import start_redis

_own_redis: dict = {}


def test_redis_url() -> str:
    """The URL of the test session's own redis-server, started on first use and stopped when the session ends:
    the tests never touch a Redis they did not start (two suites side by side each have their own)."""
    if not _own_redis:
        work = Path(tempfile.mkdtemp(prefix="slurm-sync-test-redis-"))
        proc, url = start_redis(work)
        _own_redis.update(proc=proc, url=url, work=work)
    return _own_redis["url"]


test_redis_url.__test__ = False  # a helper, not a test


def pytest_unconfigure(config):
    if _own_redis:
        _own_redis["proc"].terminate()
        _own_redis["proc"].wait(timeout=10)
        shutil.rmtree(_own_redis["work"], ignore_errors=True)
        _own_redis.clear()


def wait_until(predicate, timeout=60.0, what="condition"):
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def test_redis():
    client = redis.Redis.from_url(test_redis_url())
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def sync_env(slurm_sandbox, waldur, test_redis, tmp_path):
    """Settings for a worker of this test; the SLURM parent account is made by the product under the sandbox."""
    from tests.pull_scenario import COMPONENTS_YAML
    components = tmp_path / "components.yaml"
    components.write_text(COMPONENTS_YAML)
    url = test_redis_url()
    return {
        "WALDUR_API_URL": waldur.url, "WALDUR_API_TOKEN": waldur.token, "WALDUR_SYNC_DIRECTION": "pull",
        # account names are cluster-wide: each test gets its own prefixes
        "SLURM_DEFAULT_ACCOUNT": f"{slurm_sandbox}w", "SLURM_CUSTOMER_PREFIX": f"c{slurm_sandbox[1:5]}_",
        "SLURM_PROJECT_PREFIX": f"p{slurm_sandbox[1:5]}_", "SLURM_ALLOCATION_PREFIX": f"a{slurm_sandbox[1:5]}_", "SLURM_TRES_CONFIG_PATH": str(components),
        "CELERY_BROKER_URL": url, "REDIS_URL": url, "CELERY_RESULT_BACKEND": url,
    }


@pytest.fixture
def start_worker(tmp_path, sync_env):
    started = []

    def start(offering_uuid: str, name: str = "headnode", **extra: str):
        env = sync_environment(os.environ, WALDUR_OFFERING_UUID=offering_uuid, **{**sync_env, **extra})
        worker = _start_worker(env, Path(tmp_path), name=name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
    from tests.plugins.slurm_bed import remove_sandbox
    remove_sandbox(sync_env["SLURM_DEFAULT_ACCOUNT"])


@pytest.fixture(scope="session")
def _test_app():
    """A client app with slurm-sync's configuration (routes included) on the test broker."""
    from celery import Celery
    app = Celery("slurm_sync_tests")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = app.conf.result_backend = test_redis_url()
    app.conf.task_ignore_result = False
    yield app
    app.close()


@pytest.fixture
def send(sync_env, _test_app):
    def send_task(name: str, *args):
        return _test_app.send_task(name, args=list(args))

    return send_task
