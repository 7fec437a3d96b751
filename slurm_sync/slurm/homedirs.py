"""Home directories for newly associated users (ENABLE_USER_HOMEDIR_ACCOUNT_CREATION)."""
from __future__ import annotations

import logging
import os
import pwd
from typing import Iterable

from slurm_sync.domain.names import check_user_name
from slurm_sync.slurm.runner import NativeExecutor, SlurmCommandError

log = logging.getLogger(__name__)


def _home_exists(user: str) -> bool:
    try:
        return os.path.isdir(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return False  # unknown here: mkhomedir_helper (in the container, say) decides


def create_home_directories(executor: NativeExecutor, users: Iterable[str], local: bool = True) -> None:
    """Run ``mkhomedir_helper`` for each user whose home directory is missing.

    ``local`` is false in docker mode, where the container's passwd is not ours to read;
    mkhomedir_helper itself leaves an existing directory alone.
    """
    for user in users:
        check_user_name(user)
        if local and _home_exists(user):
            continue
        try:
            executor.run(["mkhomedir_helper", user])
            log.info("home directory created for %s", user)
        except SlurmCommandError as error:
            log.warning("home directory for %s not created: %s", user, error)
