"""Run SLURM commands, natively or inside a container, always as argument lists.

Every call has a timeout (a hung slurmdbd must not hang a Celery worker forever) and
counts the processes it starts in ``counter`` so benchmarks can report them. ``run`` returns
the whole output; ``stream`` yields it line by line (sacct's month of jobs never sits in memory). Input for
``sacctmgr load`` goes through stdin (``load file=/dev/stdin``): the same code path works
natively and under ``docker exec -i``, with no temporary file to copy into a container.

Every command is logged as one INFO line (logger ``slurm_sync.slurm.runner``) with structured
fields ``event=slurm_command``, ``argv`` (the list actually run), ``result`` (ok, unchanged — a
sacctmgr write that changed nothing —, error, timeout, cannot-run), ``returncode`` and
``seconds``, and handed to each of :data:`command_observers` (the Prometheus metrics subscribe
there: :func:`slurm_sync.wiring.observe_adapters`). The text fed on stdin is never logged.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
_STDERR_TAIL = 500
_LOGGED_ARGV = 1000  # characters of the joined argv in the log message (the argv field is whole)
_LOGGED_ERROR = 300
# what sacctmgr answers, whatever its exit code, to a write that changed nothing: 22.05's words, then 24.11's for
# an add of what exists ("Nothing added.", "Request didn't affect anything", "Already existing account X on cluster
# C"; measured, ../shared/reference/slurm.md)
NOTHING = ("Nothing new added", "Nothing modified", "Nothing deleted", "Nothing to change", "Nothing added",
           "Request didn't affect anything", "Already existing account")


def changed_nothing(output: str) -> bool:
    """A sacctmgr write's output says it changed nothing, and names no error beside it (an add of several where
    one exists and another failed is a failure, whatever 24.11 says of the one)."""
    return any(marker in output for marker in NOTHING) and "rror" not in output

CommandObserver = Callable[[Sequence[str], str, float, bool], None]
command_observers: List[CommandObserver] = []
"""Called with (argv unwrapped, result, seconds, is a sacctmgr write) after every command; an observer's
error is logged, never raised."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class SlurmCommandError(Exception):
    """A SLURM command failed, timed out or could not be started."""

    def __init__(self, argv: Sequence[str], returncode: Optional[int], stdout: str = "", stderr: str = "",
                 message: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        self.message = message
        super().__init__(str(self))

    def __reduce__(self):
        """Picklable with its fields (Celery sends a task's exception through the broker)."""
        return (type(self), (self.argv, self.returncode, self.stdout, self.stderr, self.message))

    def __str__(self) -> str:
        what = self.message or f"exited with {self.returncode}"
        text = f"{' '.join(self.argv)}: {what}"
        tail = (self.stderr.strip() or self.stdout.strip())[-_STDERR_TAIL:]
        return f"{text}: {tail}" if tail else text


class NativeExecutor:
    """Runs commands on this host."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.counter = 0

    def wrap(self, argv: Sequence[str]) -> List[str]:
        """The argument list actually executed for ``argv``."""
        return list(argv)

    def run(self, argv: Sequence[str], *, timeout: Optional[float] = None, input: Optional[str] = None,
            check: bool = True) -> CommandResult:
        argv = [str(arg) for arg in argv]
        if not argv:
            raise ValueError("empty command")
        full = self.wrap(argv)
        limit = self.timeout if timeout is None else timeout
        self.counter += 1
        started = time.monotonic()
        try:
            completed = subprocess.run(
                full, input=input, capture_output=True, text=True, timeout=limit,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            observe_run(argv, full, "timeout", None, time.monotonic() - started, f"timed out after {limit:g} s")
            raise SlurmCommandError(full, None, _text(error.stdout), _text(error.stderr),
                                    message=f"timed out after {limit:g} s") from None
        except OSError as error:
            observe_run(argv, full, "cannot-run", None, time.monotonic() - started, str(error.strerror or error))
            raise SlurmCommandError(full, None, message=f"cannot run: {error.strerror or error}") from None
        result = CommandResult(completed.returncode, completed.stdout, completed.stderr)
        observe_run(argv, full, _outcome(argv, result), result.returncode, time.monotonic() - started,
                 (result.stderr.strip() or result.stdout.strip())[-_LOGGED_ERROR:] if result.returncode else "")
        if check and result.returncode != 0:
            raise SlurmCommandError(full, result.returncode, result.stdout, result.stderr)
        return result

    def stream(self, argv: Sequence[str], *, timeout: Optional[float] = None,
               env: Optional[Mapping[str, str]] = None) -> Iterator[str]:
        """``argv``'s stdout line by line, one deadline for the whole run; ``env`` reaches the command as
        ``env K=V ...`` (so natively and under ``docker exec`` alike). stderr goes to a temporary file (a
        pipe could fill and stall the command). Raises :class:`SlurmCommandError` after the lines when it
        fails or passes ``timeout``: the caller must not trust a partial output."""
        argv = [str(arg) for arg in argv]
        full = self.wrap(["env", *(f"{k}={v}" for k, v in env.items()), *argv] if env else argv)
        limit = self.timeout if timeout is None else timeout
        self.counter += 1
        started = time.monotonic()
        with tempfile.TemporaryFile() as stderr:
            try:
                process = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                           text=True, encoding="utf-8", errors="replace")
            except OSError as error:
                observe_run(argv, full, "cannot-run", None, time.monotonic() - started, str(error.strerror or error))
                raise SlurmCommandError(full, None, message=f"cannot run: {error.strerror or error}") from None
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                process.kill()

            timer = threading.Timer(limit, kill) if limit else None
            if timer:
                timer.daemon = True
                timer.start()
            try:
                assert process.stdout is not None
                yield from process.stdout
                returncode = process.wait()
            finally:
                if timer:
                    timer.cancel()
                if process.poll() is None:  # the consumer stopped early
                    process.kill()
                    process.wait()
                process.stdout.close()  # type: ignore[union-attr]
            seconds = time.monotonic() - started
            if timed_out.is_set():
                observe_run(argv, full, "timeout", None, seconds, f"timed out after {limit:g} s")
                raise SlurmCommandError(full, None, message=f"timed out after {limit:g} s")
            stderr.seek(0)
            message = stderr.read(4000).decode("utf-8", "replace").strip()
            observe_run(argv, full, "ok" if returncode == 0 else "error", returncode, seconds,
                        message if returncode else "")
            if returncode != 0:
                raise SlurmCommandError(full, returncode, stderr=message)


class DockerExecutor(NativeExecutor):
    """Runs commands inside a running container with ``docker exec -i``."""

    def __init__(self, container_name: str, timeout: float = DEFAULT_TIMEOUT, docker_binary: str = "docker"):
        super().__init__(timeout)
        if not container_name or container_name.startswith("-"):
            raise ValueError(f"invalid container name {container_name!r}")
        self.container_name = container_name
        self.docker_binary = docker_binary

    def wrap(self, argv: Sequence[str]) -> List[str]:
        return [self.docker_binary, "exec", "-i", self.container_name, *argv]


def _outcome(argv: Sequence[str], result: CommandResult) -> str:
    """ok / unchanged (a sacctmgr write answering "Nothing ...", whatever its exit code) / error."""
    if is_sacctmgr_write(argv):
        if changed_nothing(result.stdout + result.stderr):
            return "unchanged"
    return "ok" if result.returncode == 0 else "error"


def is_sacctmgr_write(argv: Sequence[str]) -> bool:
    """``sacctmgr -i ...``: the form every slurm-sync write takes (reads use ``-P -n``)."""
    return len(argv) > 1 and os.path.basename(str(argv[0])) == "sacctmgr" and "-i" in argv[1:3]


def observe_run(argv: List[str], full: List[str], result: str, returncode: Optional[int], seconds: float,
                error: str = "") -> None:
    """One structured log line per command, and each of :data:`command_observers` told (never raises)."""
    try:
        for observer in command_observers:
            observer(argv, result, seconds, is_sacctmgr_write(argv))
        joined = shlex.join(full)
        if len(joined) > _LOGGED_ARGV:
            joined = f"{joined[:_LOGGED_ARGV]}... (+{len(joined) - _LOGGED_ARGV} chars)"
        code = "" if returncode is None else f" rc={returncode}"
        level = logging.WARNING if result in ("error", "timeout", "cannot-run") else logging.INFO
        message = f"slurm command {result}{code} in {seconds:.3f} s: {joined}"
        if error:
            message += f": {' '.join(error.split())}"
        logger.log(level, message, extra={"event": "slurm_command", "argv": full, "result": result,
                                          "returncode": returncode, "seconds": round(seconds, 4),
                                          **({"error": error} if error else {})})
    except Exception:  # noqa: BLE001 - observing must never break the command
        logger.debug("observing %s failed", argv, exc_info=True)


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def make_executor(deployment_type: str, container_name: str = "", timeout: float = DEFAULT_TIMEOUT) -> NativeExecutor:
    """``deployment_type`` is ``native`` or ``docker`` (the latter needs ``container_name``)."""
    kind = (deployment_type or "native").strip().lower()
    if kind == "native":
        return NativeExecutor(timeout=timeout)
    if kind == "docker":
        return DockerExecutor(container_name, timeout=timeout)
    raise ValueError(f"unknown deployment type {deployment_type!r} (expected native or docker)")
