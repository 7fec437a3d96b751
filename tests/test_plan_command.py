"""`slurm-sync plan` on the real bed: what the active orders would run, printed, nothing applied."""
import io
import subprocess

import pytest

from tests.plugins.celery_worker import wait_until
from tests.pull_scenario import Scenario


@pytest.mark.parametrize("waldur_profile", ["current"])
def test_plan_of_a_terminate_with_a_running_job_prints_the_scancel_and_goes_on(waldur, sync_env, monkeypatch):
    from slurm_sync.cli.plan import print_plan
    from slurm_sync.sync.pull import OrderProcessor
    from slurm_sync.wiring import build_runtime
    from tests.plugins.slurm_bed import ensure_unix_user

    scenario = Scenario(waldur)
    for name, value in {**sync_env, "WALDUR_OFFERING_UUID": scenario.offering["uuid"]}.items():
        monkeypatch.setenv(name, value)
    ensure_unix_user("alice")
    create = scenario.create("acme", "physics", "busy", team=("alice",))
    rt = build_runtime()
    OrderProcessor(rt.waldur, rt.sacctmgr, rt.components, rt.policy).process(rt.waldur.active_orders())
    account = waldur.get_resource(create["marketplace_resource_uuid"])["backend_id"]
    job = subprocess.run(["runuser", "-u", "alice", "--", "sbatch", "--parsable", f"--account={account}",
                          "--mem=64", "--chdir=/tmp", "--output=/dev/null", "--wrap", "sleep 120"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    try:
        wait_until(lambda: job in subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                                                 timeout=30).stdout.split(), what="the job queued")
        scenario.order(create["marketplace_resource_uuid"], "Terminate")
        out = io.StringIO()
        assert print_plan(out) == 0
        printed = out.getvalue().splitlines()
        assert f"scancel {job}" in printed
        assert any(line.startswith("sacctmgr -i remove account where name=") and account in line for line in printed)
        assert job in subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                                     timeout=30).stdout.split()  # printed, not run
        assert account in subprocess.run(["sacctmgr", "-P", "-n", "show", "account", "format=Account"],
                                         capture_output=True, text=True, timeout=30).stdout.split()
    finally:
        from tests.plugins.slurm_bed import remove_sandbox
        subprocess.run(["scancel", job], timeout=30)
        remove_sandbox(sync_env["SLURM_DEFAULT_ACCOUNT"])  # made by the product under root, beside the sandbox
