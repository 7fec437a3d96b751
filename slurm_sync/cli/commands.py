"""The `slurm-sync` command (also `python -m slurm_sync`)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from slurm_sync.domain.components import ComponentsConfigError
from slurm_sync.settings import SettingsError


def _cmd_check_config(args: argparse.Namespace) -> int:
    from slurm_sync.domain.components import load_components
    from slurm_sync.settings import load_settings
    settings = load_settings()
    components = load_components(settings.slurm_tres_config_path)
    for name, value in settings.masked().items():
        print(f"{name}={value}")
    print("components: " + ", ".join(f"{c.type} ({c.accounting_type}, x{c.unit_factor})" for c in components))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from slurm_sync.cli.plan import print_plan
    return print_plan()


def _cmd_adopt(args: argparse.Namespace) -> int:
    from slurm_sync.cli.adopt import main as adopt_main
    return adopt_main(apply=args.apply)


def _cmd_import_config(args: argparse.Namespace) -> int:
    from slurm_sync.cli.import_config import main as import_main
    return import_main(args.config, with_secrets=args.with_secrets, offering=args.offering)


def _cmd_load_components(args: argparse.Namespace) -> int:
    from slurm_sync.domain.components import load_components
    from slurm_sync.settings import load_settings
    from slurm_sync.waldur.components import sync_components
    from slurm_sync.wiring import waldur_api
    settings = load_settings()
    waldur = waldur_api(settings)
    for type_, action in sync_components(waldur, load_components(settings.slurm_tres_config_path)):
        print(f"{type_}: {action}")
    return 0


def _cmd_diagnostics(args: argparse.Namespace) -> int:
    from slurm_sync.cli.diagnostics import main as diagnostics_main
    return diagnostics_main([])


def _cmd_health(args: argparse.Namespace) -> int:
    from slurm_sync.cli.health import main as health_main
    argv = ["--max-age", str(args.max_age)] if args.max_age is not None else []
    argv += ["--no-cycle"] if args.no_cycle else []
    return health_main(argv)


def _cmd_metrics(args: argparse.Namespace) -> int:
    """Print a running worker's /metrics (SLURM_SYNC_METRICS_PORT and _ADDR, or --url)."""
    from slurm_sync.observability import metrics_server as metrics
    from slurm_sync.settings import env_setting
    url = args.url
    if not url:
        port = env_setting("SLURM_SYNC_METRICS_PORT")
        if not port:
            print("slurm-sync metrics: no worker metrics endpoint: set SLURM_SYNC_METRICS_PORT (as the worker has "
                  "it) or give --url http://host:port/metrics", file=sys.stderr)
            return 1
        url = metrics.url(env_setting("SLURM_SYNC_METRICS_ADDR"), port)
    try:
        sys.stdout.write(metrics.fetch(url))
    except OSError as error:
        print(f"slurm-sync metrics: {url}: {error} (is a worker running with SLURM_SYNC_METRICS_PORT?)",
              file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slurm-sync", description="Keep a Waldur offering and a SLURM cluster in sync.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check-config", help="validate the environment and config-components.yaml").set_defaults(
        func=_cmd_check_config)
    sub.add_parser("plan", help="print the sacctmgr changes the pending orders would cause, applying nothing"
                   ).set_defaults(func=_cmd_plan)
    adopt = sub.add_parser("adopt", help="take over the accounts waldur-site-agent (or an older slurm-sync) made: "
                           "one line per resource; writes nothing without --apply")
    adopt.add_argument("--apply", action="store_true", help="write the ownership marks (Descriptions only), "
                       "in one sacctmgr load")
    adopt.set_defaults(func=_cmd_adopt)
    imported = sub.add_parser("import-config", help="print the environment file and config-components.yaml "
                              "equivalent to a waldur-site-agent config.yaml")
    imported.add_argument("config", help="the waldur-site-agent configuration file")
    imported.add_argument("--offering", help="the offering's name or uuid, when the file has several")
    imported.add_argument("--with-secrets", action="store_true", help="print the token unmasked")
    imported.set_defaults(func=_cmd_import_config)
    sub.add_parser("load-components", help="create/update the offering's components from config-components.yaml"
                   ).set_defaults(func=_cmd_load_components)
    sub.add_parser("diagnostics", help="check settings, SLURM, TRES, Waldur, Redis and broker: one line each, "
                   "with the fix").set_defaults(func=_cmd_diagnostics)
    health = sub.add_parser("health", help="exit 0 when Redis, the broker and the last cycle are fine (HEALTHCHECK)")
    health.add_argument("--max-age", type=float, help="seconds a cycle's last success may be old "
                        "(default 3 intervals, at least 300)")
    health.add_argument("--no-cycle", action="store_true", help="check only Redis and the broker")
    health.set_defaults(func=_cmd_health)
    metrics = sub.add_parser("metrics", help="print a running worker's Prometheus metrics")
    metrics.add_argument("--url", help="the worker's /metrics URL "
                         "(default http://$SLURM_SYNC_METRICS_ADDR:$SLURM_SYNC_METRICS_PORT/metrics)")
    metrics.set_defaults(func=_cmd_metrics)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--load-components" in argv:  # the seed's form: python -m slurm_sync --load-components
        argv = ["load-components"] + [a for a in argv if a != "--load-components"]
    args = _parser().parse_args(argv)
    from slurm_sync.observability.logs import configure as configure_logging
    # diagnostics, health and metrics print their own lines: only errors from the libraries they use
    quiet = args.command in ("diagnostics", "health", "metrics") and not args.verbose
    configure_logging(logging.DEBUG if args.verbose else logging.ERROR if quiet else logging.INFO)
    try:
        return args.func(args)
    except (SettingsError, ComponentsConfigError) as error:
        print(f"slurm-sync: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
