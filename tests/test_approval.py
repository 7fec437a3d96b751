"""Limits above a component's max_limit, and which orders slurm-sync approves itself (SLURM_SYNC_APPROVE)."""
import pytest
import yaml

from slurm_sync.domain.approval import above_max, left_for_a_person
from slurm_sync.domain.components import ComponentsConfigError, parse_components
from slurm_sync.domain.desired import OrderRejected, slurm_limits

COMPONENTS = parse_components(yaml.safe_load("""
cpu: {accounting_type: limit, measured_unit: k-Hours, unit_factor: 60000, max_limit: 1000}
gres/gpu: {accounting_type: limit, measured_unit: hours, unit_factor: 60}
mem: {accounting_type: usage, measured_unit: gb-Hours, unit_factor: 61440, limit: 10, max_limit: 5}
"""))
TRES = {"cpu", "gres/gpu", "mem"}


def test_a_limit_above_max_limit_errs_with_the_reason_unless_a_person_approved_it():
    assert slurm_limits({"cpu": 1000, "gpu": 10**6}, COMPONENTS, TRES)["cpu"] == 60_000_000  # at the max, no max
    with pytest.raises(OrderRejected, match=r"limit for 'cpu' is 1.5e14 k-Hours, above this offering's max_limit 1000"):
        slurm_limits({"cpu": "1.5e14", "gpu": 1}, COMPONENTS, TRES)  # 9e18 TRES-minutes: in effect unlimited
    assert slurm_limits({"cpu": 1001, "gpu": 1}, COMPONENTS, TRES, approved_above_max=True)["cpu"] == 60_060_000
    # a usage component's configured limit is the site's own: its max_limit does not apply
    assert slurm_limits({"cpu": 1, "gpu": 1}, COMPONENTS, TRES)["mem"] == 614_400


def test_which_pending_orders_wait_for_a_person():
    big = {"state": "pending-provider", "limits": {"cpu": 5000, "gpu": 1}}
    small = {"state": "pending-provider", "limits": {"cpu": 10, "gpu": 1}}
    approved = {**big, "state": "executing"}
    terminate = {"state": "pending-provider", "type": "Terminate"}
    assert [left_for_a_person(o, COMPONENTS, "auto") for o in (big, small, approved, terminate)] == [None] * 4
    assert all(left_for_a_person(o, COMPONENTS, "manual") for o in (big, small, terminate))
    assert left_for_a_person(approved, COMPONENTS, "manual") is None  # a person approved it: carried out
    assert "cpu 5000 k-Hours is above the offering's max_limit 1000" in left_for_a_person(big, COMPONENTS, "below-max")
    assert [left_for_a_person(o, COMPONENTS, "below-max") for o in (small, approved, terminate)] == [None] * 3
    assert above_max({"cpu": "not a number"}, COMPONENTS) == []  # errs later, with its own reason


@pytest.mark.parametrize("bad, problem", [("-1", "must not be negative"), ("lots", "must be a number")])
def test_a_bad_max_limit_stops_start_up_naming_it(bad, problem):
    with pytest.raises(ComponentsConfigError, match=f"component 'cpu': max_limit {problem}"):
        parse_components({"cpu": {"accounting_type": "limit", "max_limit": bad}}, "config-components.yaml")
