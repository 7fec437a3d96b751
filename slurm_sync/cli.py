"""The `slurm-sync` command (also `python -m slurm_sync`)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from .components import ComponentsConfigError
from .settings import SettingsError


def _cmd_testbed(args: argparse.Namespace) -> int:
    from .testbed.cli import main as testbed_main
    return testbed_main(args.rest)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .components import load_components
    from .settings import load_settings
    settings = load_settings()
    components = load_components(settings.slurm_tres_config_path)
    for name, value in settings.masked().items():
        print(f"{name}={value}")
    print("components: " + ", ".join(f"{c.type} ({c.accounting_type}, x{c.unit_factor})" for c in components))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .plan_command import print_plan
    return print_plan()


def _cmd_load_components(args: argparse.Namespace) -> int:
    from .components import load_components
    from .offering_components import sync_components
    from .settings import load_settings
    from .waldur_api import WaldurAPI
    settings = load_settings()
    waldur = WaldurAPI(settings.waldur_api_url, settings.waldur_api_token, settings.waldur_offering_uuid,
                       verify_ssl=settings.requests_verify_ssl)
    for type_, action in sync_components(waldur, load_components(settings.slurm_tres_config_path)):
        print(f"{type_}: {action}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(keep_running=args.keep_running, profile=args.profile)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slurm-sync", description="Keep a Waldur offering and a SLURM cluster in sync.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    testbed = sub.add_parser("testbed", help="the local SLURM test bed: up | down | status | env", add_help=False)
    testbed.add_argument("rest", nargs=argparse.REMAINDER)
    testbed.set_defaults(func=_cmd_testbed)
    sub.add_parser("check-config", help="validate the environment and config-components.yaml").set_defaults(
        func=_cmd_check_config)
    sub.add_parser("plan", help="print the sacctmgr changes the pending orders would cause, applying nothing"
                   ).set_defaults(func=_cmd_plan)
    sub.add_parser("load-components", help="create/update the offering's components from config-components.yaml"
                   ).set_defaults(func=_cmd_load_components)
    demo = sub.add_parser("demo", help="bed + Waldur emulator + worker + beat: a demo order becomes a SLURM account")
    demo.add_argument("--keep-running", action="store_true", help="leave worker, beat and emulator running")
    demo.add_argument("--profile", choices=("current", "7.0"), default="current", help="emulated Waldur generation")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--load-components" in argv:  # the seed's form: python -m slurm_sync --load-components
        argv = ["load-components"] + [a for a in argv if a != "--load-components"]
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (SettingsError, ComponentsConfigError) as error:
        print(f"slurm-sync: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
