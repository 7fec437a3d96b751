"""Executor unit tests: argv building (native and docker), timeouts, errors, counter.

There is no Docker engine here: a stand-in ``docker`` script first on PATH runs
``docker exec -i <container> <argv...>`` locally and logs what it was given.
"""
import os
import stat
import sys

import pytest

from slurm_sync.slurm.runner import (CommandResult, DockerExecutor, NativeExecutor, SlurmCommandError,
                                       make_executor)

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_DOCKER_LOG"
[ "$1" = exec ] && [ "$2" = -i ] || { echo "fake docker: bad usage" >&2; exit 125; }
shift 3
exec "$@"
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def test_native_runs_argument_list_without_a_shell():
    result = NativeExecutor().run(["echo", "a b", "$HOME;", "|x"])
    assert result == CommandResult(0, "a b $HOME; |x\n", "")


def test_native_passes_stdin():
    assert NativeExecutor().run(["cat"], input="line1\nline2\n").stdout == "line1\nline2\n"


def test_counter_counts_processes():
    executor = NativeExecutor()
    executor.run(["true"])
    executor.run(["false"], check=False)
    with pytest.raises(SlurmCommandError):
        executor.run(["false"])
    assert executor.counter == 3


def test_failure_carries_argv_returncode_and_stderr():
    with pytest.raises(SlurmCommandError) as caught:
        NativeExecutor().run([sys.executable, "-c", "import sys; print('out'); sys.exit('boom at the end')"])
    error = caught.value
    assert error.argv[1:] == ["-c", "import sys; print('out'); sys.exit('boom at the end')"]
    assert error.returncode == 1
    assert error.stdout == "out\n"
    assert "boom at the end" in error.stderr
    assert "boom at the end" in str(error)


def test_check_false_returns_failure():
    result = NativeExecutor().run(["sh", "-c", "echo err >&2; exit 3"], check=False)
    assert (result.returncode, result.stderr) == (3, "err\n")


def test_timeout_names_command_and_limit():
    with pytest.raises(SlurmCommandError) as caught:
        NativeExecutor(timeout=30).run(["sleep", "5"], timeout=0.2)
    assert "sleep 5" in str(caught.value) and "0.2" in str(caught.value)
    assert caught.value.returncode is None


def test_default_timeout_applies():
    with pytest.raises(SlurmCommandError, match="timed out after 0.2 s"):
        NativeExecutor(timeout=0.2).run(["sleep", "5"])


def test_missing_binary_is_a_command_error():
    with pytest.raises(SlurmCommandError, match="cannot run"):
        NativeExecutor().run(["/nonexistent/sacctmgr"])


def test_docker_wraps_argv(fake_docker):
    executor = DockerExecutor("slurm-head", timeout=5)
    result = executor.run(["echo", "a b", "c"])
    assert result.stdout == "a b c\n"
    assert fake_docker.read_text().splitlines() == ["exec", "-i", "slurm-head", "echo", "a b", "c"]
    assert executor.counter == 1


def test_docker_feeds_stdin(fake_docker):
    assert DockerExecutor("c1").run(["cat"], input="Cluster - 'x'\n").stdout == "Cluster - 'x'\n"


def test_docker_errors_carry_stderr(fake_docker):
    with pytest.raises(SlurmCommandError) as caught:
        DockerExecutor("c1").run(["sh", "-c", "echo nope >&2; exit 2"])
    assert caught.value.argv[:4] == ["docker", "exec", "-i", "c1"]
    assert "nope" in str(caught.value)


def test_docker_timeout(fake_docker):
    with pytest.raises(SlurmCommandError, match="timed out"):
        DockerExecutor("c1", timeout=0.3).run(["sleep", "5"])


def test_docker_binary_configurable():
    assert DockerExecutor("c", docker_binary="/opt/podman").wrap(["sinfo"]) == ["/opt/podman", "exec", "-i", "c",
                                                                               "sinfo"]


@pytest.mark.parametrize("name", ["", "-it"])
def test_docker_refuses_bad_container_names(name):
    with pytest.raises(ValueError):
        DockerExecutor(name)


def test_make_executor():
    native = make_executor("native", "", 12)
    assert type(native) is NativeExecutor and native.timeout == 12
    docker = make_executor("docker", "slurm", 7)
    assert isinstance(docker, DockerExecutor) and docker.container_name == "slurm" and docker.timeout == 7
    with pytest.raises(ValueError):
        make_executor("k8s", "", 1)
