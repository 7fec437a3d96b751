"""Run SLURM commands, natively or inside a container, always as argument lists.

Every call has a timeout (a hung slurmdbd must not hang a Celery worker forever) and
counts the processes it starts in ``counter`` so benchmarks can report them. Input for
``sacctmgr load`` goes through stdin (``load file=/dev/stdin``): the same code path works
natively and under ``docker exec -i``, with no temporary file to copy into a container.
"""
from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Sequence

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
_STDERR_TAIL = 500


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
        logger.debug("running %s", full)
        try:
            completed = subprocess.run(
                full, input=input, capture_output=True, text=True, timeout=limit,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            raise SlurmCommandError(full, None, _text(error.stdout), _text(error.stderr),
                                    message=f"timed out after {limit:g} s") from None
        except OSError as error:
            raise SlurmCommandError(full, None, message=f"cannot run: {error.strerror or error}") from None
        result = CommandResult(completed.returncode, completed.stdout, completed.stderr)
        if check and result.returncode != 0:
            raise SlurmCommandError(full, result.returncode, result.stdout, result.stderr)
        return result


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
