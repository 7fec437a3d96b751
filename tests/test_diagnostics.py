"""`slurm-sync diagnostics` on the real bed with the Waldur emulator: all OK, and each breakage named with its fix."""
import os
import subprocess
import sys

import pytest

import slurm_sync.cli.diagnostics as diagnostics
from testkit.celery_procs import sync_environment

from tests.pull_scenario import COMPONENTS_YAML, Scenario

CHECKS = ["settings", "components", "slurm", "tres", "default-account", "waldur", "waldur-generation",
          "offering-components", "orders", "redis", "broker"]


@pytest.fixture
def site(waldur, sync_env, slurm_bed):
    """An offering with one pending order, and the environment of a deployment syncing it."""
    scenario = Scenario(waldur)
    scenario.create("acme", "physics", "diag", team=("alice",))
    env = sync_environment(os.environ, WALDUR_OFFERING_UUID=scenario.offering["uuid"], **sync_env)
    return scenario, env


def run(env, **changes):
    env = {**env, **changes}
    proc = subprocess.run([sys.executable, "-m", "slurm_sync", "diagnostics"], env=env, capture_output=True,
                          text=True, timeout=120)
    lines = proc.stdout.splitlines()
    by_name = {line[5:].split(":", 1)[0]: line for line in lines}
    return proc, lines, by_name


def test_all_ok_on_a_working_site(site, slurm_bed):
    scenario, env = site
    proc, lines, by_name = run(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(by_name) == CHECKS
    assert all(line.startswith("OK   ") for line in lines), proc.stdout
    assert env["WALDUR_API_TOKEN"] not in proc.stdout + proc.stderr
    assert "WALDUR_API_TOKEN=****" + env["WALDUR_API_TOKEN"][-4:] in by_name["settings"]
    assert f"cluster {slurm_bed.cluster}" in by_name["slurm"]
    assert "the cluster tracks cpu, mem, gres/gpu" in by_name["tres"]
    assert "does not exist yet" in by_name["default-account"]
    assert scenario.offering["uuid"] in by_name["waldur"]
    assert "current — marketplace-provider-offerings/<uuid>/orders/ answered 200" in by_name["waldur-generation"]
    assert "cpu, mem, gpu match" in by_name["offering-components"]
    assert "1 active order (1 pending-provider)" in by_name["orders"]
    assert proc.stderr == ""


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_7_0_line_is_named_with_the_reason(site):
    _, env = site
    proc, _, by_name = run(env)
    assert by_name["waldur-generation"].startswith("OK   waldur-generation: 7.0 — marketplace-provider-offerings/"
                                                   "<uuid>/orders/ answered 404")
    proc, _, by_name = run(env, WALDUR_API_COMPAT="current")
    assert "current — forced by WALDUR_API_COMPAT" in by_name["waldur-generation"]


def test_tres_the_cluster_lacks(site, tmp_path):
    _, env = site
    components = tmp_path / "fpga.yaml"
    components.write_text(COMPONENTS_YAML + "gres/fpga:\n  measured_unit: hours\n  accounting_type: limit\n"
                          "  label: FPGA\n")
    proc, lines, by_name = run(env, SLURM_TRES_CONFIG_PATH=str(components))
    assert proc.returncode == 1
    assert by_name["tres"].startswith("FAIL tres: the cluster does not track gres/fpga (it tracks ")
    assert "| fix: add gres/fpga to AccountingStorageTRES in slurm.conf" in by_name["tres"]
    assert f"or remove gres/fpga from {components}" in by_name["tres"]
    # the offering has no fpga component either
    assert by_name["offering-components"].startswith("FAIL offering-components: offering vs config: fpga missing")
    assert "fix: run `slurm-sync load-components`" in by_name["offering-components"]
    assert [line.split()[0] for line in lines].count("FAIL") == 2


def test_wrong_waldur_token(site):
    _, env = site
    wrong = "not-the-token-0123456789"
    proc, lines, by_name = run(env, WALDUR_API_TOKEN=wrong)
    assert proc.returncode == 1
    assert by_name["waldur"].startswith("FAIL waldur: Waldur answered 401 to GET ")
    assert ("| fix: WALDUR_API_TOKEN is refused: set the API token of a user who manages the offering"
            in by_name["waldur"])
    assert by_name["offering-components"].startswith("SKIP") and by_name["orders"].startswith("SKIP")
    assert by_name["slurm"].startswith("OK") and by_name["redis"].startswith("OK")
    assert wrong not in proc.stdout + proc.stderr


def test_unknown_offering_and_unreachable_waldur(site):
    _, env = site
    proc, _, by_name = run(env, WALDUR_OFFERING_UUID="f" * 32)
    assert proc.returncode == 1 and "404" in by_name["waldur"]
    assert "fix: no offering ffffffff" in by_name["waldur"] and "WALDUR_OFFERING_UUID" in by_name["waldur"]
    proc, _, by_name = run(env, WALDUR_API_URL="http://127.0.0.1:1/api/")
    assert proc.returncode == 1 and by_name["waldur"].startswith("FAIL waldur: ")
    assert "fix: check WALDUR_API_URL" in by_name["waldur"]


def test_offering_component_billed_otherwise(site, waldur):
    scenario, env = site
    offering = waldur.add_offering("Other", components=[
        {"type": "cpu", "name": "CPU", "measured_unit": "hours", "billing_type": "usage"},
        {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
        {"type": "gpu", "name": "GPU", "measured_unit": "hours", "billing_type": "limit"},
        {"type": "storage", "name": "Disk", "measured_unit": "GB", "billing_type": "usage"}])
    proc, _, by_name = run(env, WALDUR_OFFERING_UUID=offering["uuid"])
    assert proc.returncode == 1
    assert by_name["offering-components"] == (
        "FAIL offering-components: offering vs config: cpu is billed 'usage' in Waldur, 'limit' in the config "
        f"| fix: run `slurm-sync load-components` to create/update the offering's components from "
        f"{env['SLURM_TRES_CONFIG_PATH']}")


def test_slurm_unreachable_skips_what_needs_it(site, tmp_path):
    _, env = site
    # no docker here: the docker deployment cannot run sacctmgr at all
    proc, _, by_name = run(env, SLURM_DEPLOYMENT_TYPE="docker", SLURM_CONTAINER_NAME="slurmctld",
                           PATH=f"{tmp_path}:/usr/bin:/bin")
    assert proc.returncode == 1
    assert by_name["slurm"].startswith("FAIL slurm: cannot run sacctmgr: docker exec -i slurmctld sacctmgr -V")
    assert "fix: make sure the container 'slurmctld' (SLURM_CONTAINER_NAME) runs" in by_name["slurm"]
    assert by_name["tres"] == "SKIP tres: not checked: SLURM unreachable"
    assert by_name["default-account"].startswith("SKIP")
    assert by_name["waldur"].startswith("OK")


def test_default_account_that_exists(site, slurm_sandbox):
    _, env = site
    proc, _, by_name = run(env, SLURM_DEFAULT_ACCOUNT=slurm_sandbox)
    assert proc.returncode == 0, proc.stdout
    assert by_name["default-account"] == (f"OK   default-account: {slurm_sandbox} (SLURM_DEFAULT_ACCOUNT) "
                                          "exists under root")


def test_redis_and_broker_down(site):
    _, env = site
    proc, _, by_name = run(env, REDIS_URL="redis://127.0.0.1:1/0", CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 1
    assert by_name["redis"].startswith("FAIL redis: redis://127.0.0.1:1/0: ConnectionError")
    assert "fix: start Redis or set REDIS_URL" in by_name["redis"]
    assert by_name["broker"].startswith("FAIL broker: ")
    assert "fix: start the broker or set CELERY_BROKER_URL" in by_name["broker"]


def test_bad_settings_stop_the_checks(site):
    _, env = site
    proc, lines, _ = run(env, SLURM_ALLOCATION_NAME_MAX_LEN="3", WALDUR_API_URL="ftp://x")
    assert proc.returncode == 1
    assert len(lines) == 2, lines
    assert lines[0].startswith("FAIL settings: WALDUR_API_URL='ftp://x': expected an http(s) URL")
    assert "SLURM_ALLOCATION_NAME_MAX_LEN='3'" in lines[0] and "fix: set each variable" in lines[0]
    assert lines[1] == "SKIP other checks: not run: the settings are invalid"


def test_extra_checks_hook_runs_after_the_builtin_ones(site, monkeypatch):
    _, env = site
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen = []

    def generation(ctx):
        seen.append(ctx.ok("waldur"))
        return diagnostics.Check("waldur-generation", diagnostics.OK, "current")

    def broken(ctx):
        raise RuntimeError("oops")
    monkeypatch.setattr(diagnostics, "extra_checks", [generation, broken])
    out = []
    assert diagnostics.main([], out=out.append) == 1
    assert out[-2] == "OK   waldur-generation: current" and seen == [True]
    assert out[-1].startswith("FAIL broken: the check crashed: RuntimeError: oops")
