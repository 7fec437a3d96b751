"""The sacctmgr adapter: read the association tree, apply plan operations with few commits.

Each sacctmgr write is one commit costing about half a second on slurmdbd however much it
changes (0.25-0.5 s measured on the 22.05 test bed), so operations are grouped: accounts are created by one
``load`` fed on stdin, user associations with identical account sets share one ``add user``,
identical limit sets share one ``modify account`` and the rest go in one ``load``.
"Nothing new added/modified/deleted" is success: re-applying a plan is a no-op, not an error.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from slurm_sync.domain import alphabet as safety
from slurm_sync.slurm import loadfile
from slurm_sync.slurm.runner import CommandResult, NativeExecutor, SlurmCommandError, changed_nothing
from slurm_sync.slurm.write_groups import chunks as _chunks, cross_groups as _cross_groups
from slurm_sync.domain.slurm_objects import (AddAccounts, AddUsers, Association, CancelJobs, CancelUserJobs, DeleteUsers,
                                            MarkAccounts, Operation, RemoveAccounts, RemoveUsers, SetDefaultAccounts,
                                            SetLimits)
from slurm_sync.slurm.parse import (ASSOC_FIELDS, LIMIT_FIELDS, USER_FIELDS, parse_associations, parse_default_accounts,
                                    parse_descriptions, parse_limits_and_users, parse_tres)

logger = logging.getLogger(__name__)

SACCTMGR = "sacctmgr"
# A limit set shared by more accounts than this is cheaper as one ``modify`` than inside a ``load``.
LOAD_GROUP_MAX = 3


@dataclass
class ApplyReport:
    """What :meth:`SacctmgrClient.apply` ran: every argument list, and how many of them committed."""

    commands: List[List[str]] = field(default_factory=list)
    commits: int = 0  # sacctmgr writes that changed something
    unchanged: int = 0  # sacctmgr writes that answered "Nothing ..."
    seconds: float = 0.0

    @property
    def processes(self) -> int:
        return len(self.commands)


# A write killed by its timeout is rolled back by slurmdbd, and on a large tree that rollback ran for
# hours here while every read waited behind it (slurmdbd 22.05 renumbers its nested-set lft/rgt for
# each association it adds: a 500-account load on a 5,000-association tree modified 22 million
# rows). So a write is given at least this long: letting it finish is the consistent outcome.
MIN_WRITE_TIMEOUT = 900.0

# Removals are bounded too. slurmdbd renumbers every row to the right of an association it removes, so one
# removal costs about 2 x the tree's size in row updates; measured here about 3 M row updates a minute, and a
# single `remove user` of 5,000 associations from a 6,300-row tree was still running after 5 minutes (20.5 M
# changes; killed, slurmdbd rolled it back at about one change a second). So one removal write carries at most
# REMOVAL_ROW_BUDGET / (2 x tree size) associations, at least REMOVAL_MIN: about a minute each, whatever the tree.
REMOVAL_ROW_BUDGET = 3_000_000
REMOVAL_MIN = 20
ASSUMED_TREE_SIZE = 10_000  # before this client has read the tree


class SacctmgrClient:
    def __init__(self, executor: NativeExecutor, timeout: float = 60.0, cluster: Optional[str] = None,
                 cancel_wait: float = 30.0):
        self.executor = executor
        self.cancel_wait = cancel_wait
        self.timeout = timeout
        self.write_timeout = max(timeout, MIN_WRITE_TIMEOUT)
        self._cluster = safety.name(cluster, "cluster") if cluster else None
        self.tree_size = ASSUMED_TREE_SIZE  # associations in the tree as last read: sizes the removal writes
        self.write_guard: Optional[Callable[[], None]] = None  # raises when this process may no longer write

    @contextlib.contextmanager
    def guarded(self, check: Callable[[], None]) -> Iterator[None]:
        """Every write (sacctmgr -i, scancel) inside the body first runs ``check``: a batch that lost the SLURM
        write lock stops before its next write instead of writing beside another batch."""
        self.write_guard = check
        try:
            yield
        finally:
            self.write_guard = None

    @property
    def removal_chunk(self) -> int:
        """The most associations one removal write may remove (see REMOVAL_ROW_BUDGET)."""
        return max(REMOVAL_MIN, REMOVAL_ROW_BUDGET // (2 * max(1, self.tree_size)))

    # ---- reading ------------------------------------------------------------------

    def _read(self, *args: str) -> str:
        return self.executor.run([SACCTMGR, "-P", "-n", *args], timeout=self.timeout).stdout

    @property
    def cluster(self) -> str:
        """The cluster written into load files and ``cluster=`` filters: given, or the only one known."""
        if self._cluster is None:
            names = [line.strip() for line in self._read("show", "cluster", "format=Cluster").splitlines()
                     if line.strip()]
            if len(names) != 1:
                raise SlurmCommandError([SACCTMGR, "show", "cluster"], 0,
                                        message=f"expected one cluster, found {names!r}: configure the cluster name")
            self._cluster = safety.name(names[0], "cluster")
        return self._cluster

    def read_associations(self, cluster: Optional[str] = None) -> List[Association]:
        """All associations (account and user rows), with Descriptions and DefaultAccounts.

        Two reads: ``show account withassoc`` gives every association with its account's
        Description; DefaultAccount is only printed by ``show user``. ``wopl`` (without parent limits) prints
        the same rows (GrpTRESMins is never inherited in this output) and spares slurmdbd one stored-procedure
        call per parent account: 4.7 s -> 1.8 s for a 1,000-allocation tree (4,353 associations), measured.
        """
        where = ["where", f"cluster={safety.name(cluster, 'cluster')}"] if cluster else []
        assoc = self._read("show", "account", "withassoc", "wopl", *where, "format=" + ",".join(ASSOC_FIELDS))
        users = self._read("show", "user", "format=" + ",".join(USER_FIELDS))
        associations = parse_associations(assoc, parse_default_accounts(users))
        self.tree_size = max(1, len(associations))
        return associations

    def read_limits_and_users(self, cluster: Optional[str] = None) -> List[Association]:
        """Every association's account, user and GrpTRESMins in ONE read (``show assoc wopi wopl``: no parents, no
        Descriptions, no DefaultAccounts): what a push cycle needs, 0.26 s against 0.88 s for
        :meth:`read_associations` on a 1,000-allocation tree (7,829 associations), measured."""
        where = ["where", f"cluster={safety.name(cluster, 'cluster')}"] if cluster else []
        return parse_limits_and_users(self._read("show", "assoc", "wopi", "wopl", *where,
                                                 "format=" + ",".join(LIMIT_FIELDS)))

    def read_descriptions(self) -> Dict[str, str]:
        """{account: Description} of every account in ONE read of the accounts alone (``show account``): the
        ownership marks a push cycle checks before it reports anything of an account."""
        return parse_descriptions(self._read("show", "account", "format=Account,Description"))

    def read_tres(self) -> Set[str]:
        return parse_tres(self._read("show", "tres", "format=Type,Name"))

    # ---- writing ------------------------------------------------------------------

    def apply(self, operations: Sequence[Operation]) -> ApplyReport:
        """Run ``operations`` in order; raise :class:`SlurmCommandError` at the first real failure."""
        report = ApplyReport()
        started = time.monotonic()
        handlers = {
            AddAccounts: self._add_accounts, SetLimits: self._set_limits, AddUsers: self._add_users,
            SetDefaultAccounts: self._set_defaults, RemoveUsers: self._remove_users, DeleteUsers: self._delete_users,
            CancelJobs: self._cancel_jobs, CancelUserJobs: self._cancel_user_jobs,
            RemoveAccounts: self._remove_accounts, MarkAccounts: self._mark_accounts,
        }
        try:
            for operation in operations:
                handler = handlers.get(type(operation))
                if handler is None:
                    raise TypeError(f"unknown plan operation {operation!r}")
                handler(operation, report)
        finally:
            report.seconds = time.monotonic() - started
        return report

    def _write(self, report: ApplyReport, args: Sequence[str], input: Optional[str] = None) -> CommandResult:
        if self.write_guard is not None:
            self.write_guard()
        argv = [SACCTMGR, "-i", *args]
        report.commands.append(argv)
        result = self.executor.run(argv, timeout=self.write_timeout, input=input, check=False)
        if changed_nothing(result.stdout + result.stderr):
            report.unchanged += 1
            logger.debug("no change: %s", " ".join(argv))
            return result
        if result.returncode != 0:
            raise SlurmCommandError(argv, result.returncode, result.stdout, result.stderr)
        report.commits += 1
        return result

    def _add_accounts(self, op: AddAccounts, report: ApplyReport) -> None:
        """One ``load`` for the whole tree; see :func:`loadfile.render` for DefaultAccount."""
        if op.accounts or op.users:
            text = loadfile.render(self.cluster, op.accounts, op.users)
            logger.debug("load file:\n%s", text)
            self._write(report, ["load", "file=/dev/stdin"], input=text)

    def _mark_accounts(self, op: MarkAccounts, report: ApplyReport) -> None:
        """Every Description in ONE ``load`` (see :func:`loadfile.render_marks`): one commit for any number."""
        if op.marks:
            self._write(report, ["load", "file=/dev/stdin"], input=loadfile.render_marks(self.cluster, op.marks))

    def _set_limits(self, op: SetLimits, report: ApplyReport) -> None:
        """Accounts sharing one limit set share one ``modify`` (one commit, ~0.35 s, however many
        names); the small groups go together in one ``load`` (one process, ~0.1 s per account:
        measured on 22.05), so a batch of Updates with distinct limits is not one commit each."""
        groups: Dict[Tuple[Tuple[str, int], ...], List[str]] = {}
        for account, limits in op.limits:
            key = tuple(sorted(safety.limits(limits).items()))
            if key:
                groups.setdefault(key, []).append(safety.owned_account(account))
        parents = dict(op.parents)
        small = [key for key, accounts in groups.items()
                 if len(accounts) <= LOAD_GROUP_MAX and all(a in parents for a in accounts)]
        if len(small) >= 2:
            self._write(report, ["load", "file=/dev/stdin"], input=loadfile.render_limits(
                self.cluster, [(a, parents[a], dict(key)) for key in small for a in groups.pop(key)]))
        for key, accounts in groups.items():
            self._write(report, ["modify", "account", "where", "name=" + ",".join(accounts),
                                 f"cluster={self.cluster}", "set",
                                 "GrpTRESMins=" + loadfile.tres_minutes(dict(key))])

    def _add_users(self, op: AddUsers, report: ApplyReport) -> None:
        for users, accounts in _cross_groups(op.users):
            self._write(report, ["add", "user", ",".join(users), "account=" + ",".join(accounts),
                                 f"cluster={self.cluster}"])

    def _set_defaults(self, op: SetDefaultAccounts, report: ApplyReport) -> None:
        """One ``modify user`` per new default account; moves to several accounts whose parents are known go
        in one ``load`` instead (a mass Terminate moved defaults to 21 accounts: 21 commits, now one)."""
        by_account: Dict[str, List[str]] = {}
        for user, account in op.defaults:
            by_account.setdefault(safety.owned_account(account, "default account"), []).append(
                safety.user(user))
        parents = dict(op.parents)
        if len(by_account) >= 2 and all(account in parents for account in by_account):
            self._write(report, ["load", "file=/dev/stdin"], input=loadfile.render_defaults(
                self.cluster, [(account, parents[account], users) for account, users in by_account.items()]))
            return
        for account, users in by_account.items():
            self._write(report, ["modify", "user", "where", "name=" + ",".join(users),
                                 f"cluster={self.cluster}", "set", f"DefaultAccount={account}"])

    def _remove_users(self, op: RemoveUsers, report: ApplyReport) -> None:
        for users, accounts in _cross_groups(op.users):
            for account_part in _chunks(accounts, {}, self.removal_chunk):  # each write: users x accounts
                for user_part in _chunks(users, {}, self.removal_chunk // len(account_part)):
                    self._write(report, ["remove", "user", "where", "name=" + ",".join(user_part),
                                         "account=" + ",".join(account_part), f"cluster={self.cluster}"])

    def _delete_users(self, op: DeleteUsers, report: ApplyReport) -> None:
        """Remove users whole, each only while its associations are still those the plan saw (its tree may be
        minutes old): a user added to another account since (a site's) is left alone, said, and planned again
        by the next cycle from a fresh read."""
        users = [safety.user(user) for user in op.users]
        known = {user: set(accounts) for user, accounts in op.known}
        now = self._accounts_of(users)
        whole = []
        for user in users:
            gained = now.get(user, set()) - known.get(user, now.get(user, set()))
            if gained:
                logger.warning("user %s is not removed: since the tree was read it got associations in %s; the "
                               "next cycle plans it again", user, ", ".join(sorted(gained)))
            elif now.get(user):
                whole.append(user)
        # Without cluster=: with it, 22.05 refuses a user holding several associations there ("You can not
        # remove the default account of a user"; measured by benchmarks/membership_sync.py). The planner
        # deletes a user whole only when the tree it read (every cluster's) shows nothing else of it.
        for part in _chunks(whole, {}, self.removal_chunk):
            self._write(report, ["remove", "user", "where", "name=" + ",".join(part)])

    def _accounts_of(self, users: Sequence[str]) -> Dict[str, Set[str]]:
        """{user: accounts it has associations in, on every cluster}, read now."""
        found: Dict[str, Set[str]] = {}
        for part in _chunks(list(users), {}, 200):
            for line in self._read("show", "assoc", "where", "user=" + ",".join(part),
                                   "format=Account,User").splitlines():
                account, _, user = line.partition("|")
                if user:
                    found.setdefault(user, set()).add(account)
        return found

    def _cancel_jobs(self, op: CancelJobs, report: ApplyReport) -> None:
        """``squeue --accounts=a,b`` then one ``scancel <ids>``; wait until the jobs are gone.

        ``scancel -A a,b`` takes "a,b" as one account name and cancels nothing (measured),
        and SLURM refuses to remove an account while it still has jobs.
        """
        accounts = [safety.owned_account(account) for account in op.accounts]
        if accounts:
            self._cancel(report, ["--accounts=" + ",".join(accounts)])

    def _cancel_user_jobs(self, op: CancelUserJobs, report: ApplyReport) -> None:
        """As :meth:`_cancel_jobs`, for the jobs of leaving members (``--users`` and ``--accounts`` select the
        cross product, so pairs are grouped as for ``remove user``)."""
        for users, accounts in _cross_groups(op.users):
            self._cancel(report, ["--accounts=" + ",".join(accounts), "--users=" + ",".join(users)])

    def _cancel(self, report: ApplyReport, selection: List[str]) -> None:
        deadline = time.monotonic() + self.cancel_wait
        cancelled = False
        while True:
            argv = ["squeue", "-h", "-o", "%A", *selection]
            report.commands.append(argv)
            ids = self.executor.run(argv, timeout=self.timeout).stdout.split()
            if not ids:
                return
            if cancelled and time.monotonic() > deadline:
                raise SlurmCommandError(argv, 0, message=f"jobs {' '.join(ids)} still queued after cancelling")
            argv = ["scancel", *ids]
            if self.write_guard is not None:
                self.write_guard()
            report.commands.append(argv)
            # A job may end between squeue and scancel: scancel then fails for it alone.
            result = self.executor.run(argv, timeout=self.timeout, check=False)
            if result.returncode:
                logger.info("scancel %s: %s", " ".join(ids), result.stderr.strip())
            cancelled = True
            time.sleep(0.3)

    def _remove_accounts(self, op: RemoveAccounts, report: ApplyReport) -> None:
        """Remove user associations first, then the accounts: nothing may be left behind.

        Removing an account leaves its users behind with an empty DefaultAccount and is refused
        outright when it is some user's default (measured), so: users whose associations all lie
        in these accounts are removed from the cluster completely; the others lose only these
        associations (their default must already point elsewhere: SetDefaultAccounts).
        """
        accounts = [safety.owned_account(account) for account in op.accounts]
        if not accounts:
            return
        doomed = set(accounts)
        members = self._read("show", "assoc", "wopl", "where", "account=" + ",".join(accounts), f"cluster={self.cluster}",
                             "format=User")
        held: Dict[str, int] = {}  # user -> its associations in these accounts: what removing it costs
        for name in members.split():
            user = safety.user(name)
            held[user] = held.get(user, 0) + 1
        users = sorted(held)
        if users:
            # every cluster: a user with an association anywhere else keeps the user record
            rows = self._read("show", "assoc", "wopl", "where", "user=" + ",".join(users), "format=User,Account,Cluster")
            elsewhere = {fields[0] for fields in (line.split("|") for line in rows.splitlines())
                         if len(fields) == 3 and (fields[1] not in doomed or fields[2] != self.cluster)}
            only_here = [user for user in users if user not in elsewhere]
            if only_here:
                # Without cluster=: `remove user where name=U cluster=C` is refused ("You must change the
                # default account") when U has several associations in C (measured on 22.05), and these
                # users have none anywhere else, so removing them whole is the same change.
                for part in _chunks(only_here, held, self.removal_chunk):
                    self._write(report, ["remove", "user", "where", "name=" + ",".join(part)])
            shared = [user for user in users if user in elsewhere]
            for part in _chunks(shared, held, self.removal_chunk):
                self._write(report, ["remove", "user", "where", "name=" + ",".join(part),
                                     "account=" + ",".join(accounts), f"cluster={self.cluster}"])
        # Without cluster=, so the account records go too, not only their associations. The order is kept
        # (children before parents), so a parent never goes in an earlier write than its children.
        for part in _chunks(accounts, {}, self.removal_chunk):
            self._write(report, ["remove", "account", "where", "name=" + ",".join(part)])
