"""`python -m testkit demo`: the main job end to end on the local bed.

A Waldur emulator with one offering and a Create order, a real Celery worker (queues
headnode,celery) and beat polling it, and the SLURM account tree the order becomes.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from slurm_sync.domain.components import load_components
from testkit.celery_procs import REPO, start_beat, start_worker, sync_environment
from testkit.waldur_emulator import WaldurEmulator

TOKEN = "demo-token"


def _seed(emu: WaldurEmulator, components_path: str) -> dict:
    components = [{"type": c.type, "name": c.label, "measured_unit": c.measured_unit,
                   "billing_type": c.accounting_type} for c in load_components(components_path)]
    offering = emu.add_offering("SLURM demo", components=components)
    customer = emu.add_customer("Demo University", slug="demo-uni")
    project = emu.add_project(customer["uuid"], "Physics", slug="physics")
    alice = emu.add_user("alice-waldur", "Alice", "alice@example.org")
    emu.add_offering_user(offering["uuid"], alice["uuid"], "alice")
    order = emu.create_order(offering["uuid"], project["uuid"], type="Create", limits={},
                             attributes={"name": "demo-allocation"})
    emu.add_team_member(order["marketplace_resource_uuid"], alice["uuid"])
    return {"offering": offering, "order": order}


def run_demo(keep_running: bool = False, profile: str = "current", timeout: float = 120.0) -> int:
    if "SLURM_CONF" not in os.environ:
        print("SLURM_CONF is not set: run `eval \"$(python -m testkit testbed env)\"` after `python -m testkit testbed up`")
        return 2
    components_path = os.environ.get("SLURM_TRES_CONFIG_PATH", str(REPO / "config-components.yaml"))
    emu = WaldurEmulator(token=TOKEN, profile=profile).start()
    seeded = _seed(emu, components_path)
    order_uuid = seeded["order"]["uuid"]
    print(f"Waldur emulator ({profile}) at {emu.url}, offering {seeded['offering']['uuid']}")
    print(f"Create order {order_uuid} is pending-provider")
    env = sync_environment(os.environ, WALDUR_API_URL=emu.url, WALDUR_API_TOKEN=TOKEN,
                           WALDUR_OFFERING_UUID=seeded["offering"]["uuid"], WALDUR_SYNC_DIRECTION="pull",
                           SLURM_TRES_CONFIG_PATH=components_path, SLURM_SYNC_POLL_INTERVAL="5")
    log_dir = Path(tempfile.mkdtemp(prefix="slurm-sync-demo-"))
    worker = start_worker(env, log_dir)
    beat = start_beat(env, log_dir)
    print(f"worker (-Q headnode,celery) and beat running; logs in {log_dir}")
    try:
        deadline = time.monotonic() + timeout
        while emu.get_order(order_uuid)["state"] not in ("done", "erred") and time.monotonic() < deadline:
            time.sleep(0.5)
        order = emu.get_order(order_uuid)
        resource = emu.get_resource(order["marketplace_resource_uuid"])
        print(f"order {order_uuid}: {order['state']} {order.get('error_message') or ''}".rstrip())
        print(f"resource backend_id: {resource.get('backend_id')!r}, state {resource.get('state')}")
        tree = subprocess.run(["sacctmgr", "-n", "show", "assoc", "tree",
                               "format=Account%-32,User%-10,GrpTRESMins%-40"],
                              capture_output=True, text=True, timeout=60)
        print("sacctmgr show assoc tree:\n" + tree.stdout)
        if keep_running:
            print("worker, beat and emulator keep running; Ctrl-C stops them")
            while True:
                time.sleep(3600)
        return 0 if order["state"] == "done" else 1
    except KeyboardInterrupt:
        return 0
    finally:
        beat.stop()
        worker.stop()
        emu.stop()
