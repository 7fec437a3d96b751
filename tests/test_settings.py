"""Every settings error path: one line per bad variable naming the variable, value and what is expected."""
import pytest

from slurm_sync.settings import SettingsError, load_settings

GOOD = {
    "WALDUR_API_URL": "https://waldur.example.com/api",
    "WALDUR_API_TOKEN": "abcdef0123456789",
    "WALDUR_OFFERING_UUID": "0123456789abcdef0123456789abcdef",
    "SLURM_TRES_CONFIG_PATH": "config-components.yaml",
}


def settings(**changes):
    env = dict(GOOD)
    env.update(changes)
    return load_settings({k: v for k, v in env.items() if v is not None})


def problems(**changes):
    with pytest.raises(SettingsError) as caught:
        settings(**changes)
    return caught.value.problems


def test_defaults_and_types():
    s = settings()
    assert s.waldur_api_url == "https://waldur.example.com/api/"
    assert s.waldur_sync_direction == "pull" and s.pulls and not s.pushes
    assert s.slurm_deployment_type == "native"
    assert s.requests_verify_ssl is True
    assert isinstance(s.slurm_allocation_name_max_len, int)


@pytest.mark.parametrize("word,value", [("yes", True), ("TRUE", True), ("1", True), ("on", True),
                                        ("no", False), ("False", False), ("0", False), ("off", False)])
def test_booleans_accept_usual_spellings(word, value):
    assert settings(REQUESTS_VERIFY_SSL=word).requests_verify_ssl is value
    assert settings(ENABLE_USER_HOMEDIR_ACCOUNT_CREATION=word).enable_user_homedir_account_creation is value


@pytest.mark.parametrize("variable,value,expected", [
    ("WALDUR_API_URL", "ftp://x", "http(s) URL"),
    ("WALDUR_SYNC_DIRECTION", "sideways", "pull | push | both"),
    ("WALDUR_OFFERING_UUID", "not-a-uuid", "UUID"),
    ("REQUESTS_VERIFY_SSL", "maybe", "boolean"),
    ("ENABLE_USER_HOMEDIR_ACCOUNT_CREATION", "sure", "boolean"),
    ("SLURM_DEPLOYMENT_TYPE", "k8s", "native | docker"),
    ("SLURM_ALLOCATION_NAME_MAX_LEN", "twenty", "whole number"),
    ("SLURM_ALLOCATION_NAME_MAX_LEN", "3", "whole number from 8 to 64"),
    ("SLURM_CUSTOMER_PREFIX", "Bad;Prefix", "a-z, 0-9"),
    ("SLURM_PROJECT_PREFIX", "$(x)", "a-z, 0-9"),
    ("SLURM_ALLOCATION_PREFIX", "a b", "a-z, 0-9"),
    ("SLURM_DEFAULT_ACCOUNT", "Root|x", "SLURM account name"),
    ("SLURM_CONTAINER_NAME", "-rm", "container name"),
    ("SLURM_TRES_CONFIG_PATH", "/nonexistent.yaml", "no such file"),
    ("CELERY_BROKER_URL", "localhost:6379", "broker URL"),
    ("SLURM_SYNC_USAGE_TIMEZONE", "Mars/Olympus", "time zone"),
])
def test_each_bad_variable_is_named_with_value_and_expectation(variable, value, expected):
    found = problems(**{variable: value})
    assert len(found) == 1, found
    assert found[0].startswith(variable) and expected in found[0]
    if variable != "SLURM_TRES_CONFIG_PATH":
        assert repr(value) in found[0]


def test_docker_needs_container_name():
    found = problems(SLURM_DEPLOYMENT_TYPE="docker")
    assert any(p.startswith("SLURM_CONTAINER_NAME") and "required" in p for p in found)
    assert settings(SLURM_DEPLOYMENT_TYPE="docker", SLURM_CONTAINER_NAME="slurmctld").slurm_container_name == "slurmctld"


def test_missing_waldur_variables_are_each_reported():
    found = problems(WALDUR_API_URL=None, WALDUR_API_TOKEN=None, WALDUR_OFFERING_UUID=None)
    assert sorted(p.split(" ")[0] for p in found) == ["WALDUR_API_TOKEN", "WALDUR_API_URL", "WALDUR_OFFERING_UUID"]
    load_settings({"SLURM_TRES_CONFIG_PATH": "config-components.yaml"}, require_waldur=False)


def test_all_bad_variables_reported_at_once_and_token_never_shown():
    with pytest.raises(SettingsError) as caught:
        settings(WALDUR_API_URL="nope", SLURM_DEPLOYMENT_TYPE="x", SLURM_ALLOCATION_NAME_MAX_LEN="y",
                 WALDUR_API_TOKEN="supersecret")
    text = str(caught.value)
    assert len(caught.value.problems) == 3
    assert "supersecret" not in text
    assert "supersecret" not in repr(settings(WALDUR_API_TOKEN="supersecret"))
    assert settings(WALDUR_API_TOKEN="supersecret").masked()["WALDUR_API_TOKEN"] == "****cret"


def test_dashed_uuid_is_normalised():
    s = settings(WALDUR_OFFERING_UUID="01234567-89ab-cdef-0123-456789ABCDEF")
    assert s.waldur_offering_uuid == "0123456789abcdef0123456789abcdef"
