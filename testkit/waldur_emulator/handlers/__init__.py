"""Endpoint handlers; importing this package registers every route."""
from testkit.waldur_emulator.handlers import offerings, orders, resources, service_providers, slurm_remote, usages  # noqa: F401
