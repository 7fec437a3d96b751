"""The domain: names, components and units, the desired and the real SLURM tree, the plan between them,
billing months and usage. Pure: no Celery, no HTTP, no processes, no metrics (tests/test_layout.py)."""
