"""A stateful emulator of the Waldur marketplace API subset slurm-sync uses.

Two generations: ``current`` (the contract) and ``7.0`` (a real Waldur 7.0.7's
answers), see ``profiles``. Start it in-process::

    emu = WaldurEmulator(token="secret-token", profile="current").start()
    emu.url  # "http://127.0.0.1:<port>/api/"

or standalone: ``python -m testkit.waldur_emulator --port 8080``.
"""
from testkit.waldur_emulator.emulator import WaldurEmulator
from testkit.waldur_emulator.errors import ApiError
from testkit.waldur_emulator.faults import Faults
from testkit.waldur_emulator.profiles import CURRENT, V7_0, Profile, get_profile
from testkit.waldur_emulator.requestlog import RequestRecord

__all__ = ["WaldurEmulator", "ApiError", "Faults", "Profile", "RequestRecord",
           "CURRENT", "V7_0", "get_profile"]
