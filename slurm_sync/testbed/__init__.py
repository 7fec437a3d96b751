"""A real SLURM accounting stack on loopback for tests: `slurm-sync testbed up|down|status|env`.

munged, slurmdbd, slurmctld and one slurmd (2 fake GPUs) run as root from one directory,
started directly (no systemd); MariaDB and Redis are reused when they already answer.
"""
from .bed import down, env, env_exports, is_up, status, up
from .errors import TestbedError
from .layout import Layout, default_dir

__all__ = ["up", "down", "status", "is_up", "env", "env_exports", "Layout", "default_dir",
           "TestbedError"]
