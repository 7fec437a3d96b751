"""A real SLURM accounting stack on loopback for tests: `python -m testkit testbed up|down|status|env`.

munged, slurmdbd, slurmctld and one slurmd (2 fake GPUs) run as root from one directory,
started directly (no systemd); MariaDB and Redis are reused when they already answer.
"""
from testkit.testbed.bed import down, env, env_exports, is_up, status, up
from testkit.testbed.errors import TestbedError
from testkit.testbed.layout import Layout, default_dir

__all__ = ["up", "down", "status", "is_up", "env", "env_exports", "Layout", "default_dir",
           "TestbedError"]
