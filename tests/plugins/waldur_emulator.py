"""pytest plugin: an in-process Waldur emulator (``-p tests.plugins.waldur_emulator``).

Fixtures:
- ``waldur_server`` (session): the running emulator, one port for the whole session.
- ``waldur_profile``: "current" by default; parametrise it to run a test on both
  generations: ``@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])``, or
  for a whole module/conftest override the fixture with
  ``@pytest.fixture(params=["current", "7.0"]) def waldur_profile(request): return request.param``.
- ``waldur``: the emulator, reset (empty state, no faults, real clock, empty request
  log) and switched to ``waldur_profile`` for this test.
- ``waldur_client``: a python-waldur-client ``WaldurClient`` pointed at it.
- ``scenario``: an offering with the users alice, bob and carol on it (tests/pull_scenario.py).
- ``waldur_no_sleep``: makes python-waldur-client's 409 retries not sleep.
"""
import pytest

from testkit.waldur_emulator import WaldurEmulator

WALDUR_TEST_TOKEN = "secret-token"


@pytest.fixture(scope="session")
def waldur_server():
    emu = WaldurEmulator(token=WALDUR_TEST_TOKEN).start()
    yield emu
    emu.stop()


@pytest.fixture
def waldur_profile():
    return "current"


@pytest.fixture
def waldur(waldur_server, waldur_profile):
    waldur_server.reset()
    waldur_server.set_profile(waldur_profile)
    yield waldur_server
    waldur_server.reset()


@pytest.fixture
def scenario(waldur):
    from tests.pull_scenario import Scenario

    return Scenario(waldur)


@pytest.fixture
def waldur_client(waldur):
    from waldur_client import WaldurClient

    return WaldurClient(waldur.url, waldur.token)


@pytest.fixture
def waldur_no_sleep(monkeypatch):
    """Record python-waldur-client's sleeps instead of sleeping; yields the list of delays."""
    import time

    import waldur_client

    delays = []

    class _Time:  # only the client's module sees this; time.sleep stays real elsewhere
        sleep = staticmethod(delays.append)

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(waldur_client, "time", _Time())
    return delays
