"""Fixtures of the compose-stack stage: the engine, the images, the Waldur emulator, the SLURM head node.

Everything here is made by this session and removed at its end: the engine's scratch directory (images,
containers, volumes, networks), the service's process (by pid), the head node's database and user.
Run with `pytest -m compose tests/compose` (scripts/test runs it after the main suite).
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from testkit.testbed.configs import Spec
from testkit.testbed.services import drop_slurm_database, ensure_slurm_database
from testkit.waldur_emulator import WaldurEmulator

from tests.compose.engine import SLURM_HEAD_IMAGE, Engine, HealthRunner
from tests.compose.stack import REPO, container_hosts_address

TIMINGS: Dict[str, float] = {}
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Every test of this directory (and only those: the hook sees the whole session's items) is `compose`."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.compose)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "compose stage timings")
        for step, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{step:<45} {seconds:7.1f} s")


class timed:
    def __init__(self, step: str):
        self.step = step

    def __enter__(self):
        self.started = time.monotonic()

    def __exit__(self, *exc):
        TIMINGS[self.step] = time.monotonic() - self.started


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.fail("the compose stage installs and runs a container engine: it needs root")
    scratch = Path(os.environ.get("SLURM_SYNC_COMPOSE_DIR", f"/var/tmp/slurm-sync-compose-{os.getpid()}"))
    engine = Engine(scratch)
    try:
        with timed("engine: install + start"):
            engine.start()
        with timed("base images (debootstrap + 4 builds)"):
            engine.make_base_images()
        with timed("product image (docker/Dockerfile, once)"):
            engine.build(REPO, "docker/Dockerfile", "docker.io/library/slurm-sync:latest")
        runner = HealthRunner(engine).start()
        try:
            yield engine
        finally:
            runner.stop()
    finally:
        if os.environ.get("SLURM_SYNC_COMPOSE_KEEP") == "1":  # keep the engine and its images for the next run
            engine.service.terminate()
        else:
            with timed("teardown"):
                engine.stop()


@pytest.fixture(scope="session")
def waldur_for_containers() -> Iterator[WaldurEmulator]:
    """The emulator on every host address: the containers reach it through their network's gateway."""
    emu = WaldurEmulator(token=secrets.token_hex(20), host="0.0.0.0").start()
    emu.store.base_url = container_url(emu)
    yield emu
    emu.stop()


def container_url(emu: WaldurEmulator) -> str:
    return f"http://{container_hosts_address()}:{emu.port}/api/"


class HeadNode:
    """A SLURM head node in a container (tests/compose/images/slurm-head.Containerfile)."""

    def __init__(self, engine: Engine, name: str, spec: Spec):
        self.engine, self.name, self.spec = engine, name, spec

    def exec(self, *argv: str, check: bool = True) -> str:
        return self.engine.podman("exec", self.name, *argv, check=check, timeout=120).stdout

    def associations(self) -> list:
        rows = self.exec("sacctmgr", "-n", "-P", "show", "assoc", "format=account,user,parentname,grptresmins")
        return [line.split("|") for line in rows.splitlines()]


@pytest.fixture(scope="session")
def head_node(engine) -> Iterator[HeadNode]:
    """munged + slurmdbd + slurmctld in a container on the host's network, its database on the host's MariaDB."""
    spec = Spec(cluster=f"head{secrets.token_hex(3)}")  # its database and user, as the bed makes its own
    ensure_slurm_database(spec)
    name = f"slurm-head-{spec.cluster}"
    settings = {"DB_NAME": spec.db_name, "DB_USER": spec.db_user, "DB_PASSWORD": spec.db_password,
                "DB_HOST": spec.db_host, "DB_PORT": spec.db_port, "CLUSTER": spec.cluster, "PORT_BASE": 16917}
    try:
        with timed("head node: start"):
            engine.podman("run", "--detach", "--name", name, "--network", "host",
                          *(f"--env={key}={value}" for key, value in settings.items()), SLURM_HEAD_IMAGE)
            node = HeadNode(engine, name, spec)
            deadline = time.monotonic() + 120
            while spec.cluster not in node.exec("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster",
                                                check=False):
                if time.monotonic() > deadline:
                    logs = engine.podman("logs", name, check=False)
                    raise AssertionError(f"head node did not come up: {logs.stdout}{logs.stderr}")
                time.sleep(1)
        yield node
    finally:
        engine.podman("rm", "--force", "--time", "0", name, check=False)
        drop_slurm_database(spec)
