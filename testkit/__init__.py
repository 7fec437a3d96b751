"""The test kit: the Waldur emulator, the real SLURM test bed, Celery process helpers and the demo.

Not part of the product: `pip install .` does not install it (tests/test_layout.py builds the wheel and
lists it). The tests, benchmarks and scripts import it from the repository's top level::

    python -m testkit testbed up|down|status|env
    python -m testkit demo [--keep-running] [--profile current|7.0]
    python -m testkit.waldur_emulator --port 8080
"""
