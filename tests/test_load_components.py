"""load-components against the emulator: create missing, update differing, a second run changes nothing."""
import subprocess
import sys

import pytest

from slurm_sync.domain.components import load_components
from slurm_sync.waldur.components import sync_components
from slurm_sync.waldur.api import WaldurAPI


@pytest.mark.parametrize("waldur_profile", ["current", "7.0"])
def test_create_then_nothing_then_update(waldur):
    offering = waldur.add_offering("SLURM", components=[
        {"type": "cpu", "name": "Old CPU", "measured_unit": "k-Hours", "billing_type": "usage"}])
    api = WaldurAPI(waldur.url, waldur.token, offering["uuid"])
    assert sync_components(api, load_components("config-components.yaml")) == [
        ("cpu", "updated"), ("mem", "created"), ("gpu", "created")]
    types = {c["type"]: c for c in waldur.get_offering(offering["uuid"])["components"]}
    assert types["cpu"]["name"] == "CPU" and types["gpu"]["measured_unit"] == "hours"
    writes = waldur.count("POST")
    assert [a for _, a in sync_components(api, load_components("config-components.yaml"))] == ["unchanged"] * 3
    assert waldur.count("POST") == writes


def test_seed_form_of_the_command(waldur, tmp_path):
    offering = waldur.add_offering("SLURM", components=[])
    env = {"WALDUR_API_URL": waldur.url, "WALDUR_API_TOKEN": waldur.token, "WALDUR_OFFERING_UUID": offering["uuid"],
           "SLURM_TRES_CONFIG_PATH": "config-components.yaml", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "slurm_sync", "--load-components"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cpu: created" in done.stdout
    assert {c["type"] for c in waldur.get_offering(offering["uuid"])["components"]} == {"cpu", "mem", "gpu"}
