"""Logins as the SLURM head node knows them: a uid looked up where SLURM runs (``getent`` through the runner, so
in docker mode inside the SLURM container), for the system-account rule (SLURM_SYNC_MIN_UID)."""
from __future__ import annotations

from typing import Dict, Optional

from slurm_sync.domain import alphabet as safety
from slurm_sync.slurm.runner import NativeExecutor


class HeadNodeUsers:
    """``uid_of(login)``: the login's uid on the head node, None when it has none there. Answers are kept for the
    process's life: system accounts do not come and go."""

    def __init__(self, executor: NativeExecutor, timeout: float = 30.0):
        self.executor = executor
        self.timeout = timeout
        self._uids: Dict[str, Optional[int]] = {}

    def uid_of(self, login: str) -> Optional[int]:
        if login not in self._uids:
            result = self.executor.run(["getent", "passwd", safety.user(login)], timeout=self.timeout, check=False)
            fields = result.stdout.strip().split(":") if result.returncode == 0 else []
            self._uids[login] = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
        return self._uids[login]
