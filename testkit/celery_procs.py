"""Real Celery worker and beat processes for tests, the demo and benchmarks.

They run exactly as an operator runs them (`celery -A tasks worker -Q headnode,celery`), with
the environment given; output goes to a log file whose tail is shown when they fail to start.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional

REPO = Path(__file__).resolve().parents[1]


class CeleryProcess:
    def __init__(self, argv: List[str], env: Mapping[str, str], log_path: Path):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=dict(env), cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{' '.join(self.argv[:4])} did not report {text!r} "
                           f"(exit {self.proc.poll()}); log tail:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (a prefork worker has children)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def start_worker(env: Mapping[str, str], log_dir: Path, name: str = "headnode", queues: str = "headnode,celery",
                 concurrency: int = 1, extra: Optional[List[str]] = None) -> CeleryProcess:
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues, "-c", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO", *(extra or [])]
    worker = CeleryProcess(argv, env, Path(log_dir) / f"worker-{name}.log")
    worker.wait_for("ready.")
    return worker


def start_beat(env: Mapping[str, str], log_dir: Path) -> CeleryProcess:
    schedule = Path(log_dir) / "celerybeat-schedule"
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO", "-s", str(schedule),
            "--pidfile", str(Path(log_dir) / "beat.pid")]
    beat = CeleryProcess(argv, env, Path(log_dir) / "beat.log")
    beat.wait_for("beat: Starting")
    return beat


def sync_environment(base: Mapping[str, str], **settings: str) -> Dict[str, str]:
    """The process environment for slurm-sync: ``base`` (PATH, SLURM_CONF...) plus its settings."""
    env = dict(base)
    env.setdefault("SLURM_TRES_CONFIG_PATH", str(REPO / "config-components.yaml"))
    env.update({k: str(v) for k, v in settings.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env
