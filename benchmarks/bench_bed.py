"""What the benchmarks share: removing the tree a benchmark made on the bed, with the tests' own helper."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def remove_tree(parent: str, timeout: float = 600) -> None:
    """Cancel the jobs under ``parent`` and remove it with every account and association beneath it."""
    subprocess.run([sys.executable, "-c", "from tests.plugins.slurm_bed import remove_sandbox; "
                    f"remove_sandbox({parent!r})"], cwd=REPO, timeout=timeout)
