"""`slurm-sync import-config`: a waldur-site-agent config.yaml -> slurm-sync's environment and components."""
import io
import subprocess

import yaml

from slurm_sync.cli.import_config import main
from slurm_sync.domain.components import parse_components
from slurm_sync.settings import load_settings
from testkit import incumbent

TOKEN = "0123456789abcdef0123456789abcdefcafe"
CONFIG = f"""
sentry_dsn: ""
timezone: "Europe/Tallinn"
offerings:
  - name: "HPC"
    waldur_api_url: "https://waldur.example.com/api/"
    waldur_api_token: "{TOKEN}"
    waldur_offering_uuid: "d629d5e45567425da9cdbdc1af67b32c"
    username_management_backend: "base"
    order_processing_backend: "slurm"
    membership_sync_backend: "slurm"
    reporting_backend: "slurm"
    backend_type: "slurm"
    verify_ssl: false
    backend_settings:
      default_account: "root"
      root_account: "waldur"
      customer_prefix: "hpc_"
      project_prefix: "hpc_"
      allocation_prefix: "hpc_"
      cluster_name: "lab"
      qos_default: "normal"
      enable_user_homedir_account_creation: true
      default_homedir_umask: "0700"
    backend_components:
      cpu:
        limit: 10
        measured_unit: "k-Hours"
        unit_factor: 60000
        accounting_type: "usage"
        label: "CPU"
      mem:
        limit: 10
        measured_unit: "gb-Hours"
        unit_factor: 61440
        accounting_type: "usage"
        label: "RAM"
        unit_factor_reporting: 1024
"""


def run(tmp_path, text=CONFIG, **kw):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out = io.StringIO()
    return main(str(path), out=out, **kw), out.getvalue(), path


def sections(output):
    env_part, rest = output.split("# ---- config-components.yaml ----")
    components, missing = rest.split("setting(s) with no equivalent in slurm-sync ----")
    env = dict(line.split("=", 1) for line in env_part.splitlines() if line and not line.startswith("#"))
    return env, yaml.safe_load(components.rsplit("\n# ----", 1)[0]), missing


def test_the_incumbents_file_is_read_by_its_own_parser(tmp_path):
    """The fixture is a file the incumbent itself accepts (its Pydantic configuration), not a guess at one."""
    incumbent.require()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    check = ("from waldur_site_agent.common.utils import load_configuration as l; c = l(%r); "
             "print(c.waldur_offerings[0].backend_settings['customer_prefix'])" % str(path))
    done = subprocess.run([str(incumbent.PYTHON), "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "hpc_", done.stderr[-2000:]


def test_settings_map_to_an_environment_slurm_sync_accepts_with_the_token_masked(tmp_path):
    code, output, _ = run(tmp_path)
    assert code == 0
    env, components, missing = sections(output)
    assert env["WALDUR_API_TOKEN"] == "****cafe" and TOKEN not in output
    assert env["WALDUR_API_URL"] == "https://waldur.example.com/api/"
    assert env["WALDUR_OFFERING_UUID"] == "d629d5e45567425da9cdbdc1af67b32c"
    assert env["REQUESTS_VERIFY_SSL"] == "false" and env["WALDUR_SYNC_DIRECTION"] == "both"
    assert (env["SLURM_CUSTOMER_PREFIX"], env["SLURM_PROJECT_PREFIX"], env["SLURM_ALLOCATION_PREFIX"]) == ("hpc_",) * 3
    assert env["SLURM_DEFAULT_ACCOUNT"] == "waldur"  # where its customers hang: root_account
    assert env["ENABLE_USER_HOMEDIR_ACCOUNT_CREATION"] == "true"
    assert env["SLURM_SYNC_USAGE_TIMEZONE"] == "Europe/Tallinn"
    parsed = {c.type: c for c in parse_components(components)}
    assert (parsed["cpu"].unit_factor, parsed["mem"].unit_factor) == (60000, 61440)
    for name in ("cluster_name", "qos_default", "default_homedir_umask", "default_account",
                 "mem.unit_factor_reporting", "username_management_backend"):
        assert name in missing
    load_settings({**env, "WALDUR_API_TOKEN": TOKEN})  # the printed environment starts slurm-sync


def test_with_secrets_prints_the_token_and_bad_files_say_why(tmp_path):
    _, output, _ = run(tmp_path, with_secrets=True)
    assert f"WALDUR_API_TOKEN={TOKEN}" in output
    code, output, _ = run(tmp_path, CONFIG.replace('"hpc_"', '"HPC Accounts "', 1))
    assert code == 1 and "SLURM_CUSTOMER_PREFIX" in output.split("would refuse these values")[1]
    two = CONFIG + CONFIG.split("offerings:\n")[1].replace('"HPC"', '"Other"')
    code, output, _ = run(tmp_path, two)
    assert code == 2
    code, output, _ = run(tmp_path, two, offering="Other")
    assert code == 0 and "WALDUR_OFFERING_UUID" in output
