from decimal import Decimal

import pytest

from slurm_sync.domain.components import ComponentsConfigError, load_components, parse_components


def test_shipped_file_loads():
    components = load_components("config-components.yaml")
    assert [c.type for c in components] == ["cpu", "mem", "gpu"]
    assert components.by_type()["gpu"].tres == "gres/gpu"
    assert components.by_type()["cpu"].unit_factor == Decimal(60000)


def test_unit_factor_defaults_to_one_and_round_trip_never_inflates():
    c = parse_components({"cpu": {"accounting_type": "limit", "measured_unit": "min"}}).items[0]
    assert c.unit_factor == 1
    mem = parse_components({"mem": {"accounting_type": "limit", "unit_factor": "61440"}}).items[0]
    for amount in ("0.1", "1", "3.33", "1000.999", "0.0001"):
        assert mem.to_waldur_units(mem.to_slurm_minutes(amount)) <= Decimal(amount)
    assert mem.to_slurm_minutes("20") == 1228800 and mem.to_waldur_units(1228800) == 20


@pytest.mark.parametrize("data,problem", [
    ({"cpu": {"accounting_type": "bogus"}}, "accounting_type"),
    ({"cpu": {"accounting_type": "usage", "limit": "lots"}}, "limit must be a number"),
    ({"cpu": {"accounting_type": "usage", "limit": -1}}, "negative"),
    ({"cpu": {"accounting_type": "usage", "unit_factor": 0}}, "unit_factor must be positive"),
    ({"cpu": {"accounting_type": "usage", "unit_factor": "x"}}, "unit_factor must be a number"),
    ({"cpu; rm -rf": {"accounting_type": "usage"}}, "TRES type"),
    ({"cpu": ["usage"]}, "mapping"),
    ({"cpu": {"accounting_type": "usage", "colour": "red"}}, "unknown setting"),
    ({"gpu": {"accounting_type": "usage"}, "gres/gpu": {"accounting_type": "usage"}}, "defined twice"),
    ([], "non-empty mapping"),
])
def test_malformed_entries_name_path_entry_and_problem(data, problem):
    with pytest.raises(ComponentsConfigError) as caught:
        parse_components(data, "/etc/c.yaml")
    assert str(caught.value).startswith("/etc/c.yaml") and problem in str(caught.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ComponentsConfigError, match="cannot read"):
        load_components(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cpu: [unclosed")
    with pytest.raises(ComponentsConfigError, match="not valid YAML"):
        load_components(bad)
