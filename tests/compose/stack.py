"""docker/docker-compose.yml brought up for real on the kit's engine, as docs/deploying.md's commands run it."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from tests.test_deploy_files import free_port

from tests.compose.engine import Engine, EngineError, run

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yml"
NATIVE_FILE = REPO / "docker" / "docker-compose.native.yml"
SERVICES = ("redis", "worker-headnode", "worker", "beat", "flower")


def compose_binary() -> List[str]:
    """Docker Compose v2: the venv's `docker-compose` (scripts/setup installs it), else `docker compose`."""
    venv = Path(sys.executable).parent / "docker-compose"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("docker-compose")
    return [found] if found else ["docker", "compose"]


class Stack:
    """One compose project: ``compose(...)`` runs a compose command as docs/deploying.md writes it."""

    def __init__(self, engine: Engine, env_file: Path, files: List[Path], values: Dict[str, str]):
        self.engine, self.env_file, self.files, self.values = engine, env_file, files, values

    @classmethod
    def deploy(cls, engine: Engine, files: List[Path], *, project: str, waldur_url: str, token: str,
               offering: str, prefix: str, **extra: str) -> "Stack":
        """Write the deployment's env file for one test stack (docs/deploying.md's variables, filled in for this
        run; ``extra`` adds or overrides) and return the stack it describes; nothing is started yet."""
        env_file = engine.scratch / f"{project}.env"
        values = {
            "DEPLOY_ENV_FILE": str(env_file),
            "COMPOSE_PROJECT_NAME": project,
            "DEPLOY_FLOWER_BIND": "127.0.0.1",
            "DEPLOY_FLOWER_PORT": str(free_port()),
            "DEPLOY_DOCKER_GID": str(engine.SOCKET_GID),
            "DEPLOY_DOCKER_SOCKET": str(engine.socket),
            "DEPLOY_IMAGE": "slurm-sync:latest",
            "WALDUR_API_URL": waldur_url,
            "WALDUR_API_TOKEN": token,
            "WALDUR_OFFERING_UUID": offering,
            "WALDUR_SYNC_DIRECTION": "both",
            "REQUESTS_VERIFY_SSL": "false",
            "SLURM_CUSTOMER_PREFIX": f"{prefix}c_",
            "SLURM_PROJECT_PREFIX": f"{prefix}p_",
            "SLURM_ALLOCATION_PREFIX": f"{prefix}a_",
            "SLURM_DEFAULT_ACCOUNT": f"{prefix}root",
            "REDIS_PASSWORD": secrets.token_hex(16),
            "FLOWER_BASIC_AUTH": f"ci:{secrets.token_hex(8)}",
            # beat's first cycles come one interval after it starts: short ones, so health turns green soon
            "SLURM_SYNC_POLL_INTERVAL": "5",
            "SLURM_SYNC_USAGE_INTERVAL": "10",
            **extra,
        }
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        env_file.chmod(0o600)
        return cls(engine, env_file, files, values)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """`docker compose <args>` after docs/deploying.md's `export COMPOSE_FILE=... COMPOSE_ENV_FILES=...`."""
        env = {k: v for k, v in self.engine.env.items() if not k.startswith("COMPOSE_")}
        env.update(COMPOSE_FILE=":".join(str(f.relative_to(REPO)) for f in self.files),
                   COMPOSE_ENV_FILES=str(self.env_file))
        return run([*compose_binary(), *args], env=env, timeout=timeout, check=check, cwd=REPO)

    def up(self, wait_timeout: int = 300) -> None:
        """`up -d --wait`: every service running and healthy, or an error with the logs."""
        done = self.compose("up", "--detach", "--wait", "--wait-timeout", str(wait_timeout), "--no-build",
                            timeout=wait_timeout + 120, check=False)
        if done.returncode != 0:
            raise EngineError(f"compose up failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                              f"{done.stderr[-3000:]}\n{self.logs()}")

    def ps(self) -> List[dict]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def logs(self, service: str = "") -> str:
        done = self.compose("logs", "--no-color", "--tail", "60", *([service] if service else []), check=False)
        return done.stdout[-12000:]

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)

    def celery_call(self, task: str, *args) -> str:
        """`compose exec worker-headnode celery -A tasks call <task> [--args=...]` (the resync in docs/deploying.md)."""
        extra = [f"--args={json.dumps(list(args))}"] if args else []
        return self.compose("exec", "-T", "worker-headnode", "celery", "-A", "tasks", "call", task, *extra,
                            timeout=120).stdout.strip()


def container_hosts_address() -> str:
    """The name containers reach the host by (podman writes it into every container's /etc/hosts)."""
    return os.environ.get("SLURM_SYNC_COMPOSE_HOST_NAME", "host.containers.internal")
