pytest_plugins = ["tests.plugins.slurm_bed", "tests.plugins.waldur_emulator", "tests.plugins.celery_worker"]


def pytest_collection_modifyitems(items):
    """A test that uses the real SLURM bed (the slurm_bed fixture, directly or through another fixture) is
    marked `bed`, so `-m "not bed"` is a run without the bed whatever marks its file carries."""
    import pytest

    for item in items:
        if "slurm_bed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bed)
