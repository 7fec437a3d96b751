"""The incumbent, waldur-site-agent 1.0.7 with its SLURM plugin, in its own venv (.venv-incumbent).

:func:`build` has ITS code make SLURM accounts on the bed (see build_tree.py); tests and benchmarks then let
`slurm-sync adopt` take them over. Nothing here imitates its naming.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv-incumbent" / "bin" / "python"
SCRIPT = Path(__file__).with_name("build_tree.py")


def require() -> None:
    """Skip a test that needs the incumbent's venv when it is missing, except under CI (CI=true, as .ci/run sets),
    where a test that cannot run is a failure: scripts/setup installs it."""
    import os

    import pytest
    if not available():
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("no .venv-incumbent: run scripts/setup")


def available() -> bool:
    return PYTHON.exists()


def build(backend_settings: Mapping[str, Any], backend_components: Mapping[str, Any],
          resources: Sequence[Mapping[str, Any]], env: Optional[Mapping[str, str]] = None,
          timeout: float = 3600, mode: str = "build") -> Dict[str, Any]:
    """{resource uuid: the backend_id the incumbent gave it}, its accounts made on the bed ``env`` points at; with
    ``mode="names"``, {uuid: [customer, project, allocation account]} as it names them, and nothing made."""
    spec = {"backend_settings": dict(backend_settings), "backend_components": dict(backend_components),
            "resources": list(resources), "mode": mode}
    done = subprocess.run([str(PYTHON), str(SCRIPT)], input=json.dumps(spec), capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if done.returncode:
        raise RuntimeError(f"the incumbent failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
