"""docker/docker-compose.yml for real, SLURM_DEPLOYMENT_TYPE=docker: worker-headnode `docker exec`s sacctmgr and
sacct into a SLURM head-node container through the engine's socket.

One stack for the module, driven as docs/deploying.md says (`run --rm ... check-config`, `run --rm worker
load-components`, `up -d`, `exec worker-headnode celery -A tasks call ...`); the Waldur emulator answers it.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from testkit.job_rows import DbSettings, JobTable
from tests.plugins.celery_worker import wait_until
from tests.pull_scenario import Scenario

from tests.compose.conftest import container_url, timed
from tests.compose.flows import order_becomes_account, usage_is_posted
from tests.compose.stack import COMPOSE_FILE, SERVICES, Stack

COMPONENTS = [  # the offering's components as config-components.yaml names them (cpu, mem, gpu)
    {"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
    {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
    {"type": "gpu", "name": "GPU", "measured_unit": "hours", "billing_type": "usage"},
]


@pytest.fixture(scope="module")
def offering(waldur_for_containers):
    return Scenario(waldur_for_containers)


@pytest.fixture(scope="module")
def stack(engine, head_node, waldur_for_containers, offering):
    emu = waldur_for_containers
    stack = Stack.deploy(engine, [COMPOSE_FILE], project="slurm-sync-ci-docker", waldur_url=container_url(emu),
                         token=emu.token, offering=offering.offering["uuid"], prefix="cd",
                         SLURM_DEPLOYMENT_TYPE="docker", SLURM_CONTAINER_NAME=head_node.name)
    try:
        yield stack
    finally:
        stack.down()


def test_check_config_and_load_components_run_as_the_readme_writes_them(stack, waldur_for_containers, offering):
    checked = stack.compose("run", "--rm", "worker-headnode", "slurm-sync", "check-config", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert waldur_for_containers.token not in checked.stdout + checked.stderr  # masked

    with timed("docker mode: load-components"):
        loaded = stack.compose("run", "--rm", "worker", "load-components", check=False)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    components = waldur_for_containers.get_offering(offering.offering["uuid"])["components"]
    assert {c["type"]: c["measured_unit"] for c in components} == {
        c["type"]: c["measured_unit"] for c in COMPONENTS}


def test_every_service_comes_up_healthy_through_the_images_own_healthcheck(stack):
    with timed("docker mode: up -d --wait (all healthy)"):
        stack.up()
    states = {c["Service"]: (c["State"], c.get("Health", "")) for c in stack.ps()}
    assert states == {service: ("running", "healthy") for service in SERVICES}, stack.logs()


def test_an_order_becomes_an_account_in_the_slurm_container(stack, head_node, waldur_for_containers, offering):
    with timed("docker mode: Create order done (beat's poll)"):
        order_becomes_account(stack, waldur_for_containers, offering, head_node.associations, prefix="cd")


def test_celery_call_report_usage_posts_the_containers_usage(stack, head_node, waldur_for_containers, offering):
    spec = head_node.spec
    table = JobTable(DbSettings(host=spec.db_host, port=spec.db_port, user=spec.db_user, password=spec.db_password,
                                database=spec.db_name, cluster=spec.cluster))
    with timed("docker mode: celery call report_usage -> posted"):
        usage_is_posted(stack, waldur_for_containers, table, "cda_dock", head_node.exec)


def flower_get(stack, path: str, auth: bool = True):
    url = f"http://127.0.0.1:{stack.values['DEPLOY_FLOWER_PORT']}{path}"
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(stack.values["FLOWER_BASIC_AUTH"].encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_flower_asks_for_its_password_lists_both_workers_and_never_shows_the_token(stack, waldur_for_containers):
    assert flower_get(stack, "/", auth=False)[0] == 401
    assert flower_get(stack, "/api/workers", auth=False)[0] == 401
    wait_until(lambda: {"headnode", "worker"} <= {name.split("@")[0] for name in
                                                  _json(flower_get(stack, "/api/workers?refresh=1")[1])},
               timeout=60, what="Flower to list both workers")
    pages = [flower_get(stack, path)[1] for path in ("/", "/workers", "/tasks", "/broker",
                                                      "/api/workers?refresh=1", "/api/tasks")]
    assert all(waldur_for_containers.token not in page for page in pages)
    assert any("tasks.pull.poll_orders" in page for page in pages)


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        return {}
