"""up / down / status / env of the bed: the order daemons start in and what "up" means."""
from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from testkit.testbed import configs, services
from testkit.testbed.configs import Spec
from testkit.testbed.daemons import Daemon, run
from testkit.testbed.errors import TestbedError
from testkit.testbed.layout import Layout

Say = Callable[[str], None]
READY_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def slurm_env(layout: Layout) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(layout.slurm_conf)}


def slurm_daemons(layout: Layout) -> list[Daemon]:
    """slurmdbd, slurmctld, slurmd in start order; all find their config via SLURM_CONF."""
    def daemon(name: str) -> Daemon:
        return Daemon(name, [name, "-D"], layout.pid_file(name), layout.log_file(name), name)
    return [daemon("slurmdbd"), daemon("slurmctld"), daemon("slurmd")]


def _slurm(layout: Layout, *argv: str, check: bool = False, timeout: float = 30):
    return run(list(argv), env=slurm_env(layout), check=check, timeout=timeout)


def node_state(layout: Layout, spec: Spec) -> str:
    """The node's state as sinfo prints it (a trailing '*' means not responding), or ''."""
    proc = _slurm(layout, "sinfo", "-h", "-N", "-n", spec.host, "-o", "%T", timeout=15)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _cluster_registered(layout: Layout, spec: Spec) -> bool | None:
    """True/False once slurmdbd answers `sacctmgr show cluster`; None while it does not."""
    proc = _slurm(layout, "sacctmgr", "-n", "-P", "show", "cluster", "format=cluster",
                  timeout=15)
    if proc.returncode != 0:
        return None
    return spec.cluster in proc.stdout.split()


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """Serialise up/down across processes (e.g. pytest-xdist workers sharing one bed)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _server_state(daemon: Daemon, mode: str, answers: bool) -> str:
    if mode == "own":
        pid = daemon.pid()
        return f"running (pid {pid})" if pid else "stopped"
    return "reused (answering)" if answers else "not answering"


def status(directory: str | os.PathLike | None = None, redis: bool = True) -> dict[str, str]:
    """Component -> human-readable state. Keys: dir, cluster, munged, mariadb, slurmdbd,
    slurmctld, slurmd, node, and redis unless ``redis`` is False (the tests use a Redis of their own and
    never ask the machine's)."""
    layout = Layout.at(directory)
    spec = Spec.load(layout) or Spec()
    result = {"dir": str(layout.root), "cluster": spec.cluster}
    munge = services.munge_daemon(layout)
    for daemon in [munge, *slurm_daemons(layout)]:
        pid = daemon.pid()
        result[daemon.name] = f"running (pid {pid})" if pid else "stopped"
    result["mariadb"] = _server_state(services.mariadb_daemon(layout, spec), spec.mariadb,
                                      services.mariadb_answers(spec))
    if redis:
        result["redis"] = _server_state(services.redis_daemon(layout, spec), spec.redis,
                                        services.redis_answers(spec))
    ctld_up = result["slurmctld"] != "stopped"
    result["node"] = (node_state(layout, spec) or "unknown") if ctld_up else "unknown"
    return result


def is_up(status_: dict[str, str]) -> bool:
    return (all(status_[k].startswith(("running", "reused")) for k in
                ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd", "redis") if k in status_)
            and status_["node"] in READY_NODE_STATES)


def up(directory: str | os.PathLike | None = None, cluster: str | None = None,
       db_port: int | None = None, redis_port: int | None = None,
       slurm_port_base: int | None = None, say: Say = print, redis: bool = True) -> bool:
    """Bring the bed up; start only what is not running. False (and says so) if already up.

    cluster and the ports are remembered in bed.json for later calls. ``redis``: also a Redis for the demo's
    worker (the machine's on its port, else one of the bed's); the tests start their own and leave it out.
    """
    if cluster is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", cluster):
        # it also names the MariaDB database; SLURM folds names to lower case anyway
        raise TestbedError(f"cluster name {cluster!r}: use [a-z][a-z0-9_]*, at most 32 chars")
    layout = Layout.at(directory)
    layout.check_usable()
    with _locked(layout):
        spec = Spec.load(layout)
        if spec and cluster and spec.cluster != cluster:
            if any(d.pid() for d in slurm_daemons(layout)):
                raise TestbedError(f"bed at {layout.root} runs cluster {spec.cluster!r}; "
                                   f"run `down` before switching to {cluster!r}")
            spec.cluster = cluster
        spec = spec or Spec(cluster=cluster or Spec.cluster)
        spec.db_port = db_port or spec.db_port
        spec.redis_port = redis_port or spec.redis_port
        spec.slurm_port_base = slurm_port_base or spec.slurm_port_base
        if is_up(status(layout.root, redis=redis)):
            say(f"testbed already up at {layout.root} (cluster {spec.cluster}): nothing to do")
            return False
        started = time.monotonic()
        _bring_up(layout, spec, say, redis)
        say(f"testbed up at {layout.root} (cluster {spec.cluster}) "
            f"in {time.monotonic() - started:.1f}s")
        return True


def _reuse_or_start(name: str, own: Daemon, answers: Callable[[], bool],
                    start: Callable[[], Daemon], say: Say) -> str:
    """'own' if we run it (already or now), 'reused' when another server answers."""
    if own.pid():
        return "own"
    if answers():
        say(f"{name}: reusing the server that answers")
        return "reused"
    say(f"{name}: starting")
    start()
    return "own"


def _start(daemon: Daemon, ready: Callable[[], bool], what: str, say: Say,
           env: dict[str, str] | None = None, timeout: float = 60, port: int = 0) -> None:
    """Start unless running, then wait for `ready`. A taken `port` is refused up front:
    the daemon itself would say so only in its log."""
    if daemon.pid() is None:
        if port and services.port_open("127.0.0.1", port):
            raise TestbedError(f"{daemon.name}: port {port} is taken by another process "
                               "(another bed or a site SLURM?); stop it first")
        say(f"{daemon.name}: starting")
        daemon.start(env)
    daemon.wait_until(ready, what, timeout)


def _bring_up(layout: Layout, spec: Spec, say: Say, redis: bool = True) -> None:
    services.install_packages(services.missing_packages(spec), say)
    layout.create()
    services.ensure_munge_key(layout)
    configs.write_all(layout, spec)
    spec.save(layout)
    _start(services.munge_daemon(layout), lambda: services.munge_answers(layout),
           "answering on its socket", say)

    spec.mariadb = _reuse_or_start(
        "mariadb", services.mariadb_daemon(layout, spec), lambda: services.mariadb_answers(spec),
        lambda: services.start_mariadb(layout, spec), say)
    spec.save(layout)
    services.ensure_slurm_database(spec)

    env = slurm_env(layout)
    slurmdbd, slurmctld, slurmd = slurm_daemons(layout)
    _start(slurmdbd, lambda: _cluster_registered(layout, spec) is not None,
           "answering `sacctmgr show cluster`", say, env, port=spec.slurm_ports["slurmdbd"])
    if not _cluster_registered(layout, spec):
        say(f"sacctmgr: adding cluster {spec.cluster}")
        _slurm(layout, "sacctmgr", "-i", "add", "cluster", spec.cluster, check=True)
    _forget_other_cluster_state(layout, spec)
    _start(slurmctld, lambda: _slurm(layout, "scontrol", "ping", timeout=10).returncode == 0,
           "answering `scontrol ping`", say, env, port=spec.slurm_ports["slurmctld"])
    _start(slurmd, lambda: node_state(layout, spec) in READY_NODE_STATES,
           f"showing node {spec.host} idle in sinfo", say, env, timeout=90,
           port=spec.slurm_ports["slurmd"])
    # slurmdbd can crash only once slurmctld registers (bad rows in its database)
    slurmdbd.wait_until(lambda: _cluster_registered(layout, spec) is not None,
                        "answering after slurmctld registered", timeout=15)

    if redis:
        spec.redis = _reuse_or_start(
            "redis", services.redis_daemon(layout, spec), lambda: services.redis_answers(spec),
            lambda: services.start_redis(layout, spec), say)
    spec.save(layout)


def _forget_other_cluster_state(layout: Layout, spec: Spec) -> None:
    """slurmctld refuses a StateSaveLocation written under another ClusterName."""
    name_file = layout.state_dir / "clustername"
    if name_file.exists() and name_file.read_text().strip() != spec.cluster:
        shutil.rmtree(layout.state_dir)
        layout.state_dir.mkdir(mode=0o755)


def down(directory: str | os.PathLike | None = None, purge: bool = False,
         say: Say = print) -> list[str]:
    """Stop the daemons this bed started (never a reused MariaDB/Redis); return their names.

    purge also drops the bed's accounting database and deletes the bed directory.
    """
    layout = Layout.at(directory)
    if not layout.root.exists():
        say(f"no testbed at {layout.root}")
        return []
    with _locked(layout):
        spec = Spec.load(layout) or Spec()
        daemons = list(reversed(slurm_daemons(layout)))
        if spec.redis == "own":
            daemons.append(services.redis_daemon(layout, spec))
        if spec.mariadb == "own":
            daemons.append(services.mariadb_daemon(layout, spec))
        daemons.append(services.munge_daemon(layout))
        stopped = [d.name for d in daemons if d.stop()]
        say(f"stopped {', '.join(stopped)}" if stopped else "nothing of this bed was running")
        if purge:
            if spec.mariadb == "reused" and services.mariadb_answers(spec):
                services.drop_slurm_database(spec)
            for entry in layout.root.iterdir():
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() \
                        else entry.unlink()
            say(f"purged {layout.root}")
        return stopped


def env(directory: str | os.PathLike | None = None) -> dict[str, str]:
    """The variables a shell or a test needs to use the bed (SLURM_CONF above all)."""
    layout = Layout.at(directory)
    spec = Spec.load(layout) or Spec()
    return {
        "SLURM_CONF": str(layout.slurm_conf),
        "SLURM_SYNC_TESTBED_DIR": str(layout.root),
        "SLURM_SYNC_TESTBED_CLUSTER": spec.cluster,
        "SLURM_SYNC_TESTBED_DB_HOST": spec.db_host,
        "SLURM_SYNC_TESTBED_DB_PORT": str(spec.db_port),
        "SLURM_SYNC_TESTBED_DB_USER": spec.db_user,
        "SLURM_SYNC_TESTBED_DB_PASSWORD": spec.db_password,
        "SLURM_SYNC_TESTBED_DB_NAME": spec.db_name,
        "SLURM_SYNC_TESTBED_REDIS_URL": f"redis://{spec.redis_host}:{spec.redis_port}/0",
    }


def env_exports(variables: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())
