"""Write synthetic job rows straight into slurmdbd's ``<cluster>_job_table`` (tests, benchmarks).

The scheduler on a small bed runs a few trivial jobs a second; usage at scale (100,000 rows,
jobs across a month boundary, jobs started months ago) is made here instead, and ``sacct``
reads it back through slurmdbd like any other job. Rows go through the ``mariadb`` CLI as
multi-row INSERTs on stdin (one process for any number of rows, no Python driver needed); the
password travels in ``MYSQL_PWD``, never in argv. Every row carries :data:`MARKER` as its job
name so :meth:`JobTable.delete_synthetic` removes only what was injected.

Only for a throw-away bed: never point this at a site's accounting database.
"""
from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

MARKER = "slurm-sync-synthetic"
NO_VAL = 4294967294  # SLURM's NO_VAL: not an array task / not a het job
STATE_RUNNING, STATE_COMPLETE = 1, 3
_COLUMNS = ("mod_time", "account", "cpus_req", "job_name", "id_assoc", "id_job", "id_resv", "id_wckey",
            "id_user", "id_group", "het_job_id", "het_job_offset", "state_reason_prev", "mem_req", "nodelist",
            "nodes_alloc", "node_inx", "`partition`", "priority", "state", "timelimit", "time_submit",
            "time_eligible", "time_start", "time_end", "time_suspended", "tres_alloc", "tres_req", "work_dir")


class JobTableError(RuntimeError):
    pass


@dataclass(frozen=True)
class JobRow:
    """One synthetic allocation. ``tres``: cpu, mem (MB), node, billing, gres/gpu counts.

    ``end`` None makes a running job (state RUNNING, no end time).
    """

    job_id: int
    account: str
    user: str
    start: datetime
    end: Optional[datetime]
    tres: Mapping[str, int] = field(default_factory=lambda: {"cpu": 1, "mem": 100, "node": 1})
    suspended: int = 0  # seconds the job spent suspended (slurmdbd's time_suspended; sacct's Suspended)


@dataclass(frozen=True)
class DbSettings:
    host: str
    port: int
    user: str
    password: str
    database: str
    cluster: str

    @classmethod
    def from_slurm_conf(cls, slurm_conf: Optional[str] = None) -> "DbSettings":
        """Read the cluster from slurm.conf and the storage settings from the slurmdbd.conf beside it."""
        slurm_conf = slurm_conf or os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
        main = _read_conf(slurm_conf)
        dbd = _read_conf(os.path.join(os.path.dirname(slurm_conf), "slurmdbd.conf"))
        return cls(
            host=dbd.get("storagehost", "localhost"), port=int(dbd.get("storageport", 3306)),
            user=dbd.get("storageuser", "slurm"), password=dbd.get("storagepass", ""),
            database=dbd.get("storageloc", "slurm_acct_db"), cluster=main["clustername"].lower(),
        )


def _read_conf(path: str) -> Dict[str, str]:
    values: Dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.split("#", 1)[0].strip().partition("=")
            if sep:
                values[key.strip().lower()] = value.strip()
    return values


class JobTable:
    """The bed's job table, through the ``mariadb`` CLI."""

    def __init__(self, settings: DbSettings, mariadb: str = "mariadb"):
        self.settings = settings
        self.mariadb = mariadb
        self.table = f"{settings.cluster}_job_table"

    @classmethod
    def from_slurm_conf(cls, slurm_conf: Optional[str] = None) -> "JobTable":
        return cls(DbSettings.from_slurm_conf(slurm_conf))

    # -- plumbing --
    def _run(self, sql: str) -> List[List[str]]:
        s = self.settings
        argv = [self.mariadb, "--batch", "--skip-column-names", "--raw", f"--host={s.host}", f"--port={s.port}",
                f"--user={s.user}", s.database]
        done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "MYSQL_PWD": s.password})
        if done.returncode != 0:
            raise JobTableError(f"mariadb exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return [line.split("\t") for line in done.stdout.splitlines()]

    # -- look-ups --
    def tres_ids(self) -> Dict[str, int]:
        """TRES name (cpu, mem, gres/gpu, ...) -> id in ``tres_table``."""
        ids = {}
        for tres_id, kind, name in self._run("SELECT id, type, name FROM tres_table WHERE deleted = 0;"):
            ids[f"{kind}/{name}" if name else kind] = int(tres_id)
        return ids

    def assoc_ids(self, pairs: Iterable[Tuple[str, str]]) -> Dict[Tuple[str, str], int]:
        """(account, user) -> id_assoc of existing user associations."""
        wanted = set(pairs)
        if not wanted:
            return {}
        accounts = ",".join(_quote(a) for a in sorted({a for a, _ in wanted}))
        rows = self._run(f"SELECT acct, user, id_assoc FROM {self.settings.cluster}_assoc_table "
                         f"WHERE deleted = 0 AND user <> '' AND acct IN ({accounts});")
        found = {(acct, user): int(assoc) for acct, user, assoc in rows if (acct, user) in wanted}
        missing = wanted - found.keys()
        if missing:
            raise JobTableError(f"no association for {sorted(missing)[:5]}")
        return found

    def next_job_id(self, floor: int = 10_000_000) -> int:
        """A job id above every id in the table (and above ``floor``, far from slurmctld's ids)."""
        (value,), = self._run(f"SELECT COALESCE(MAX(id_job), 0) FROM {self.table};")
        return max(int(value), floor) + 1

    # -- writes --
    def insert(self, rows: Iterable[JobRow], batch: int = 5000) -> int:
        """Insert the rows (any number, one mariadb process); returns how many."""
        rows = list(rows)
        if not rows:
            return 0
        tres_ids = self.tres_ids()
        assocs = self.assoc_ids({(r.account, r.user) for r in rows})
        users = {u: pwd.getpwnam(u) for u in {r.user for r in rows}}
        statements = "".join(self._statements(rows, tres_ids, assocs, users, batch))
        self._run("SET autocommit=0;\n" + statements + "COMMIT;\n")
        return len(rows)

    def _statements(self, rows: Sequence[JobRow], tres_ids, assocs, users, batch) -> Iterator[str]:
        head = f"INSERT INTO {self.table} ({','.join(_COLUMNS)}) VALUES\n"
        for offset in range(0, len(rows), batch):
            values = [self._values(r, tres_ids, assocs[(r.account, r.user)], users[r.user])
                      for r in rows[offset:offset + batch]]
            yield head + ",\n".join(values) + ";\n"

    @staticmethod
    def _values(row: JobRow, tres_ids: Mapping[str, int], assoc: int, user: pwd.struct_passwd) -> str:
        tres = ",".join(f"{tres_ids[name]}={int(amount)}" for name, amount in sorted(
            row.tres.items(), key=lambda item: tres_ids[item[0]]))
        start = int(row.start.timestamp())
        end = int(row.end.timestamp()) if row.end is not None else 0
        state = STATE_COMPLETE if row.end is not None else STATE_RUNNING
        cpus, mem, nodes = (int(row.tres.get(k, 0)) for k in ("cpu", "mem", "node"))
        return (f"({end or start},{_quote(row.account)},{cpus},'{MARKER}',{assoc},{row.job_id},0,0,"
                f"{user.pw_uid},{user.pw_gid},0,{NO_VAL},0,{mem},'',{nodes},'','',1,{state},0,{start},"
                f"{start},{start},{end},{int(row.suspended)},'{tres}','{tres}','/tmp')")

    def delete_synthetic(self, accounts: Optional[Iterable[str]] = None) -> None:
        """Delete injected rows (of these accounts, or all)."""
        where = f"job_name = '{MARKER}'"
        if accounts is not None:
            names = ",".join(_quote(a) for a in accounts)
            if not names:
                return
            where += f" AND account IN ({names})"
        self._run(f"DELETE FROM {self.table} WHERE {where};")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
