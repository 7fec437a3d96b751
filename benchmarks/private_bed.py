"""A throw-away SLURM bed of a benchmark's own: its own directory, cluster, ports and accounting database,
purged (database dropped) at the end. A scale benchmark never has to remove a big tree from the shared bed:
removals on a big tree cost minutes, and one killed mid-way leaves slurmdbd rolling back for hours."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Dict, Iterator

import testkit.testbed as testbed


@contextlib.contextmanager
def private_bed(name: str, port_base: int = 6917) -> Iterator[Dict[str, str]]:
    """Bring up a bed for cluster ``name`` and yield its variables (also put in os.environ meanwhile)."""
    directory = tempfile.mkdtemp(prefix=f"slurm-sync-{name}-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    saved = dict(os.environ)
    try:
        testbed.up(directory, cluster=name, slurm_port_base=port_base, say=lambda m: None)
        variables = testbed.env(directory)
        os.environ.update(variables)
        yield variables
    finally:
        os.environ.clear()
        os.environ.update(saved)
        testbed.down(directory, purge=True, say=lambda m: None)
        shutil.rmtree(directory, ignore_errors=True)
