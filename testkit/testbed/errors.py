"""The one exception the test bed raises for anything the user must act on."""


class TestbedError(RuntimeError):
    """A bed step failed; the message names the daemon and carries its log tail."""

    __test__ = False  # not a pytest test class despite the name
