"""The `slurm-sync` command: check-config, plan, load-components, health, diagnostics, metrics."""
