"""Serving the metrics: multiprocess mode for a prefork worker, the /metrics endpoint, reading a worker's.

In multiprocess mode every pool child writes its samples to files in one directory (prometheus_client's
``PROMETHEUS_MULTIPROC_DIR``, a private temporary one unless it is set) and the endpoint sums them.
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from typing import Optional

from slurm_sync.observability.metrics import MULTIPROC_ENV, exposition_registry, multiprocess, reset
from slurm_sync.settings import environment

log = logging.getLogger(__name__)
_PRIVATE_PREFIX = "slurm-sync-metrics-"
_private_dir: Optional[str] = None
serving: str = ""  # what start_server serves, for the worker to log once logging is set up


def prepare_multiprocess() -> str:
    """Switch this process (and the pool children it will fork) to multiprocess mode; return the directory.

    Must run before the first metric is created; a private directory is made unless
    PROMETHEUS_MULTIPROC_DIR is set.
    """
    global _private_dir
    directory = environment().get(MULTIPROC_ENV)
    if not directory:
        _remove_stale_private_dirs()
        directory = tempfile.mkdtemp(prefix=_PRIVATE_PREFIX)
        with open(os.path.join(directory, "owner.pid"), "w") as owner:
            owner.write(str(os.getpid()))
        os.environ[MULTIPROC_ENV] = directory  # for prometheus_client, which reads it (the one write)
        _private_dir = directory
    elif not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
    from prometheus_client import values
    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported before
    reset()  # re-created on first use, now backed by files
    return directory


def _remove_stale_private_dirs() -> None:
    """Private directories of workers that died without their shutdown (SIGKILL)."""
    for directory in glob.glob(os.path.join(tempfile.gettempdir(), _PRIVATE_PREFIX + "*")):
        try:
            with open(os.path.join(directory, "owner.pid")) as owner:
                pid = int(owner.read().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (OSError, ValueError):
            continue


def start_server(port: int, addr: str = "127.0.0.1"):
    """Serve /metrics on ``addr:port`` in a daemon thread; raises OSError when the port is taken."""
    from prometheus_client import start_http_server
    server = start_http_server(port, addr=addr, registry=exposition_registry())
    global serving
    host = f"[{addr}]" if ":" in addr else addr
    serving = f"metrics served on http://{host}:{port}/metrics (" + (
        f"multiprocess, {environment()[MULTIPROC_ENV]})" if multiprocess() else "single process)")
    return server


def url(addr: str, port: int) -> str:
    """The /metrics URL of a server bound to ``addr``: every interface (0.0.0.0, ::) is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(addr, addr)
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def child_exited(pid: int) -> None:
    """A pool child ended: drop its live gauges (counters and max gauges keep counting)."""
    if multiprocess():
        try:
            from prometheus_client import multiprocess as mp
            mp.mark_process_dead(pid)
        except Exception:  # noqa: BLE001
            log.debug("mark_process_dead(%s) failed", pid, exc_info=True)


def cleanup() -> None:
    """Remove the private multiprocess directory (worker shutdown)."""
    global _private_dir
    if _private_dir:
        shutil.rmtree(_private_dir, ignore_errors=True)
        _private_dir = None


def fetch(url: str, timeout: float = 5.0) -> str:
    """The text of a running worker's /metrics (for ``slurm-sync metrics``)."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator-given URL)
        return response.read().decode()
