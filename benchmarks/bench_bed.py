"""What the benchmarks share: their own Redis server, a private SLURM bed, a PATH shim timing sacctmgr calls,
waiting for orders to be final, and removing the tree a benchmark made on the shared bed with the tests' own helper."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator

import testkit.testbed as testbed
from testkit.redis_server import start_redis

REPO = Path(__file__).resolve().parents[1]


def remove_tree(parent: str, timeout: float = 3600) -> None:
    """Cancel the jobs under ``parent`` and remove it with every account and association beneath it."""
    subprocess.run([sys.executable, "-c", "from tests.plugins.slurm_bed import remove_sandbox; "
                    f"remove_sandbox({parent!r})"], cwd=REPO, timeout=timeout)


def own_redis(work: Path) -> tuple:
    """A private redis-server on a free loopback port, no persistence: (process, URL). A benchmark never touches
    (let alone flushes) a Redis it did not start."""
    try:
        return start_redis(work)
    except RuntimeError as failed:
        raise SystemExit(str(failed))


@contextlib.contextmanager
def private_bed(name: str, port_base: int = 6917) -> Iterator[Dict[str, str]]:
    """A throw-away bed for cluster ``name``: its own directory, ports and accounting database, purged (database
    dropped) at the end; its variables are in os.environ meanwhile. A scale benchmark then never removes a big
    tree from the shared bed: removals on a big tree cost minutes, and one killed mid-way leaves slurmdbd
    rolling back for hours."""
    directory = tempfile.mkdtemp(prefix=f"slurm-sync-{name}-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    saved = dict(os.environ)
    try:
        testbed.up(directory, cluster=name, slurm_port_base=port_base, say=lambda m: None, redis=False)
        variables = testbed.env(directory)
        os.environ.update(variables)
        yield variables
    finally:
        os.environ.clear()
        os.environ.update(saved)
        testbed.down(directory, purge=True, say=lambda m: None)
        shutil.rmtree(directory, ignore_errors=True)


def sender(broker: str):
    """A Celery app that only sends tasks to the worker listening on ``broker`` (the project's celeryconfig)."""
    from celery import Celery
    app = Celery("bench")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = broker
    return app


class SacctmgrCalls:
    """A ``sacctmgr`` shim in ``directory`` (put it first on PATH) that runs the real one and logs each call's
    start, end and arguments, so a benchmark counts processes and writes (``-i``) and the time spent in them."""

    def __init__(self, directory: Path):
        self.log = directory / "sacctmgr.calls"
        real = shutil.which("sacctmgr")
        shim = directory / "sacctmgr"
        shim.write_text(f'#!/bin/sh\nstart=$(date +%s.%N)\n{real} "$@"\nrc=$?\n'
                        f'echo "$start $(date +%s.%N) $*" >> {self.log}\nexit $rc\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        self.reset()

    def reset(self) -> None:
        self.log.write_text("")

    def _calls(self) -> list:
        return [line.split(" ", 2) for line in self.log.read_text().splitlines()]

    @property
    def processes(self) -> int:
        return len(self._calls())

    @property
    def writes(self) -> int:
        return sum(1 for _, _, args in self._calls() if args.startswith("-i"))

    @property
    def seconds(self) -> float:
        return sum(float(end) - float(start) for start, end, _ in self._calls())


def wait_final(emu, count: int, started: float, worker, limit: float) -> float:
    """Seconds from ``started`` until ``count`` orders were reported done or erred. It polls the emulator's request
    log, not the orders: rendering thousands of orders every 200 ms would starve the in-process emulator of the
    GIL and measure the harness instead of the worker."""
    while emu.count("POST", "set_state_done") + emu.count("POST", "set_state_erred") < count:
        time.sleep(0.2)
        if time.monotonic() - started > limit:
            print(worker.tail(), file=sys.stderr)
            raise SystemExit("timed out")
    return time.monotonic() - started
