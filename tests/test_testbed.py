"""The real SLURM test bed: accounting answers, sandboxes isolate, jobs run and are accounted."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import testkit.testbed as testbed
from testkit.testbed import cli
from testkit.testbed.daemons import Daemon
from tests.plugins.slurm_bed import (add_slurm_user, ensure_unix_user, remove_sandbox,
                                     sacctmgr, slurm)

JOB_USER = "sbeduser"


def assoc_rows(*where: str) -> list[list[str]]:
    out = sacctmgr("-n", "-P", "show", "assoc", "format=cluster,account,parentname,user",
                   *where).stdout
    return [line.split("|") for line in out.splitlines()]


def test_sacctmgr_answers_with_the_bed_cluster(slurm_bed):
    clusters = sacctmgr("-n", "-P", "show", "cluster", "format=cluster").stdout.split()
    assert slurm_bed.cluster in clusters
    assert os.environ["SLURM_CONF"] == str(slurm_bed.dir / "slurm.conf")


def test_node_has_two_gpus(slurm_bed):
    node = slurm("scontrol", "show", "node").stdout
    assert "gres/gpu=2" in node


def test_account_created_in_sandbox_reads_back(slurm_bed, slurm_sandbox):
    child = f"{slurm_sandbox}_a"
    sacctmgr("-i", "add", "account", child, f"parent={slurm_sandbox}")
    assert [slurm_bed.cluster, child, slurm_sandbox, ""] in assoc_rows(f"account={child}")


def test_job_as_plain_user_is_accounted(slurm_sandbox):
    user = ensure_unix_user(JOB_USER)
    add_slurm_user(user, slurm_sandbox)
    submit = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", f"--account={slurm_sandbox}",
         "--gres=gpu:1", "--output=/dev/null", "--chdir=/tmp", "--wrap", "sleep 1"],
        capture_output=True, text=True, timeout=60, cwd="/tmp")
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    while True:
        rows = slurm("sacct", "-n", "-P", "-X", "-j", job_id,
                     "--format=jobid,account,user,state,alloctres").stdout.splitlines()
        if rows and rows[0].split("|")[3] == "COMPLETED":
            break
        assert time.monotonic() < deadline, f"job {job_id} not completed: {rows}"
        time.sleep(0.5)
    jobid, account, job_user, _, tres = rows[0].split("|")
    assert (jobid, account, job_user) == (job_id, slurm_sandbox, user)
    assert "gres/gpu=1" in tres


def test_job_refused_without_association(slurm_sandbox):
    user = ensure_unix_user(JOB_USER)
    submit = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", f"--account={slurm_sandbox}_none",
         "--output=/dev/null", "--chdir=/tmp", "--wrap", "true"],
        capture_output=True, text=True, timeout=60, cwd="/tmp")
    assert submit.returncode != 0  # AccountingStorageEnforce=associations


def test_remove_sandbox_clears_descendants_and_users(slurm_bed):
    top = "tzz" + os.urandom(3).hex()
    sacctmgr("-i", "add", "account", top, "parent=root")
    sacctmgr("-i", "add", "account", f"{top}_a", f"parent={top}")
    sacctmgr("-i", "add", "account", f"{top}_b", f"parent={top}_a")
    add_slurm_user(ensure_unix_user(JOB_USER), f"{top}_b")
    remove_sandbox(top)
    left = [row for row in assoc_rows() if row[1].startswith(top)]
    assert left == []
    accounts = sacctmgr("-n", "-P", "show", "account", "format=account").stdout.split()
    assert not [a for a in accounts if a.startswith(top)]


def test_second_up_is_a_noop_that_says_so(slurm_bed, capsys):
    messages: list[str] = []
    assert testbed.up(say=messages.append, redis=False) is False
    assert "already up" in messages[-1]
    assert cli.main(["up", "--no-redis"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_env_is_all_a_slurm_client_needs(slurm_bed, capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"export SLURM_CONF={slurm_bed.dir}/slurm.conf\n" in out
    assert f"export SLURM_SYNC_TESTBED_DIR={slurm_bed.dir}\n" in out
    exported = dict(line[len("export "):].split("=", 1) for line in out.splitlines())
    bare = {"PATH": os.environ["PATH"], "SLURM_CONF": exported["SLURM_CONF"]}
    proc = subprocess.run(["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"],
                          env=bare, capture_output=True, text=True, timeout=30)
    assert slurm_bed.cluster in proc.stdout.split()


def test_status_reports_every_daemon_running(slurm_bed, capsys):
    assert cli.main(["status", "--no-redis"]) == 0
    out = capsys.readouterr().out
    for daemon in ("munged", "slurmdbd", "slurmctld", "slurmd"):
        assert f"{daemon}" in out
    state = testbed.status(redis=False)
    assert "redis" not in state  # the tests never ask the machine's Redis
    assert state["node"] in {"idle", "mixed", "allocated"}
    assert all(state[d].startswith("running") for d in ("munged", "slurmdbd", "slurmctld",
                                                         "slurmd"))


# --- no bed needed ------------------------------------------------------------------------

def test_failure_names_daemon_and_shows_log_tail(tmp_path: Path):
    daemon = Daemon("faked", ["sh", "-c", "echo boom-from-faked >&2; exit 3"],
                    tmp_path / "faked.pid", tmp_path / "faked.log", "sh")
    daemon.start()
    with pytest.raises(testbed.TestbedError) as err:
        daemon.wait_until(lambda: False, "ready", timeout=10)
    assert "faked: exited before ready" in str(err.value)
    assert "boom-from-faked" in str(err.value)


def test_zombie_is_not_alive(tmp_path: Path):
    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits
    try:
        (tmp_path / "true.pid").write_text(f"{child.pid}\n")
        daemon = Daemon("true", ["true"], tmp_path / "true.pid", tmp_path / "true.log", "true")
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert daemon.pid() is None
    finally:
        child.wait(timeout=10)


def test_default_dir_order(monkeypatch):
    monkeypatch.setenv("SLURM_SYNC_TESTBED_DIR", "/somewhere/bed")
    assert testbed.default_dir() == Path("/somewhere/bed")
    monkeypatch.delenv("SLURM_SYNC_TESTBED_DIR")
    cache = Path(tempfile.mkdtemp(dir="/var/tmp"))  # pytest's tmp_path sits under a 0700 dir
    try:
        cache.chmod(0o755)
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        assert testbed.default_dir() == cache / "slurm-sync" / "testbed"
        cache.chmod(0o700)  # like /root: munged and job users could not reach it
        assert testbed.default_dir() == Path("/var/tmp/slurm-sync-testbed")
    finally:
        cache.rmdir()


def test_packages_installed_only_when_missing(monkeypatch):
    from testkit.testbed import services
    from testkit.testbed.configs import Spec

    have = {"munged", "mungekey", "slurmdbd", "slurmctld", "sacctmgr", "sinfo", "mariadb", "redis-server"}
    monkeypatch.setattr(services.shutil, "which", lambda b: f"/usr/bin/{b}" if b in have else None)
    monkeypatch.setattr(services, "port_open", lambda host, port: True)
    assert services.missing_packages(Spec()) == ["slurmd"]  # MariaDB answers: not installed
    monkeypatch.setattr(services, "port_open", lambda host, port: False)
    have.discard("redis-server")  # the tests start redis-servers of their own: the binary is always needed
    assert services.missing_packages(Spec()) == ["mariadb-server", "redis-server", "slurmd"]

    calls: list[list[str]] = []
    monkeypatch.setattr(services, "run", lambda argv, **kw: calls.append(argv))
    services.install_packages([], print)
    assert calls == []
    services.install_packages(["slurmd"], lambda message: None)
    assert calls[0][:2] == ["apt-get", "update"]
    assert calls[1][:3] == ["apt-get", "install", "-y"] and calls[1][-1] == "slurmd"


def test_hostile_cluster_name_refused():
    with pytest.raises(testbed.TestbedError):
        testbed.up(cluster="x; DROP DATABASE mysql")
