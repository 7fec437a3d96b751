"""Print the part of requirements.lock a deployment installs: setup.cfg's install_requires and the extras named on
the command line, everything they pull in (the lock's `# via` lines), and the build tools (setuptools, wheel) that
install the package itself offline. Hashes stay, so `pip install --require-hashes -r` checks every file; pip also
refuses the result if a dependency were missing from it. Standard library only: it runs before anything is installed.

    python3 scripts/lock_select.py ops > /tmp/deploy.req
"""
from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "slurm-sync (setup.cfg)"
BUILD_TOOLS = {"setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_requirements(extras: list) -> set:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += config["options.extras_require"][extra].splitlines()
    names = {re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.strip()).group(0) for line in lines
             if line.strip() and not line.strip().startswith("#")}
    return {canonical(name) for name in names}


def entries(lock: str) -> dict:
    """name -> (the entry's text, the names it is pulled in by)"""
    found = {}
    for block in re.split(r"\n(?=[a-z0-9])", lock.split("\n", 2)[2] if lock.startswith("#") else lock):
        name = canonical(re.match(r"[a-z0-9][a-z0-9._-]*", block).group(0))
        tail = block.split("# via", 1)[1] if "# via" in block else ""
        via = {line.strip().lstrip("#").strip() for line in tail.splitlines()} - {""}
        found[name] = (block.rstrip("\n"), {v if v == PROJECT else canonical(v) for v in via})
    return found


def select(lock: str, extras: list) -> str:
    wanted, pinned = direct_requirements(extras) | BUILD_TOOLS, entries(lock)
    missing = sorted(wanted - pinned.keys())
    if missing:
        raise SystemExit(f"requirements.lock has no entry for {', '.join(missing)}: run bash scripts/lock")
    chosen, grew = set(wanted), True
    while grew:
        more = {name for name, (_, via) in pinned.items() if name not in chosen and via & chosen}
        chosen |= more
        grew = bool(more)
    return "\n".join(pinned[name][0] for name in sorted(chosen)) + "\n"


if __name__ == "__main__":
    sys.stdout.write(select((ROOT / "requirements.lock").read_text(), sys.argv[1:]))
