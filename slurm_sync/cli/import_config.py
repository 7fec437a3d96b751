"""`slurm-sync import-config <config.yaml>`: the slurm-sync settings equivalent to a waldur-site-agent's.

Reads the incumbent's configuration file (waldur-site-agent 1.0.x: top-level ``offerings`` with
``waldur_api_url``, ``waldur_api_token``, ``waldur_offering_uuid``, ``backend_settings`` and
``backend_components``) and prints the environment file and ``config-components.yaml`` that make slurm-sync
work the same offering with the same names, then every setting that has no equivalent, with why. Each
printed variable is then checked by slurm-sync's own settings parser, so what is printed starts.
"""
from __future__ import annotations

import re
import shlex
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from slurm_sync.settings import SettingsError, load_settings

# waldur-site-agent key -> (slurm-sync variable, how the value is turned)
_OFFERING = {"waldur_api_url": "WALDUR_API_URL", "waldur_api_token": "WALDUR_API_TOKEN",
             "waldur_offering_uuid": "WALDUR_OFFERING_UUID", "verify_ssl": "REQUESTS_VERIFY_SSL"}
_BACKEND = {"customer_prefix": "SLURM_CUSTOMER_PREFIX", "project_prefix": "SLURM_PROJECT_PREFIX",
            "allocation_prefix": "SLURM_ALLOCATION_PREFIX",
            "enable_user_homedir_account_creation": "ENABLE_USER_HOMEDIR_ACCOUNT_CREATION"}
_TOP = {"sentry_dsn": "SENTRY_DSN", "timezone": "SLURM_SYNC_USAGE_TIMEZONE"}
SECRETS = ("WALDUR_API_TOKEN", "SENTRY_DSN")
HANDLED = {"offerings", "name", "backend_settings", "backend_components", "backend_type", "order_processing_backend",
           "reporting_backend", "membership_sync_backend", "root_account"}
_PLAIN = re.compile(r"[A-Za-z0-9_./:*@%+,=-]*")  # printed as is: systemd, compose and a shell read it alike
COMPONENT_FIELDS = ("limit", "measured_unit", "accounting_type", "label", "unit_factor")
# what is known to have no equivalent, and why (anything else unknown is listed as such)
WHY = {
    "default_account": "the incumbent also makes it every user's DefaultAccount (`add user … DefaultAccount=root` "
                       "leaves a root association that runs jobs with no limit); slurm-sync never sets one",
    "cluster_name": "slurm-sync works on the one cluster `sacctmgr show cluster` lists; check that it is this one",
    "parent_account": "a flat hierarchy (projects under one parent, no customer accounts); slurm-sync keeps "
                      "customer -> project -> allocation, and `adopt` refuses such accounts",
    **dict.fromkeys(("qos_default", "qos_paused", "qos_downscaled", "qos_management"),
                    "slurm-sync manages no QoS (no pause or downscale)"),
    "default_homedir_umask": "home directories are made by mkhomedir_helper with its default umask",
    "homedir_base_path": "home directories are made where the system puts them (mkhomedir_helper)",
    "slurm_bin_path": "slurm-sync runs sacctmgr/sacct from PATH (or in SLURM_CONTAINER_NAME)",
    "execution_mode": "slurm-sync runs the SLURM commands (no slurmrestd)",
    "account_name_generation_policy": "slurm-sync names a new allocation from the resource's name; existing "
                                      "accounts are kept whatever their names (`adopt`)",
}


def _offering(config: Mapping[str, Any], which: Optional[str]) -> Mapping[str, Any]:
    offerings = [o for o in config.get("offerings") or [] if isinstance(o, Mapping)]
    if which:
        offerings = [o for o in offerings if which in (o.get("name"), str(o.get("waldur_offering_uuid", "")))]
    if len(offerings) != 1:
        names = ", ".join(repr(o.get("name")) for o in config.get("offerings") or [] if isinstance(o, Mapping))
        raise ValueError(f"the file has {len(offerings)} matching offering(s) ({names or 'none'}): "
                         "choose one with --offering NAME|UUID" if offerings else f"no offering matches ({names})")
    return offerings[0]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _shown(key: str, value: Any) -> str:
    """A value said beside its setting: scalars only, never one that may be a secret (an LDAP bind password)."""
    secret = re.search(r"pass|secret|token|key|dsn", key)
    return f" = {value!r}" if isinstance(value, (str, int, float)) and not secret else ""


def translate(config: Mapping[str, Any], which: Optional[str] = None
              ) -> Tuple[Dict[str, str], Dict[str, Dict[str, Any]], List[str]]:
    """(environment, components, settings with no equivalent: one line each)."""
    offering = _offering(config, which)
    backend = offering.get("backend_settings") or {}
    env: Dict[str, str] = {}
    missing: List[str] = []
    for where, section, table in (("", config, _TOP), ("", offering, _OFFERING), ("backend_settings.", backend, _BACKEND)):
        for key, value in section.items():
            if key in table and value not in (None, ""):
                env[table[key]] = _text(value)
            elif key not in table and key not in HANDLED and value not in (None, "", False, [], {}):
                missing.append(f"{where}{key}{_shown(key, value)}: {WHY.get(key, 'no equivalent')}")
    pulls = offering.get("order_processing_backend", "slurm") == "slurm"
    pushes = offering.get("reporting_backend", "slurm") == "slurm"
    env["WALDUR_SYNC_DIRECTION"] = "both" if pulls and pushes else "push" if pushes else "pull"
    if offering.get("membership_sync_backend", "slurm") != "slurm" and pulls:
        missing.append("membership_sync_backend: slurm-sync syncs teams whenever it pulls")
    # customers hang under root_account, else default_account, else root (the incumbent's own fallback)
    env["SLURM_DEFAULT_ACCOUNT"] = str(backend.get("root_account") or backend.get("default_account") or "root")
    if backend.get("execution_mode", "cli") == "cli":
        env["SLURM_DEPLOYMENT_TYPE"] = "native"
    components: Dict[str, Dict[str, Any]] = {}
    for name, spec in (offering.get("backend_components") or {}).items():
        spec = dict(spec or {})
        components[str(name)] = {key: spec[key] for key in COMPONENT_FIELDS if spec.get(key) is not None}
        if spec.get("accounting_type") not in ("usage", "limit"):
            missing.append(f"{name}.accounting_type{_shown('', spec.get('accounting_type'))}: slurm-sync has "
                           "usage and limit")
        missing += [f"{name}.{key}{_shown(key, value)}: no equivalent" for key, value in spec.items()
                    if key not in COMPONENT_FIELDS and value not in (None, "", False, [], {})]
    return env, components, missing


def check(env: Mapping[str, str]) -> List[str]:
    """slurm-sync's own parser on the result: a prefix or URL slurm-sync would refuse is said here."""
    try:
        load_settings(dict(env))
    except SettingsError as error:
        return list(error.problems)
    return []


def render(env: Mapping[str, str], components: Mapping[str, Any], missing: List[str], source: str,
           with_secrets: bool) -> str:
    lines = [f"# slurm-sync environment equivalent to {source} (slurm-sync import-config)"]
    for name in sorted(env):
        value = env[name]
        if name in SECRETS and value and not with_secrets:
            value = "****" + value[-4:]
        lines.append(f"{name}={value if _PLAIN.fullmatch(value) else shlex.quote(value)}")
    lines += ["", "# ---- config-components.yaml ----",
              yaml.safe_dump(components, sort_keys=False, default_flow_style=False).rstrip("\n")]
    lines += ["", f"# ---- {len(missing)} setting(s) with no equivalent in slurm-sync ----"]
    lines += [f"# {line}" for line in missing]
    problems = check(env)
    if problems:
        lines += ["", "# ---- slurm-sync would refuse these values: change them before switching ----"]
        lines += [f"# {problem}" for problem in problems]
    return "\n".join(lines) + "\n"


def main(path: str, with_secrets: bool = False, offering: Optional[str] = None, out=sys.stdout) -> int:
    try:
        with open(path, encoding="utf-8") as stream:
            config = yaml.safe_load(stream) or {}
        env, components, missing = translate(config, offering)
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as error:
        print(f"slurm-sync import-config: {path}: {error}", file=sys.stderr)
        return 2
    out.write(render(env, components, missing, path, with_secrets))
    return 1 if check(env) else 0
