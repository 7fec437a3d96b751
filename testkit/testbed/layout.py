"""Where the test bed keeps its configs, state, logs and pid files: one directory."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from testkit.testbed.errors import TestbedError

FALLBACK_DIR = Path("/var/tmp/slurm-sync-testbed")


def _searchable_by_all(path: Path) -> Path | None:
    """Return the first existing ancestor of `path` that others cannot enter, or None.

    munged refuses a socket whose directories are not world-executable, and jobs
    run as plain users must read slurm.conf, so the bed dir must be reachable by all.
    """
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def default_dir() -> Path:
    """$SLURM_SYNC_TESTBED_DIR, else the user's cache dir, else /var/tmp.

    The cache dir is skipped when others cannot enter it (root's home is 0700).
    """
    explicit = os.environ.get("SLURM_SYNC_TESTBED_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidate = Path(cache) / "slurm-sync" / "testbed"
    if cache.startswith("/") and _searchable_by_all(candidate) is None:
        return candidate
    return FALLBACK_DIR


@dataclass(frozen=True)
class Layout:
    """All paths of one bed, derived from its root directory."""

    root: Path

    @classmethod
    def at(cls, directory: str | os.PathLike | None = None) -> "Layout":
        return cls(Path(directory).resolve() if directory else default_dir().resolve())

    def check_usable(self) -> None:
        blocked = _searchable_by_all(self.root)
        if blocked is not None:
            raise TestbedError(
                f"{blocked} is not searchable by other users; munged and job users need the "
                f"bed dir reachable: choose another --dir (e.g. {FALLBACK_DIR})"
            )

    def create(self) -> None:
        self.check_usable()
        for d in (self.root, self.munge_dir, self.log_dir, self.run_dir, self.state_dir,
                  self.spool_dir, self.gpu_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)

    # files and directories
    state_file = property(lambda s: s.root / "bed.json")
    slurm_conf = property(lambda s: s.root / "slurm.conf")
    slurmdbd_conf = property(lambda s: s.root / "slurmdbd.conf")
    gres_conf = property(lambda s: s.root / "gres.conf")
    cgroup_conf = property(lambda s: s.root / "cgroup.conf")
    munge_dir = property(lambda s: s.root / "munge")
    munge_key = property(lambda s: s.root / "munge" / "munge.key")
    munge_socket = property(lambda s: s.root / "munge" / "munge.socket.2")
    log_dir = property(lambda s: s.root / "log")
    run_dir = property(lambda s: s.root / "run")
    state_dir = property(lambda s: s.root / "slurmctld-state")
    spool_dir = property(lambda s: s.root / "slurmd-spool")
    gpu_dir = property(lambda s: s.root / "dev")
    mariadb_dir = property(lambda s: s.root / "mariadb")
    redis_dir = property(lambda s: s.root / "redis")

    def pid_file(self, name: str) -> Path:
        """The pid the bed recorded when it started `name` (see daemons.Daemon)."""
        return self.run_dir / f"{name}.pid"

    def own_pid_file(self, name: str) -> Path:
        """Where `name` writes its pid itself: apart from ours, which it would call corrupt."""
        return self.run_dir / f"{name}.self.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"
