"""Services under SLURM: Debian packages, munge's key, MariaDB and Redis (reused when already up)."""
from __future__ import annotations

import os
import shutil
import socket

from testkit.testbed.configs import Spec
from testkit.testbed.daemons import Daemon, run
from testkit.testbed.errors import TestbedError
from testkit.testbed.layout import Layout

# binary -> Debian package providing it
SLURM_PACKAGES = {
    "munged": "munge", "mungekey": "munge", "slurmdbd": "slurmdbd", "slurmctld": "slurmctld",
    "slurmd": "slurmd", "sacctmgr": "slurm-client", "sinfo": "slurm-client",
    "mariadb": "mariadb-client",
}
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing_packages(spec: Spec) -> list[str]:
    """Debian packages to install: SLURM's always, MariaDB only where none answers, and redis-server whenever
    its binary is missing (the tests and benchmarks start Redis servers of their own)."""
    need = {pkg for binary, pkg in SLURM_PACKAGES.items() if not shutil.which(binary)}
    if not port_open(spec.db_host, spec.db_port) and not shutil.which("mariadbd"):
        need.add("mariadb-server")
    if not shutil.which("redis-server"):
        need.add("redis-server")
    return sorted(need)


def install_packages(packages: list[str], say) -> None:
    if not packages:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"missing packages {' '.join(packages)}; install them as root")
    say(f"installing {' '.join(packages)} (apt-get)")
    run(["apt-get", "update", "-q"], timeout=300, env=APT_ENV)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        timeout=900, env=APT_ENV)


# --- munge -------------------------------------------------------------------------------

def munge_daemon(layout: Layout) -> Daemon:
    """munged as root with its own key and socket in the bed dir: no clash with a site munge."""
    return Daemon("munged", [
        "munged", "--foreground", f"--socket={layout.munge_socket}",
        f"--key-file={layout.munge_key}", f"--pid-file={layout.own_pid_file('munged')}",
        f"--log-file={layout.log_file('munged')}", f"--seed-file={layout.munge_dir}/munged.seed",
    ], layout.pid_file("munged"), layout.log_file("munged"), "munged")


def ensure_munge_key(layout: Layout) -> None:
    if not layout.munge_key.exists():
        run(["mungekey", "--create", f"--keyfile={layout.munge_key}"])
    layout.munge_key.chmod(0o400)


def munge_answers(layout: Layout) -> bool:
    return run(["munge", "-n", "-S", str(layout.munge_socket)], timeout=10,
               check=False).returncode == 0


# --- MariaDB -----------------------------------------------------------------------------

def _mariadb(spec: Spec, sql: str, timeout: float = 30, check: bool = True):
    return run(["mariadb", "--protocol=tcp", f"-h{spec.db_host}", f"-P{spec.db_port}",
                "-uroot", "-e", sql], timeout=timeout, check=check)


def mariadb_answers(spec: Spec) -> bool:
    return (shutil.which("mariadb") is not None
            and _mariadb(spec, "select 1", timeout=10, check=False).returncode == 0)


def mariadb_daemon(layout: Layout, spec: Spec) -> Daemon:
    return Daemon("mariadbd", [
        "mariadbd", "--no-defaults", "--user=root", f"--datadir={layout.mariadb_dir}",
        f"--socket={layout.run_dir}/mariadb.sock", f"--port={spec.db_port}",
        f"--bind-address={spec.db_host}", f"--pid-file={layout.own_pid_file('mariadbd')}",
        f"--log-error={layout.log_file('mariadbd')}", "--skip-log-bin",
        "--innodb-buffer-pool-size=64M",
    ], layout.pid_file("mariadbd"), layout.log_file("mariadbd"), "mariadbd")


def start_mariadb(layout: Layout, spec: Spec) -> Daemon:
    """A private MariaDB with its data in the bed dir (initialised on first use)."""
    daemon = mariadb_daemon(layout, spec)
    if not (layout.mariadb_dir / "mysql").is_dir():
        run(["mariadb-install-db", "--no-defaults", "--user=root", "--skip-test-db",
             "--auth-root-authentication-method=normal", f"--datadir={layout.mariadb_dir}"],
            timeout=300)
    daemon.start()
    daemon.wait_until(lambda: mariadb_answers(spec), "answering on "
                      f"{spec.db_host}:{spec.db_port}", timeout=120)
    return daemon


def ensure_slurm_database(spec: Spec) -> None:
    """slurmdbd's own database and user (password reset each time: bed.json holds it)."""
    users = [f"'{spec.db_user}'@'{host}'" for host in ("localhost", "127.0.0.1")]
    sql = [f"CREATE DATABASE IF NOT EXISTS `{spec.db_name}`"]
    for user in users:
        sql += [f"CREATE USER IF NOT EXISTS {user}",
                f"ALTER USER {user} IDENTIFIED BY '{spec.db_password}'",
                f"GRANT ALL ON `{spec.db_name}`.* TO {user}"]
    _mariadb(spec, ";\n".join(sql) + ";")


# --- Redis -------------------------------------------------------------------------------

def redis_answers(spec: Spec) -> bool:
    """PING over a raw socket: no redis-cli needed to decide whether to install Redis."""
    try:
        with socket.create_connection((spec.redis_host, spec.redis_port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_daemon(layout: Layout, spec: Spec) -> Daemon:
    """Foreground instead of --daemonize yes, so the recorded pid is redis-server itself."""
    return Daemon("redis-server", [
        "redis-server", "--daemonize", "no", "--bind", spec.redis_host,
        "--port", str(spec.redis_port), "--save", "", "--appendonly", "no",
        "--dir", str(layout.redis_dir), "--logfile", str(layout.log_file("redis-server")),
    ], layout.pid_file("redis-server"), layout.log_file("redis-server"), "redis-server")


def start_redis(layout: Layout, spec: Spec) -> Daemon:
    layout.redis_dir.mkdir(exist_ok=True)
    daemon = redis_daemon(layout, spec)
    daemon.start()
    daemon.wait_until(lambda: redis_answers(spec), "answering PING", timeout=30)
    return daemon


def drop_slurm_database(spec: Spec) -> None:
    """Undo :func:`ensure_slurm_database`: the database and its user."""
    users = [f"'{spec.db_user}'@'{host}'" for host in ("localhost", "127.0.0.1")]
    _mariadb(spec, f"DROP DATABASE IF EXISTS `{spec.db_name}`;" + "".join(f"DROP USER IF EXISTS {u};" for u in users))
