"""docker/docker-compose.yml + docker/docker-compose.native.yml for real, SLURM_DEPLOYMENT_TYPE=native, against the
test bed: worker-headnode runs the image's own sacctmgr/sacct with the host's slurm.conf and munged's socket
mounted, as docs/deploying.md says, and reaches the bed's slurmdbd through its network's gateway.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from testkit.job_rows import JobTable
from tests.plugins.slurm_bed import remove_sandbox, sacctmgr, slurm
from tests.pull_scenario import Scenario

from tests.compose.conftest import container_url, timed
from tests.compose.flows import order_becomes_account, usage_is_posted
from tests.compose.stack import COMPOSE_FILE, NATIVE_FILE, SERVICES, Stack, container_hosts_address

PREFIX = "cn"  # every account this stack makes starts with it: cnroot and below


def container_slurm_conf(bed_conf: Path, munge_socket: str, target: Path) -> Path:
    """The bed's slurm.conf as a host's /etc/slurm would hold it for this container: slurmdbd by the
    name the container knows the host by, munged's socket where the mount puts it."""
    text = bed_conf.read_text().replace("127.0.0.1", container_hosts_address())
    text = re.sub(r"(?m)^(AuthInfo=socket=|AccountingStoragePass=).*$", rf"\g<1>{munge_socket}", text)
    target.mkdir(parents=True, exist_ok=True)
    (target / "slurm.conf").write_text(text)
    return target


@pytest.fixture(scope="module")
def native_stack(engine, slurm_bed, waldur_for_containers):
    emu = waldur_for_containers
    scenario = Scenario(emu)
    conf_dir = container_slurm_conf(slurm_bed.slurm_conf, "/run/munge/munge.socket.2",
                                    engine.scratch / "native-etc-slurm")
    stack = Stack.deploy(engine, [COMPOSE_FILE, NATIVE_FILE], project="slurm-sync-ci-native",
                         waldur_url=container_url(emu), token=emu.token, offering=scenario.offering["uuid"],
                         prefix=PREFIX, SLURM_DEPLOYMENT_TYPE="native",
                         # the bed's SlurmUser is root: munge credentials of uid 0 are its operator
                         DEPLOY_NATIVE_USER="0:0", DEPLOY_SLURM_CONF_DIR=str(conf_dir),
                         DEPLOY_MUNGE_SOCKET_DIR=str(slurm_bed.dir / "munge"))
    try:
        stack.compose("run", "--rm", "worker", "load-components")
        with timed("native mode: up -d --wait (all healthy)"):
            stack.up()
        yield stack, scenario
    finally:
        stack.down()
        remove_sandbox(f"{PREFIX}root")


def bed_associations() -> list:
    rows = sacctmgr("-n", "-P", "show", "assoc", "format=account,user,parentname,grptresmins").stdout
    return [line.split("|") for line in rows.splitlines()]


def test_native_stack_comes_up_healthy(native_stack):
    stack, _ = native_stack
    states = {c["Service"]: (c["State"], c.get("Health", "")) for c in stack.ps()}
    assert states == {service: ("running", "healthy") for service in SERVICES}, stack.logs()


def test_native_order_becomes_an_account_on_the_bed(native_stack, waldur_for_containers):
    stack, scenario = native_stack
    with timed("native mode: Create order done (beat's poll)"):
        order_becomes_account(stack, waldur_for_containers, scenario, bed_associations, prefix=PREFIX)


def test_native_celery_call_report_usage_posts_the_beds_usage(native_stack, waldur_for_containers, slurm_bed):
    stack, _ = native_stack
    table = JobTable.from_slurm_conf(str(slurm_bed.slurm_conf))
    try:
        with timed("native mode: celery call report_usage -> posted"):
            usage_is_posted(stack, waldur_for_containers, table, f"{PREFIX}a_dock",
                            lambda *argv: slurm(*argv, check=False).stdout)
    finally:
        table.delete_synthetic([f"{PREFIX}a_dock"])
