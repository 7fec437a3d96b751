"""The push diff of limits and associations, on parsed SLURM rows (no bed needed)."""
import yaml

from slurm_sync.domain.real_tree import ActualState
from slurm_sync.domain.components import parse_components
from slurm_sync.domain.drift import differences
from slurm_sync.domain.slurm_objects import Association

from tests.pull_scenario import COMPONENTS_YAML

COMPONENTS = parse_components(yaml.safe_load(COMPONENTS_YAML))  # cpu, gpu: limit (x60); mem: usage (x61440)


def tree(limits, users=()):
    rows = [Association(account="acc", parent="proj", grp_tres_mins=limits)]
    rows += [Association(account="acc", user=u) for u in users]
    return ActualState(rows)


def resource(limits, state="OK"):
    return {"uuid": "r1", "resource_uuid": "alloc1", "state": state, "limits": limits}


def test_read_back_is_rounded_down_and_keeps_other_limits():
    diff = differences({"acc": resource({"cpu": 11, "gpu": 2, "mem": 7})},
                       tree({"cpu": 659, "gres/gpu": 120, "mem": 999999}), COMPONENTS, {})
    # 659 minutes are 10.98 hours: Waldur is told 10; mem is a usage component, left as Waldur has it
    assert diff.limits == {"r1": {"cpu": 10, "gpu": 2, "mem": 7}}


def test_nothing_differs_nothing_to_send():
    diff = differences({"acc": resource({"cpu": 10, "gpu": 2})}, tree({"cpu": 600, "gres/gpu": 120}, ["alice"]),
                       COMPONENTS, {"alloc1": {"alice"}})
    assert not diff


def test_associations_both_ways_and_none_when_waldur_keeps_none():
    present = {"acc": resource({"cpu": 10})}
    actual = tree({"cpu": 600}, ["alice", "bob"])
    diff = differences(present, actual, COMPONENTS, {"alloc1": {"bob", "mallory"}})
    assert diff.add == [("r1", "alice")] and diff.remove == [("r1", "mallory")]
    assert differences(present, actual, COMPONENTS, None).add == []


def test_resources_mid_order_are_left_to_pull():
    diff = differences({"acc": resource({"cpu": 1}, state="Updating")}, tree({"cpu": 600}, ["alice"]), COMPONENTS, {})
    assert not diff
