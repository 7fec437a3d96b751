"""The `slurm-sync` command: check-config, plan, load-components, health, diagnostics, metrics."""
from slurm_sync.cli.commands import main

__all__ = ["main"]
