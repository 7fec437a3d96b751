"""Both Waldur generations: the server learnt from its answers, wrong-state races, push of limits and
associations (only when changed), and the 7.0 line's month rule — on the real bed and the emulator."""
from datetime import datetime, timezone

import pytest
import redis
import yaml

from slurm_sync.domain.components import parse_components
from slurm_sync.sync.pull import OrderProcessor
from slurm_sync.domain.desired import NamingPolicy
from slurm_sync.sync.push import UsageReporter
from testkit.memory_stores import MemoryStore
from slurm_sync.slurm.runner import NativeExecutor
from slurm_sync.slurm.sacctmgr import SacctmgrClient
from slurm_sync.waldur.api import WaldurAPI
from slurm_sync.redis_keys import RedisKeys
from slurm_sync.redis_stores import RedisGenerationCache

from tests.plugins.celery_worker import test_redis_url
from tests.test_sacct import bed_accounts, job_table  # noqa: F401  (fixtures)
from tests.plugins.slurm_bed import mark_ours, sacctmgr
from tests.pull_scenario import COMPONENTS_YAML

COMPONENTS = parse_components(yaml.safe_load(COMPONENTS_YAML))  # cpu, gpu: limit (x60); mem: usage


@pytest.fixture(params=["current", "7.0"])
def waldur_profile(request):
    return request.param


def api(waldur, scenario, **kwargs):
    return WaldurAPI(waldur.url, waldur.token, scenario.offering["uuid"], **kwargs)


# -- learning the generation --

def test_generation_is_learnt_from_one_read_and_shared_through_redis(waldur, scenario, test_redis):
    cache = RedisGenerationCache(redis.Redis.from_url(test_redis_url()), RedisKeys(scenario.offering["uuid"]))
    first = api(waldur, scenario, generation_cache=cache)
    assert first.generation.name == waldur.profile
    assert "orders/ answered " + ("200" if waldur.profile == "current" else "404") in first.generation.reason
    assert first.request_count == 1
    second = api(waldur, scenario, generation_cache=cache)  # another worker: asks Redis, not the server
    assert second.generation.name == waldur.profile and second.request_count == 0


def test_forced_generation_sends_no_probe(waldur, scenario):
    forced = api(waldur, scenario, compat="7.0")
    assert forced.generation.name == "7.0" and "WALDUR_API_COMPAT" in forced.generation.reason
    assert forced.request_count == 0


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_a_404_from_a_current_line_action_teaches_7_0(waldur, scenario):
    resource = waldur.add_resource(scenario.offering["uuid"], scenario.project("acme", "x")["uuid"], "r",
                                   backend_id="acc", allocation_state="Erred")
    class StaleCache:  # learnt before the server was downgraded, say
        def get(self, api_url):
            return ("current", "a stale cache")

        def put(self, api_url, name, reason):
            self.put_as = name

    cache = StaleCache()
    stale = api(waldur, scenario, generation_cache=cache)
    stale.set_resource_ok(resource["uuid"])
    assert stale.generation.name == "7.0" and "set_as_ok answered 404" in stale.generation.reason
    assert cache.put_as == "7.0"  # the other workers learn it too
    assert waldur.allocation_state(resource["uuid"]) == "OK"


# -- wrong state: one request, no client retry loop --

def test_wrong_state_race_costs_one_request(waldur, scenario, slurm_sandbox, waldur_no_sleep):
    order = scenario.create("acme", "physics", "raced")
    listed = api(waldur, scenario).active_orders()  # this worker saw it pending...
    from waldur_client import WaldurClient
    WaldurClient(waldur.url, waldur.token).marketplace_order_approve_by_provider(order["uuid"])  # ...another approved
    tag = slurm_sandbox[1:5]
    policy = NamingPolicy(default_account=f"{slurm_sandbox}w", customer_prefix=f"c{tag}_", project_prefix=f"p{tag}_",
                          allocation_prefix=f"a{tag}_", max_len=34)
    processor = OrderProcessor(api(waldur, scenario), SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS, policy)
    try:
        result = processor.process(listed)
    finally:
        from tests.plugins.slurm_bed import remove_sandbox
        remove_sandbox(policy.default_account)
    approvals = [r for r in waldur.requests if r.path.endswith("approve_by_provider/")]
    assert [r.status for r in approvals] == [200, 400 if waldur.profile == "current" else 409]
    assert waldur_no_sleep == []  # python-waldur-client's 409 sleep-and-retry never ran
    assert result.by_result("done") == [order["uuid"]]  # re-read, found executing, went on
    assert waldur.get_order(order["uuid"])["state"] == "done"


# -- push of limits and associations --

@pytest.fixture
def allocation(waldur, scenario, slurm_sandbox):
    """A SLURM allocation account (cpu 601 minutes: 10.02 h, gpu 120 minutes) with alice and bob, and its
    Waldur resource showing other limits and no associations."""
    account = f"{slurm_sandbox}_alloc"
    sacctmgr("-i", "add", "account", account, f"parent={slurm_sandbox}", "GrpTRESMins=cpu=601,gres/gpu=120")
    sacctmgr("-i", "add", "user", "alice,bob", f"account={account}")
    resource = waldur.add_resource(scenario.offering["uuid"], scenario.project("acme", "x")["uuid"], "alloc",
                                   limits={"cpu": 5, "gpu": 2, "mem": 7}, backend_id=account)
    mark_ours({account: resource})
    reporter = UsageReporter(api(waldur, scenario), SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS,
                             MemoryStore())
    return reporter, resource, account


def test_limits_and_associations_are_pushed_once_and_only_changes(waldur, allocation):
    reporter, resource, account = allocation
    now = datetime.now(timezone.utc)
    first = reporter.run(now=now)
    # 601 cpu-minutes are 10.02 hours: Waldur is told 10, never more than SLURM enforces
    assert waldur.resource_limits(resource["uuid"]) == {"cpu": 10, "gpu": 2, "mem": 7}
    # associations are reported to a 7.0-line server only: the current API has no call to write them
    on_7_0 = waldur.profile == "7.0"
    assert waldur.slurm_associations(resource["uuid"]) == (["alice", "bob"] if on_7_0 else [])
    assert (first.limit_posts, first.association_posts) == (1, 2 if on_7_0 else 0)
    assert waldur.count("POST", "slurm-remote") == (3 if on_7_0 else 0)  # set_limits + 2 associations
    limit_path = "slurm-remote" if waldur.profile == "7.0" else "provider-resources"
    assert waldur.count("POST", "set_limits") == waldur.count("POST", limit_path + "/" + resource["uuid"]
                                                              + "/set_limits") == 1

    idle = reporter.run(now=now)
    assert (idle.limit_posts, idle.association_posts) == (0, 0)

    sacctmgr("-i", "remove", "user", "bob", f"account={account}")
    sacctmgr("-i", "modify", "account", account, "set", "GrpTRESMins=cpu=1200")
    changed = reporter.run(now=now)
    assert (changed.limit_posts, changed.association_posts) == (1, 1 if on_7_0 else 0)
    assert waldur.slurm_associations(resource["uuid"]) == (["alice"] if on_7_0 else [])
    assert waldur.resource_limits(resource["uuid"])["cpu"] == 20


@pytest.mark.parametrize("waldur_profile", ["7.0"])
def test_closed_month_never_overwrites_the_current_one_on_7_0(waldur, scenario, bed_accounts, job_table):
    from datetime import timedelta

    from testkit.job_rows import JobRow
    accounts, users = bed_accounts
    resource = waldur.add_resource(scenario.offering["uuid"], scenario.project("acme", "x")["uuid"], "alloc",
                                   backend_id=accounts[0])
    mark_ours({accounts[0]: resource})
    reporter = UsageReporter(api(waldur, scenario), SacctmgrClient(NativeExecutor(timeout=60)), COMPONENTS,
                             MemoryStore())
    start = datetime(2025, 3, 31, 20, tzinfo=timezone.utc)
    job_table.insert([JobRow(job_table.next_job_id(), accounts[0], users[0], start, start + timedelta(hours=2),
                             {"mem": 61440, "cpu": 1, "node": 1})])
    waldur.now = lambda: datetime(2025, 4, 2, 12)
    result = reporter.run(now=datetime(2025, 4, 2, 12, tzinfo=timezone.utc))  # March still open to reports
    april = {u["type"]: u["usage"] for u in waldur.component_usages(resource["uuid"], "2025-04-01")}
    assert waldur.component_usages(resource["uuid"], "2025-03-01") == []
    assert float(april["mem"]) == 0  # March's 120 GB-h did not land on April
    assert any("mem 2025-03 is 120.00" in note for note in result.unreportable)


def test_a_forbidden_probe_assumes_current_until_an_action_says_otherwise(waldur, scenario, monkeypatch):
    from slurm_sync.waldur.api import WaldurHTTPError
    probing = api(waldur, scenario)

    def forbidden(method, url, valid_states, **kwargs):
        raise WaldurHTTPError(method, url, 403, '{"detail": "You do not have permission."}')

    monkeypatch.setattr(probing.client, "_make_request", forbidden)
    generation = probing.generation
    assert generation.name == "current" and "answered 403" in generation.reason
