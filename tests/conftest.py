pytest_plugins = ["tests.plugins.slurm_bed", "tests.plugins.waldur_emulator", "tests.plugins.celery_worker"]
