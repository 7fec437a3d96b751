"""`slurm-sync diagnostics`: every check of a deployment, one line each, with the fix for each failure.

    OK   settings: WALDUR_API_URL=https://... WALDUR_API_TOKEN=****abcd ...
    FAIL tres: the cluster does not track gres/fpga (it tracks cpu, mem, ...) | fix: add ... or remove ...
    SKIP default-account: not checked: SLURM unreachable

The exit status is 1 when any check FAILs, else 0. SKIP marks a check that could not run because
one it needs failed (that one's FAIL says what to fix). Secrets never appear: the token is shown by
its last 4 characters and every line goes through the redaction of
:mod:`slurm_sync.observability.redaction`.

Extending: append a function ``(ctx: Context) -> Check | Iterable[Check] | None`` to
:data:`extra_checks`; they run after the built-in checks, in order, and may read ``ctx.waldur``
(``ctx.ok("waldur")`` says whether Waldur answered).
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from slurm_sync.observability.redaction import redact

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"
_MAX_DETAIL = 400


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        detail = " ".join(str(self.detail).split())
        if len(detail) > _MAX_DETAIL:
            detail = detail[:_MAX_DETAIL - 3] + "..."
        text = f"{self.status:<4} {self.name}: {detail}"
        if self.fix and self.status != OK:
            text += f" | fix: {' '.join(self.fix.split())}"
        return redact(text)


@dataclass
class Context:
    """What the checks share: settings, components and the clients, built as the checks need them."""

    settings: Any = None
    components: Any = None
    executor: Any = None
    sacctmgr: Any = None
    waldur: Any = None
    results: Dict[str, str] = field(default_factory=dict)  # check name -> status
    facts: Dict[str, Any] = field(default_factory=dict)

    def ok(self, name: str) -> bool:
        return self.results.get(name) == OK


CheckFunction = Callable[[Context], Union[Check, Iterable[Check], None]]

_WHY_NOT = {"slurm": "SLURM unreachable", "components": "config-components.yaml invalid",
            "waldur": "Waldur did not answer"}


def _skip_unless(ctx: Context, name: str, *needed: str) -> Optional[Check]:
    """A SKIP line for ``name`` when a check it builds on did not pass, else None."""
    for need in needed:
        if not ctx.ok(need):
            return Check(name, SKIP, f"not checked: {_WHY_NOT[need]}")
    return None


# ---- the checks ---------------------------------------------------------------------------------

SHOWN_SETTINGS = ("WALDUR_API_URL", "WALDUR_API_TOKEN", "WALDUR_OFFERING_UUID", "WALDUR_SYNC_DIRECTION",
                  "SLURM_DEPLOYMENT_TYPE", "SLURM_TRES_CONFIG_PATH", "SLURM_DEFAULT_ACCOUNT", "SENTRY_DSN")


def check_settings(ctx: Context) -> Check:
    from slurm_sync.settings import SettingsError, load_settings
    if ctx.settings is None:
        try:
            ctx.settings = load_settings()
        except SettingsError as error:
            return Check("settings", FAIL, "; ".join(error.problems),
                         "set each variable as the message says (`slurm-sync check-config` lists them all)")
    shown = ctx.settings.masked()
    return Check("settings", OK, " ".join(f"{k}={shown[k] or '-'}" for k in SHOWN_SETTINGS if k in shown))


def check_components(ctx: Context) -> Check:
    from slurm_sync.domain.components import ComponentsConfigError, load_components
    path = ctx.settings.slurm_tres_config_path
    try:
        ctx.components = load_components(path)
    except ComponentsConfigError as error:
        return Check("components", FAIL, str(error), f"correct {path} (SLURM_TRES_CONFIG_PATH) as the message says")
    return Check("components", OK, f"{path}: " + ", ".join(
        f"{c.tres} ({c.accounting_type}, x{c.unit_factor})" for c in ctx.components))


def _slurm_fix(ctx: Context) -> str:
    s = ctx.settings
    if s.slurm_deployment_type == "docker":
        return (f"make sure the container {s.slurm_container_name!r} (SLURM_CONTAINER_NAME) runs, has sacctmgr, "
                "and `docker exec` works for this user")
    return ("install the SLURM client here and make sure `sacctmgr show cluster` works for this user "
            "(SLURM_CONF, munge key, slurmdbd running and reachable), or use SLURM_DEPLOYMENT_TYPE=docker")


def check_slurm(ctx: Context) -> Check:
    from slurm_sync.slurm.runner import SlurmCommandError
    from slurm_sync.wiring import sacctmgr, slurm_runner
    s = ctx.settings
    if ctx.executor is None:
        ctx.executor = slurm_runner(s)
        ctx.sacctmgr = sacctmgr(s, ctx.executor)
    try:
        version = ctx.executor.run(["sacctmgr", "-V"], timeout=s.slurm_command_timeout).stdout.strip()
    except SlurmCommandError as error:
        return Check("slurm", FAIL, f"cannot run sacctmgr: {error}", _slurm_fix(ctx))
    try:
        cluster = ctx.sacctmgr.cluster
    except SlurmCommandError as error:
        detail = str(error)
        if "expected one cluster" in detail:
            return Check("slurm", FAIL, f"{version}: {detail}",
                         "slurm-sync manages exactly one cluster: remove stale clusters from slurmdbd "
                         "(`sacctmgr remove cluster <name>`)")
        return Check("slurm", FAIL, f"{version}: slurmdbd does not answer: {detail}", _slurm_fix(ctx))
    ctx.facts["cluster"] = cluster
    return Check("slurm", OK, f"{version}, cluster {cluster}")


def check_tres(ctx: Context) -> Check:
    skipped = _skip_unless(ctx, "tres", "slurm", "components")
    if skipped:
        return skipped
    from slurm_sync.slurm.runner import SlurmCommandError
    try:
        tracked = ctx.sacctmgr.read_tres()
    except SlurmCommandError as error:
        return Check("tres", FAIL, f"cannot read the cluster's TRES: {error}", _slurm_fix(ctx))
    wanted = [c.tres for c in ctx.components]
    missing = [t for t in wanted if t not in tracked]
    if missing:
        path = ctx.settings.slurm_tres_config_path
        return Check("tres", FAIL, f"the cluster does not track {', '.join(missing)} "
                     f"(it tracks {', '.join(sorted(tracked))}); every order would err",
                     f"add {','.join(missing)} to AccountingStorageTRES in slurm.conf (GRES also to GresTypes) and "
                     f"restart slurmctld, or remove {', '.join(missing)} from {path}")
    return Check("tres", OK, f"the cluster tracks {', '.join(wanted)}")


def check_default_account(ctx: Context) -> Check:
    skipped = _skip_unless(ctx, "default-account", "slurm")
    if skipped:
        return skipped
    from slurm_sync.slurm.runner import SlurmCommandError
    account = ctx.settings.slurm_default_account
    try:
        rows = ctx.executor.run(["sacctmgr", "-P", "-n", "show", "assoc", "wopl", "where", f"account={account}",
                                 f"cluster={ctx.facts['cluster']}", "format=Account,User,ParentName"],
                                timeout=ctx.settings.slurm_command_timeout).stdout
    except SlurmCommandError as error:
        return Check("default-account", FAIL, f"cannot read account {account}: {error}", _slurm_fix(ctx))
    parents = [line.split("|")[2] for line in rows.splitlines()
               if line.count("|") >= 2 and line.split("|")[0] == account and not line.split("|")[1]]
    if not parents:
        return Check("default-account", OK, f"{account} (SLURM_DEFAULT_ACCOUNT) does not exist yet: slurm-sync "
                     "creates it under root with the first Create order")
    return Check("default-account", OK, f"{account} (SLURM_DEFAULT_ACCOUNT) exists under {parents[0] or 'root'}")


def _waldur_failure(ctx: Context, error: Exception) -> Check:
    from slurm_sync.waldur.api import WaldurHTTPError
    s = ctx.settings
    status = getattr(error, "status", None) if isinstance(error, WaldurHTTPError) else None
    if status == 401:
        fix = ("WALDUR_API_TOKEN is refused: set the API token of a user who manages the offering "
               "(Waldur: user profile > API token)")
    elif status == 403:
        fix = ("the token's user may not manage this offering: make that user an owner or service manager of "
               "the offering's service provider")
    elif status == 404:
        fix = f"no offering {s.waldur_offering_uuid}: set WALDUR_OFFERING_UUID to the offering's UUID in Waldur"
    elif status is not None:
        fix = f"Waldur answered {status}: check WALDUR_API_URL points at the API root (…/api/) and the server's logs"
    else:
        fix = ("check WALDUR_API_URL (the API root, e.g. https://waldur.example.com/api/), that this host reaches "
               "it (DNS, proxy, firewall), and REQUESTS_VERIFY_SSL for a self-signed certificate")
    return Check("waldur", FAIL, str(error), fix)


def check_waldur(ctx: Context) -> Check:
    from slurm_sync.waldur.api import WaldurError
    from slurm_sync.wiring import waldur_api
    s = ctx.settings
    if ctx.waldur is None:
        ctx.waldur = waldur_api(s, timeout=min(30.0, s.slurm_command_timeout))
    try:
        offering = ctx.waldur.offering()
    except (WaldurError, OSError, ValueError) as error:
        return _waldur_failure(ctx, error)
    ctx.facts["offering"] = offering
    return Check("waldur", OK, f"{s.waldur_api_url} answers; offering {offering.get('name')!r} "
                 f"({s.waldur_offering_uuid}, {offering.get('type', '?')}, {offering.get('state', '?')})")


def check_waldur_generation(ctx: Context) -> Check:
    """Which Waldur API generation answers, and why we think so (docs/waldur-versions.md)."""
    skipped = _skip_unless(ctx, "waldur-generation", "waldur")
    if skipped:
        return skipped
    generation = ctx.waldur.generation
    note = ("; a closed month's totals cannot be filed on this line (see docs/waldur-versions.md)"
            if generation.is_7_0 else "")
    return Check("waldur-generation", OK, f"{generation.name} — {generation.reason}{note}")


def check_offering_components(ctx: Context) -> Check:
    skipped = _skip_unless(ctx, "offering-components", "waldur", "components")
    if skipped:
        return skipped
    existing = {c.get("type"): c for c in ctx.facts["offering"].get("components") or []}
    problems = []
    for component in ctx.components:
        found = existing.get(component.type)
        if found is None:
            problems.append(f"{component.type} missing")
        elif found.get("billing_type") != component.accounting_type:
            problems.append(f"{component.type} is billed {found.get('billing_type')!r} in Waldur, "
                            f"{component.accounting_type!r} in the config")
    if problems:
        return Check("offering-components", FAIL, "offering vs config: " + "; ".join(problems),
                     "run `slurm-sync load-components` to create/update the offering's components from "
                     f"{ctx.settings.slurm_tres_config_path}")
    extra = sorted(set(existing) - {c.type for c in ctx.components})
    note = f"; the offering also has {', '.join(extra)} (not synced)" if extra else ""
    return Check("offering-components", OK, ", ".join(c.type for c in ctx.components) + " match" + note)


def check_active_orders(ctx: Context) -> Check:
    skipped = _skip_unless(ctx, "orders", "waldur")
    if skipped:
        return skipped
    from slurm_sync.waldur.api import WaldurError
    try:
        orders = ctx.waldur.active_orders()
    except (WaldurError, OSError, ValueError) as error:
        return Check("orders", FAIL, f"cannot list the offering's orders: {error}",
                     "the token's user must be able to list the offering's orders (service manager or owner)")
    states = Counter(o.get("state") for o in orders)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    count = f"{len(orders)} active order{'' if len(orders) == 1 else 's'}"
    return Check("orders", OK, count + (f" ({by_state})" if by_state else ""))


def check_redis(ctx: Context) -> Check:
    from slurm_sync.cli.health import redis_problem, safe_url
    url = ctx.settings.redis_url
    problem = redis_problem(url)
    if problem:
        return Check("redis", FAIL, f"{safe_url(url)}: {problem}",
                     "start Redis or set REDIS_URL (locks and idempotency keys live there)")
    return Check("redis", OK, f"{safe_url(url)} answers PING")


def check_broker(ctx: Context) -> Check:
    from slurm_sync.cli.health import broker_problem, redis_client, safe_url
    url = ctx.settings.celery_broker_url
    problem = broker_problem(url)
    if problem:
        return Check("broker", FAIL, f"{safe_url(url)}: {problem}", "start the broker or set CELERY_BROKER_URL")
    detail = f"{safe_url(url)} accepts connections"
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            client = redis_client(url)
            waiting = {queue: client.llen(queue) for queue in ("headnode", "celery")}
            detail += "; waiting tasks: " + ", ".join(f"{q} {n}" for q, n in waiting.items())
        except Exception:  # noqa: BLE001 - the count is a courtesy
            pass
    return Check("broker", OK, detail)


CHECKS: List[CheckFunction] = [check_settings, check_components, check_slurm, check_tres, check_default_account,
                               check_waldur, check_waldur_generation, check_offering_components, check_active_orders, check_redis,
                               check_broker]

#: Hook: more checks, run after :data:`CHECKS` (e.g. the Waldur server generation).
extra_checks: List[CheckFunction] = []


def run_checks(ctx: Optional[Context] = None) -> List[Check]:
    ctx = ctx or Context()
    results: List[Check] = []
    for function in [*CHECKS, *extra_checks]:
        try:
            produced = function(ctx)
        except Exception as error:  # noqa: BLE001 - a broken check is a FAIL, not a crash
            produced = Check(getattr(function, "__name__", "check").replace("check_", ""), FAIL,
                             f"the check crashed: {type(error).__name__}: {error}", "report this as a bug")
        for check in ([produced] if isinstance(produced, Check) else list(produced or ())):
            results.append(check)
            ctx.results[check.name] = check.status
        if function is check_settings and not ctx.ok("settings"):
            results.append(Check("other checks", SKIP, "not run: the settings are invalid"))
            break
    return results


def main(argv: Optional[List[str]] = None, out: Callable[[str], None] = print) -> int:
    argparse.ArgumentParser(prog="slurm-sync diagnostics", description=__doc__.split("\n")[0]).parse_args(argv or [])
    results = run_checks()
    for check in results:
        out(check.line())
    return 1 if any(check.failed for check in results) else 0
