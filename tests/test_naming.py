"""Names: safe alphabet, bounded, deterministic, unique; hostile input never survives raw."""
import re

import pytest
from hypothesis import given, settings, strategies as st

from slurm_sync.domain.names import (NamingError, account_name, allocation_name, check_account_name, check_user_name)

SAFE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
UUID = "0123456789abcdef0123456789abcdef"
HOSTILE = [";rm -rf /", "$(reboot)", "`id`", "a'b\"c", "x|y", "a=b", "a,b", "line\nbreak", "tab\there",
           "Üñíçødé-名前", "😀", "%s%n", "back\\slash", "A" * 10_000, "", "---", "Root", "ROOT"]


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_sources_become_safe_bounded_names(source):
    name = account_name("hpc_", source, UUID, 20)
    assert SAFE.match(name) and len(name) <= 20
    assert name == account_name("hpc_", source, UUID, 20)  # deterministic


def test_clean_short_slug_is_kept_as_is():
    assert account_name("hpc_", "alpha-lab", UUID, 34) == "hpc_alpha-lab"


def test_changed_or_cut_names_get_a_stable_suffix_so_different_objects_differ():
    a = account_name("hpc_", "Research Group A", "a" * 32, 20)
    b = account_name("hpc_", "Research Group A", "b" * 32, 20)
    assert a != b and len(a) <= 20 and len(b) <= 20


def test_collision_with_a_taken_name_adds_the_suffix():
    plain = allocation_name("hpc_", "alloc1", UUID, 34)
    other = allocation_name("hpc_", "alloc1", UUID, 34, taken={plain})
    assert plain == "hpc_alloc1" and other != plain and other.startswith("hpc_alloc1-")


@settings(max_examples=300, deadline=None)
@given(prefix=st.from_regex(r"[a-z0-9_-]{0,8}", fullmatch=True), source=st.text(max_size=300),
       uuid=st.from_regex(r"[0-9a-f]{32}", fullmatch=True), max_len=st.integers(8, 64))
def test_property_any_text_gives_a_safe_name(prefix, source, uuid, max_len):
    name = account_name(prefix, source, uuid, max_len)
    assert SAFE.match(name) and len(name) <= max_len


@pytest.mark.parametrize("username", HOSTILE + ["root", "slurm", "-dash", "9lives", "a" * 33])
def test_unsafe_user_names_are_refused_not_rewritten(username):
    with pytest.raises(NamingError):
        check_user_name(username)


@pytest.mark.parametrize("username", ["alice", "bob_2", "_svc", "x-y"])
def test_ordinary_user_names_pass(username):
    assert check_user_name(username) == username


@pytest.mark.parametrize("backend_id", HOSTILE[:-3] + [None, 42])
def test_backend_ids_from_waldur_are_checked(backend_id):
    with pytest.raises(NamingError):
        check_account_name(backend_id)


def test_docker_mode_refuses_the_slurm_containers_system_users():
    """In docker mode the system-account rule asks the SLURM container (``getent passwd`` through docker exec),
    not the worker's own user database; each login is asked once."""
    from slurm_sync.domain.desired import team_usernames
    from slurm_sync.settings import Settings
    from slurm_sync.slurm.runner import CommandResult, DockerExecutor
    from slurm_sync.wiring import naming_policy

    class Container(DockerExecutor):
        def __init__(self):
            super().__init__("slurmctld")
            self.calls = []

        def run(self, argv, *, timeout=None, input=None, check=True):
            self.calls.append(self.wrap(argv))
            known = {"www-data": "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin",
                     "alice": "alice:x:2001:2001::/home/alice:/bin/bash"}
            line = known.get(argv[-1])
            return CommandResult(0 if line else 2, (line + "\n") if line else "", "")

    container = Container()
    policy = naming_policy(Settings(slurm_deployment_type="docker", slurm_container_name="slurmctld"), container)
    team = [{"username": u, "offering_user_username": u} for u in ("www-data", "alice", "bob-ldap", "alice")]
    users, skipped = team_usernames(team, policy.min_uid, policy.uid_of)
    assert users == ("alice", "bob-ldap")  # bob is in no passwd there yet: may come from LDAP later
    assert [member for member, _ in skipped] == ["www-data"] and "uid 33 < 1000" in skipped[0][1]
    assert container.calls == [["docker", "exec", "-i", "slurmctld", "getent", "passwd", name]
                               for name in ("www-data", "alice", "bob-ldap")]
    assert naming_policy(Settings(slurm_deployment_type="docker", slurm_container_name="c", min_uid=0),
                         container).min_uid is None  # 0 turns the look-up off
