"""What the benchmarks share: their own Redis server, and removing the tree a benchmark made on the bed with the
tests' own helper."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def remove_tree(parent: str, timeout: float = 3600) -> None:
    """Cancel the jobs under ``parent`` and remove it with every account and association beneath it."""
    subprocess.run([sys.executable, "-c", "from tests.plugins.slurm_bed import remove_sandbox; "
                    f"remove_sandbox({parent!r})"], cwd=REPO, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_redis(work: Path) -> tuple:
    """A private redis-server on a free loopback port, no persistence: (process, URL). A benchmark never touches
    (let alone flushes) a Redis it did not start."""
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")
