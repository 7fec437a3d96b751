"""slurm-sync: keep one Waldur offering and one SLURM cluster in sync."""

__version__ = "0.1.0"
