"""A container engine for the compose-stack tests, made from Debian's packages on a machine with none.

There is no Docker engine and no registry here, so this kit:

- installs Debian's podman, runc and debootstrap when missing, and runs ``podman system service`` on a
  socket of its own, which Docker Compose v2 (``docker-compose`` from the venv) and the docker CLI
  inside the product image talk to as to a Docker engine;
- keeps everything of the engine in one scratch directory: its configuration (``CONTAINERS_CONF``,
  ``CONTAINERS_STORAGE_CONF``), image and container storage, the socket; :meth:`Engine.stop` removes
  containers, volumes, networks and images, stops the service by its pid, and deletes the directory;
- makes the base images the compose files name (python:3.11-slim-bookworm, redis:7-alpine,
  docker:28-cli) locally: one ``debootstrap --variant=minbase bookworm`` from the mirror apt already
  uses, imported, and small Containerfiles on top (tests/compose/images);
- runs the containers' healthchecks: podman 4.3 schedules them with systemd timers, and there is no
  systemd here. :class:`HealthRunner` stands in for those timers.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

IMAGES = Path(__file__).resolve().parent / "images"
DEBIAN_BASE = "localhost/slurm-sync-ci/debian:bookworm"
SLURM_HEAD_IMAGE = "localhost/slurm-sync-ci/slurm-head:latest"
# the names docker/Dockerfile and docker/docker-compose.yml use, as the Docker API spells them
BASE_IMAGES = {
    "python.Containerfile": "docker.io/library/python:3.11-slim-bookworm",
    "redis.Containerfile": "docker.io/library/redis:7-alpine",
    "docker-cli.Containerfile": "docker.io/library/docker:28-cli",
    "slurm-head.Containerfile": SLURM_HEAD_IMAGE,
}
PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
# No CAP_SYS_RESOURCE here (the default ulimits are above the hard limit); crun 1.8 refuses the hybrid
# cgroup layout; no systemd: cgroupfs and file events.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{scratch}/tmp"
[network]
network_config_dir = "{scratch}/networks"
"""


class EngineError(RuntimeError):
    pass


def run(argv: List[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 600, check: bool = True,
        input: Optional[str] = None, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input, cwd=cwd)
    if check and done.returncode != 0:
        raise EngineError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout[-3000:]}"
                          f"\n{done.stderr[-3000:]}")
    return done


def install_packages() -> None:
    missing = [package for command, package in PACKAGES.items() if shutil.which(command) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", *missing], env=env)


class Engine:
    """podman as a Docker engine, everything under ``scratch``."""

    SOCKET_GID = 2375  # the socket's group: the product image's user joins it (DEPLOY_DOCKER_GID)

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.socket = scratch / "podman.sock"
        self.service: Optional[subprocess.Popen] = None
        self.host_state: Dict[str, object] = {}
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(scratch / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(scratch / "storage.conf"),
            "DOCKER_HOST": f"unix://{self.socket}",
        }

    # ---------------------------------------------------------------------------------------- engine
    def start(self) -> "Engine":
        install_packages()
        # what netavark changes on the host, to put back at stop
        self.host_state = {"ip_forward": Path(IP_FORWARD).read_text(), "netavark_rules": netavark_rules(),
                           "run_containers": Path("/run/containers").exists()}
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.scratch.chmod(0o755)
        (self.scratch / "containers.conf").write_text(CONTAINERS_CONF.format(scratch=self.scratch))
        (self.scratch / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.scratch / "storage"}"\n'
            f'runroot = "{self.scratch / "run"}"\n')
        log = open(self.scratch / "podman-service.log", "w")
        self.service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.service.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"podman system service did not start: {self.read_log()}")
            time.sleep(0.1)
        os.chown(self.socket, 0, self.SOCKET_GID)
        self.socket.chmod(0o660)
        return self

    def read_log(self) -> str:
        return (self.scratch / "podman-service.log").read_text()[-3000:]

    def podman(self, *args: str, timeout: float = 600, check: bool = True, cwd: Optional[Path] = None,
               ) -> subprocess.CompletedProcess:
        return run(["podman", *args], env=self.env, timeout=timeout, check=check, cwd=cwd)

    def stop(self) -> None:
        """Remove every container, volume, network and image of this engine, stop it, delete its directory."""
        if self.service is not None and self.service.poll() is None:
            for args in (["rm", "--all", "--force", "--time", "0"], ["volume", "prune", "--force"],
                         ["network", "prune", "--force"], ["rmi", "--all", "--force"]):
                self.podman(*args, check=False, timeout=300)
            self.service.terminate()
            try:
                self.service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(timeout=20)
        if (self.scratch / "storage.conf").exists():  # never without it: podman would reset the host's own storage
            self.podman("system", "reset", "--force", check=False, timeout=300)
        self.kill_leftovers()
        for mount in reversed(self.mounts()):
            run(["umount", "--lazy", mount], check=False)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.restore_host()

    def restore_host(self) -> None:
        """Take back what netavark added on the host: its iptables chains and jumps (when the host had none
        before), its run directory, and ip_forward as it was."""
        if not self.host_state:
            return
        if not self.host_state["netavark_rules"]:
            remove_netavark_rules()
        if not self.host_state["run_containers"]:
            shutil.rmtree("/run/containers", ignore_errors=True)
        Path(IP_FORWARD).write_text(str(self.host_state["ip_forward"]))

    def kill_leftovers(self) -> None:
        """conmon of an exec session lingers (--exit-delay 300): every process that names the scratch directory
        in its command line is this engine's."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(self.scratch) in cmdline:
                try:
                    os.kill(int(proc.name), 9)
                except OSError:
                    pass

    def mounts(self) -> List[str]:
        with open("/proc/self/mounts") as table:
            return [line.split()[1] for line in table if line.split()[1].startswith(str(self.scratch))]

    # ---------------------------------------------------------------------------------------- images
    def make_base_images(self) -> None:
        """debootstrap bookworm once, import it, and build the stand-ins for the registry's images on top."""
        if all(self.has_image(tag) for tag in BASE_IMAGES.values()):
            return  # a kept scratch directory (SLURM_SYNC_COMPOSE_KEEP=1) already has them
        rootfs = self.scratch / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()], timeout=900)
        # apt inside the images uses the host's sources (its mirror, its snapshot)
        sources = rootfs / "etc/apt"
        (sources / "sources.list").unlink(missing_ok=True)
        for path in Path("/etc/apt/sources.list.d").glob("*.sources"):
            shutil.copy(path, sources / "sources.list.d" / path.name)
        if Path("/etc/apt/sources.list").exists():
            shutil.copy("/etc/apt/sources.list", sources / "sources.list")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", DEBIAN_BASE],
                                  stdin=tar.stdout, capture_output=True, text=True, env=self.env, timeout=300)
        tar.wait(timeout=60)
        if imported.returncode != 0:
            raise EngineError(f"podman import: {imported.stderr}")
        shutil.rmtree(rootfs)
        context = self.scratch / "base-context"
        shutil.copytree(IMAGES, context)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", context / "host-ca.crt")
        shutil.copy(shutil.which("docker") or "/usr/local/bin/docker", context / "docker")
        for containerfile, tag in BASE_IMAGES.items():
            self.build(context, containerfile, tag)

    def has_image(self, tag: str) -> bool:
        return self.podman("image", "exists", tag, check=False).returncode == 0

    def build(self, context: Path, containerfile: str, tag: str) -> None:
        # --format docker: the OCI format has no HEALTHCHECK and podman would drop the image's
        self.podman("build", "--pull=never", "--format", "docker", "--quiet", "-f", str(context / containerfile),
                    "-t", tag, str(context), timeout=900)

    def healthcheck(self, container: str) -> Optional[dict]:
        """The image's or the container's healthcheck config, or None."""
        data = json.loads(self.podman("inspect", container).stdout)[0]
        return data.get("Config", {}).get("Healthcheck")


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def netavark_rules() -> List[str]:
    """netavark's iptables lines (filter and nat tables) on this host."""
    lines = []
    for table in ("filter", "nat"):
        done = run(["iptables", "-t", table, "-S"], check=False, timeout=30)
        lines += [f"{table} {line}" for line in done.stdout.splitlines() if "NETAVARK" in line]
    return lines


def remove_netavark_rules() -> None:
    """Delete the jumps into netavark's chains, then the chains themselves."""
    for table in ("filter", "nat"):
        listing = run(["iptables", "-t", table, "-S"], check=False, timeout=30).stdout.splitlines()
        chains = [line.split()[1] for line in listing if line.startswith("-N NETAVARK")]
        for line in listing:
            parts = line.split()
            if parts[:1] == ["-A"] and not parts[1].startswith("NETAVARK") and "NETAVARK" in line:
                run(["iptables", "-t", table, "-D", *_unquote(parts[1:])], check=False, timeout=30)
        for chain in chains:
            run(["iptables", "-t", table, "-F", chain], check=False, timeout=30)
        for chain in chains:
            run(["iptables", "-t", table, "-X", chain], check=False, timeout=30)


def _unquote(parts: List[str]) -> List[str]:
    """iptables -S quotes comments ("netavark firewall plugin rules"): rejoin them as one argument."""
    return shlex.split(" ".join(parts))


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


class HealthRunner:
    """Runs ``podman healthcheck run`` for the engine's running containers, like the engine's own timers.

    While a container is not yet healthy its check runs every ``start_interval`` seconds (Docker 25's
    ``start_interval``); once healthy, every interval of its own healthcheck.
    """

    def __init__(self, engine: Engine, start_interval: float = 5.0):
        self.engine = engine
        self.start_interval = start_interval
        self._stop = threading.Event()
        self._next: Dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="healthcheck-runner", daemon=True)

    def start(self) -> "HealthRunner":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _containers(self) -> List[dict]:
        done = self.engine.podman("ps", "--format", "json", check=False, timeout=60)
        try:
            return json.loads(done.stdout or "[]")
        except ValueError:
            return []

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for container in self._containers():
                cid = container["Id"]
                if self._next.get(cid, 0) > now:
                    continue
                done = self.engine.podman("healthcheck", "run", cid, check=False, timeout=120)
                if "no defined healthcheck" in done.stderr or "no healthcheck" in done.stderr:
                    self._next[cid] = float("inf")
                elif done.returncode == 0 and done.stdout.strip() in ("", "healthy"):
                    self._next[cid] = now + self._interval(cid)
                else:
                    self._next[cid] = now + self.start_interval
            self._stop.wait(1.0)

    def _interval(self, cid: str) -> float:
        check = self.engine.healthcheck(cid) or {}
        interval = check.get("Interval") or 30_000_000_000
        return interval / 1e9
