"""pytest plugin: the real SLURM test bed and per-test account sandboxes.

Fixtures:
  slurm_bed      (session)  brings the bed up once (idempotent) and exports its env (SLURM_CONF,
                            SLURM_SYNC_TESTBED_*) into os.environ. It leaves the bed up: other
                            pytest sessions (xdist workers, a colleague's run) may share it, and
                            a second session's `up` then costs ~0.1 s. `python -m testkit testbed down`
                            stops it.
  slurm_sandbox  (function) a fresh account t<hex8> under root; at teardown its jobs are
                            cancelled and every account and user association beneath it removed.
Helpers: sacctmgr(), ensure_unix_user(), add_slurm_user(), remove_sandbox().
"""
from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

import testkit.testbed as testbed

TIMEOUT = 60


@dataclass(frozen=True)
class SlurmBed:
    dir: Path
    cluster: str
    env: dict[str, str]  # the variables `python -m testkit testbed env` exports

    @property
    def slurm_conf(self) -> Path:
        return Path(self.env["SLURM_CONF"])


def slurm(*argv: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a SLURM client command with the inherited environment (SLURM_CONF from slurm_bed)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{proc.stdout}{proc.stderr}")
    return proc


def sacctmgr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return slurm("sacctmgr", *args, check=check)


def ensure_unix_user(name: str) -> str:
    """Create a unix user (with home) for job tests unless it exists; return its name."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", name], check=True, timeout=TIMEOUT,
                       capture_output=True)
    return name


def add_slurm_user(user: str, account: str) -> None:
    """Associate `user` with `account` only (no DefaultAccount=root: no root|user association)."""
    sacctmgr("-i", "add", "user", user, f"account={account}")


def mark_ours(resources) -> None:
    """Give each account ({account: Waldur resource}) slurm-sync's ownership mark for its resource, as the product
    writes it on the accounts it makes: push reports nothing of an account without it."""
    from slurm_sync.domain.desired import ownership_mark
    for account, resource in resources.items():
        sacctmgr("-i", "modify", "account", "where", f"name={account}", "set",
                 f"Description={ownership_mark('allocation', resource['uuid'])}")


def _descendants(parent: str) -> list[str]:
    """`parent` and every account below it, parents before children."""
    rows = sacctmgr("-n", "-P", "show", "assoc", "format=account,user,parentname").stdout
    children: dict[str, list[str]] = {}
    for line in rows.splitlines():
        account, user, parent_name = (line.split("|") + ["", ""])[:3]
        if not user and parent_name:
            children.setdefault(parent_name, []).append(account)
    tree, queue = [], [parent]
    while queue:
        account = queue.pop(0)
        if account not in tree:
            tree.append(account)
            queue.extend(children.get(account, []))
    return tree


def _cancel_jobs(accounts: list[str], timeout: float = 30) -> None:
    """Cancel the accounts' jobs and wait until none is left: SLURM refuses to remove an
    account that still has jobs."""
    def job_ids() -> list[str]:
        return slurm("squeue", "-h", "-o", "%A", f"--accounts={','.join(accounts)}").stdout.split()
    deadline = time.monotonic() + timeout
    while ids := job_ids():
        slurm("scancel", *ids, check=False)
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs {ids} of {accounts} still queued after {timeout}s")
        time.sleep(0.2)


def remove_sandbox(parent: str) -> None:
    """Remove `parent`, all accounts below it and their user associations.

    A user's association that is its DefaultAccount cannot go while the user has others,
    so such users get a default outside the sandbox first.
    """
    accounts = _descendants(parent)
    if not sacctmgr("-n", "-P", "show", "account", parent, "format=account").stdout.strip():
        return  # never made (a test that stopped early) or already gone
    _cancel_jobs(accounts)
    assoc = [line.split("|") for line in
             sacctmgr("-n", "-P", "show", "assoc", "format=user,account").stdout.splitlines()]
    users = sorted({u for u, a in assoc if u and a in accounts})
    defaults = dict(line.split("|")[:2] for line in sacctmgr(
        "-n", "-P", "show", "user", "format=user,defaultaccount").stdout.splitlines())
    for user in users:
        elsewhere = [a for u, a in assoc if u == user and a not in accounts]
        if defaults.get(user) in accounts and elsewhere:
            _write("modify", "user", user, "set", f"defaultaccount={elsewhere[0]}")
    # A user whose last association goes must be removed whole: `remove user ... account=`
    # of the last one leaves a live user with no association, which crashes slurmdbd 22.05.
    whole = [u for u in users if not [a for v, a in assoc if v == u and a not in accounts]]
    partial = [u for u in users if u not in whole]
    for chunk in _chunks(whole):
        _write("remove", "user", "where", f"name={','.join(chunk)}")
    for chunk in _chunks(partial):
        _write("remove", "user", "where", f"name={','.join(chunk)}", f"account={','.join(accounts)}")
    for chunk in _chunks(accounts[::-1]):  # children before parents
        _write("remove", "account", "where", f"name={','.join(chunk)}")


# slurmdbd 22.05 renumbers its nested-set tree for every association it removes, so one `remove` of
# thousands of associations runs for many minutes; killed by a timeout, it is rolled back for longer
# still while every read waits. So each write names a bounded number of users or accounts and is given
# long enough to finish.
REMOVE_CHUNK = 100
WRITE_TIMEOUT = 900.0


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), REMOVE_CHUNK):
        yield names[start:start + REMOVE_CHUNK]


def _write(*args: str) -> subprocess.CompletedProcess:
    return slurm("sacctmgr", "-i", *args, timeout=WRITE_TIMEOUT)


@pytest.fixture(scope="session")
def slurm_bed() -> Iterator[SlurmBed]:
    if os.geteuid() != 0:
        why = "the real SLURM bed runs its daemons as root"
        if os.environ.get("CI") == "true":  # .ci/run: a bed test that cannot run is a failure, not a skip
            pytest.fail(why)
        pytest.skip(why)
    testbed.up(say=lambda message: print(f"[slurm_bed] {message}"), redis=False)  # tests start their own Redis
    variables = testbed.env()
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield SlurmBed(Path(variables["SLURM_SYNC_TESTBED_DIR"]),
                       variables["SLURM_SYNC_TESTBED_CLUSTER"], variables)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def slurm_sandbox(slurm_bed: SlurmBed) -> Iterator[str]:
    name = f"t{secrets.token_hex(4)}"
    sacctmgr("-i", "add", "account", name, "parent=root", "description=test sandbox",
             "organization=slurm-sync-tests")
    try:
        yield name
    finally:
        remove_sandbox(name)
