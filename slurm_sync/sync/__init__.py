"""The two cycles: pull (Waldur orders and teams into SLURM) and push (SLURM usage and state into Waldur)."""
