"""Start and stop the bed's daemons by pid file, and wait for them to answer.

Every daemon runs in the foreground under a detached Popen (its own session, stdin from
/dev/null, stdout/stderr appended to <log>.out). So the pid we record is the daemon
itself, errors printed before its log file opens are kept, and no daemon holds a caller's
pipe open (a CI runner waiting for EOF would hang).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from testkit.testbed.errors import TestbedError

RUN_TIMEOUT = 60


def run(argv: list[str], timeout: float = RUN_TIMEOUT, check: bool = True,
        env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output captured and a timeout always set."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{argv[0]} timed out after {timeout}s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise TestbedError(f"{argv[0]} not found: {exc}") from exc
    if check and proc.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                           f"{(proc.stdout + proc.stderr).strip()}")
    return proc


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def proc_state(pid: int) -> tuple[str, str] | None:
    """(comm, state letter) of a pid from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    return comm, stat[stat.rindex(")") + 2]


@dataclass(frozen=True)
class Daemon:
    """One daemon: how to start it and how to recognise its pid (comm is kernel-truncated)."""

    name: str
    argv: list[str]
    pid_file: Path
    log_file: Path
    comm: str

    def pid(self) -> int | None:
        """The recorded pid if it is alive, really this daemon, and not a zombie."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        state = proc_state(pid)
        if state is None or state[1] in "ZX" or state[0] != self.comm[:15]:
            return None
        return pid

    @property
    def out_file(self) -> Path:
        """stdout/stderr; kept apart because slurm daemons under -D repeat their log there."""
        return self.log_file.with_suffix(".out")

    def fail(self, what: str) -> TestbedError:
        tails = [f"--- last lines of {path} ---\n{log_tail(path)}"
                 for path in (self.log_file, self.out_file)
                 if path.exists() and path.stat().st_size]
        return TestbedError("\n".join([f"{self.name}: {what}", *tails]) if tails else
                            f"{self.name}: {what} (nothing in {self.log_file})")

    def start(self, env: dict[str, str] | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out_file, "ab") as log:
            try:
                # cwd in the bed: a crashing daemon dumps its core there, not in the caller's tree
                proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        cwd=self.pid_file.parent, start_new_session=True,
                                        close_fds=True)
            except OSError as exc:
                raise self.fail(f"cannot execute {self.argv[0]}: {exc}") from exc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 20) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            _reap(pid)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.05)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll `ready` until true; fail fast with the log tail if the daemon dies meanwhile."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while not ready():
            if self.pid() is None:
                raise self.fail(f"exited before {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"not {what} after {timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
