"""Build slurm-sync's wheel from a source tree, as `pip install .` would (tests of what the wheel holds)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel built from ``source`` into ``out``. Offline with the venv's setuptools when it can build wheels
    (scripts/setup installs `wheel`), else as the Dockerfile's pip does: build requirements fetched into an
    isolated environment."""
    can_build = subprocess.run([sys.executable, "-c", "import setuptools, wheel"], capture_output=True).returncode == 0
    isolation = ["--no-build-isolation"] if can_build else []
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("slurm_sync-*.whl")
    return wheel
