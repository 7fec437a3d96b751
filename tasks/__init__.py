"""Celery tasks of slurm-sync: `celery -A tasks worker|beat`."""
from tasks.app import app

__all__ = ["app"]
